// IdleWait's decisions under each WaitPolicy, on a fake clock.
#include "mesh/dataplane/idle_wait.h"

#include <cstdint>

#include "gtest/gtest.h"

namespace mesh {
namespace {

int64_t g_now_ns = 0;
int64_t FakeClock() { return g_now_ns; }

mesh::v1::WaitPolicy Policy(mesh::v1::WaitPolicy::Mode mode, uint32_t spin_us) {
  mesh::v1::WaitPolicy p;
  p.set_mode(mode);
  p.set_spin_us(spin_us);
  return p;
}

// Calls Next() until it returns something other than `action` (at most
// `limit` times), advancing the clock by `advance_ns` after each; returns
// the number of `action` steps seen, and the step that ended them in
// `*stopped` (left alone when none did).
int CountWhile(IdleWait& w, IdleWait::Action action, int limit, int64_t advance_ns,
               IdleWait::Action* stopped = nullptr) {
  for (int i = 0; i < limit; ++i) {
    const IdleWait::Action got = w.Next().action;
    if (got != action) {
      if (stopped != nullptr) *stopped = got;
      return i;
    }
    g_now_ns += advance_ns;
  }
  return limit;
}

class IdleWaitTest : public ::testing::Test {
 protected:
  void SetUp() override { g_now_ns = 1'000'000'000; }
};

TEST_F(IdleWaitTest, AdaptivePausesThenYieldsThenSleeps) {
  IdleWait w(Policy(mesh::v1::WaitPolicy::ADAPTIVE, 50), FakeClock);
  ASSERT_TRUE(w.spins());
  // The clock is read at the first step: quiet for 0 ns.
  IdleWait::Step first = w.Next();
  EXPECT_EQ(first.action, IdleWait::Action::kPause);
  EXPECT_EQ(first.quiet_ns, 0);
  EXPECT_EQ(first.now_ns, g_now_ns);
  // Pauses until kPauseSpinNs have passed (a clock read every
  // kSpinsPerClockRead steps, so it may overshoot by that many steps).
  int pauses = 0;
  for (; pauses < 10'000; ++pauses) {
    g_now_ns += 100;
    if (w.Next().action != IdleWait::Action::kPause) break;
  }
  const int64_t quiet_at_switch = pauses * 100 + 100;
  EXPECT_GE(quiet_at_switch, IdleWait::kPauseSpinNs);
  EXPECT_LE(quiet_at_switch, IdleWait::kPauseSpinNs + 100 * IdleWait::kSpinsPerClockRead);
  // Then yields, reading the clock at each step, until spin_us (50 us).
  g_now_ns += 1'000;
  IdleWait::Step y = w.Next();
  EXPECT_EQ(y.action, IdleWait::Action::kYield);
  EXPECT_EQ(y.now_ns, g_now_ns);
  EXPECT_EQ(y.quiet_ns, quiet_at_switch + 1'000);
  IdleWait::Action after = IdleWait::Action::kPause;
  const int yields = CountWhile(w, IdleWait::Action::kYield, 1'000, 1'000, &after);
  EXPECT_EQ(after, IdleWait::Action::kSleep);
  EXPECT_GT(yields, 30);
  EXPECT_LT(yields, 50);
}

TEST_F(IdleWaitTest, FramesStartTheQuietTimeAgain) {
  IdleWait w(Policy(mesh::v1::WaitPolicy::ADAPTIVE, 50), FakeClock);
  EXPECT_EQ(w.Next().action, IdleWait::Action::kPause);
  g_now_ns += 10'000;
  for (uint32_t i = 0; i < IdleWait::kSpinsPerClockRead; ++i) w.Next();
  EXPECT_EQ(w.Next().action, IdleWait::Action::kYield);
  w.Busy();
  g_now_ns += 1'000;
  IdleWait::Step s = w.Next();
  EXPECT_EQ(s.action, IdleWait::Action::kPause);
  EXPECT_EQ(s.quiet_ns, 0);
}

TEST_F(IdleWaitTest, AWakeUpWithoutFramesSleepsAgainAtOnce) {
  IdleWait w(Policy(mesh::v1::WaitPolicy::ADAPTIVE, 50), FakeClock);
  w.Next();
  g_now_ns += 60'000;
  // Pauses until the next clock read, which finds spin_us over.
  for (uint32_t i = 1; i < IdleWait::kSpinsPerClockRead; ++i) EXPECT_EQ(w.Next().action, IdleWait::Action::kPause);
  EXPECT_EQ(w.Next().action, IdleWait::Action::kSleep);
  // Asleep for a second; woken by a doorbell that brought nothing.
  g_now_ns += 1'000'000'000;
  w.WokeUp();
  EXPECT_EQ(w.Next().action, IdleWait::Action::kSleep);
  // One that brought frames spins again.
  w.WokeUp();
  w.Busy();
  EXPECT_EQ(w.Next().action, IdleWait::Action::kPause);
}

TEST_F(IdleWaitTest, SpinNeverYieldsNorSleeps) {
  IdleWait w(Policy(mesh::v1::WaitPolicy::SPIN, 50), FakeClock);
  ASSERT_TRUE(w.spins());
  EXPECT_EQ(CountWhile(w, IdleWait::Action::kPause, 100'000, 1'000), 100'000);
  // The quiet time is still reported (the receive thread checks its
  // sockets once the links are quiet).
  IdleWait::Step s{};
  do {
    s = w.Next();
  } while (s.now_ns < 0);
  EXPECT_GE(s.quiet_ns, 99'000'000);
}

TEST_F(IdleWaitTest, SleepSleepsAtOnceWithoutReadingTheClock) {
  IdleWait w(Policy(mesh::v1::WaitPolicy::SLEEP, 50), FakeClock);
  EXPECT_FALSE(w.spins());
  IdleWait::Step s = w.Next();
  EXPECT_EQ(s.action, IdleWait::Action::kSleep);
  EXPECT_EQ(s.now_ns, -1);
}

}  // namespace
}  // namespace mesh
