// The consumer role of a Link's receiving ring (Transport::BorrowConsumer): a
// thread other than the receive thread takes its own frames for a moment,
// and the receive thread's sleep on the doorbell is neither broken nor
// disturbed by it. First the role's word alone (ConsumerRole), with the
// interleavings that matter played out step by step in one thread; then
// real links (memfd rings, doorbells, a link socket).
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mesh/links/consumer_role.h"
#include "mesh/links/link.h"
#include "mesh/links/link_pair_testutil.h"
#include "testing/temp_dir.h"

namespace mesh {
namespace {

// Whether `fd` becomes readable within `ms`.
bool Readable(int fd, int ms) {
  struct pollfd p = {fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

using Borrowed = ConsumerRole::Borrowed;

TEST(ConsumerRoleWordTest, OneOwnerAtATime) {
  ConsumerRole role;
  EXPECT_FALSE(role.lent());
  ASSERT_TRUE(role.TakeToDrain());
  EXPECT_EQ(role.Borrow(), Borrowed::kNo);  // the receive thread drains
  role.Release();
  ASSERT_EQ(role.Borrow(), Borrowed::kYes);
  EXPECT_TRUE(role.lent());
  EXPECT_EQ(role.Borrow(), Borrowed::kNo);  // one borrower
  EXPECT_FALSE(role.TakeToDrain());         // the receive thread leaves it alone
  int arms = 0;
  EXPECT_FALSE(role.Return([&] { return ++arms, true; }));
  EXPECT_EQ(arms, 0) << "armed for a receive thread that is awake";
  EXPECT_FALSE(role.lent());
  EXPECT_TRUE(role.TakeToDrain());
  role.Release();
}

TEST(ConsumerRoleWordTest, ABorrowerArmsOnceForAReceiverThatSleptBeforeTheLoan) {
  ConsumerRole role;
  ASSERT_TRUE(role.TakeToSleep());
  role.ReleaseAfterSleep(/*sleeping=*/true);
  ASSERT_EQ(role.Borrow(), Borrowed::kYesReceiverAsleep);  // the caller stops the doorbell
  int arms = 0;
  EXPECT_FALSE(role.Return([&] { return ++arms, true; }));
  EXPECT_EQ(arms, 1);
  // And the receive thread, woken later, takes the role back.
  EXPECT_TRUE(role.TakeToDrain());
  role.Release();
}

TEST(ConsumerRoleWordTest, ABorrowerArmsForAReceiverThatFellAsleepDuringTheLoan) {
  ConsumerRole role;
  ASSERT_EQ(role.Borrow(), Borrowed::kYes);
  EXPECT_FALSE(role.TakeToSleep());  // lent: sleep, counting on the borrower
  int arms = 0;
  // A frame already waits when the borrower arms: it must wake the receiver.
  EXPECT_TRUE(role.Return([&] { return ++arms, false; }));
  EXPECT_EQ(arms, 1);
}

// The lost wake-up a CI run found (tests/hostile_frames_test, an RPC
// response unread until its deadline): the borrower arms the doorbell and,
// before its give-back lands, the peer writes and rings (using up that
// arming), the receive thread wakes, finds the role still lent and sleeps
// again. The word is back to what the borrower read; the borrower must
// still see that it has to arm again (and then find the frame).
TEST(ConsumerRoleWordTest, AReceiverThatSleptAgainDuringTheGiveBackIsArmedAgain) {
  ConsumerRole role;
  ASSERT_EQ(role.Borrow(), Borrowed::kYes);
  EXPECT_FALSE(role.TakeToSleep());
  int arms = 0;
  const bool wake = role.Return([&] {
    if (++arms > 1) return false;  // the frame written meanwhile waits
    // Between this arming and the give-back: the peer rings, the receive
    // thread wakes (a drain finds the role lent) and sleeps again.
    EXPECT_FALSE(role.TakeToDrain());
    EXPECT_FALSE(role.TakeToSleep());
    return true;  // nothing waited when we armed
  });
  EXPECT_EQ(arms, 2);
  EXPECT_TRUE(wake) << "the receive thread sleeps while a frame waits";
}

TEST(ConsumerRoleWordTest, AReceiverThatWokeDuringTheGiveBackArmsItself) {
  ConsumerRole role;
  ASSERT_EQ(role.Borrow(), Borrowed::kYes);
  EXPECT_FALSE(role.TakeToSleep());
  int arms = 0;
  EXPECT_FALSE(role.Return([&] {
    ++arms;
    EXPECT_FALSE(role.TakeToDrain());  // awake: no arming needed for it now
    return true;
  }));
  EXPECT_EQ(arms, 1);
  // Its own next sleep takes the role and looks at the ring itself.
  EXPECT_TRUE(role.TakeToSleep());
  role.ReleaseAfterSleep(false);
}

TEST(ConsumerRoleWordTest, EverySleepDuringTheGiveBackIsArmedFor) {
  ConsumerRole role;
  ASSERT_EQ(role.Borrow(), Borrowed::kYes);
  EXPECT_FALSE(role.TakeToSleep());
  int arms = 0;
  EXPECT_FALSE(role.Return([&] {
    if (++arms <= 3) {  // three more ring, wake, sleep rounds
      EXPECT_FALSE(role.TakeToDrain());
      EXPECT_FALSE(role.TakeToSleep());
    }
    return true;
  }));
  EXPECT_EQ(arms, 4);
}

// Borrow, drain, return, in one call (what Rpc's caller does in steps).
struct AsideDrain {
  bool ran = false;  // the role was free
  size_t frames = 0;
  bool wake_receiver = false;  // ReturnConsumer's result, or a DATA_LOSS
};
AsideDrain DrainAside(Transport& link, size_t max_frames, absl::FunctionRef<bool(absl::string_view)> fn) {
  AsideDrain out;
  if (!link.BorrowConsumer()) return out;
  out.ran = true;
  absl::StatusOr<size_t> n = link.DrainBorrowed(max_frames, fn);
  if (n.ok()) out.frames = *n;
  out.wake_receiver = link.ReturnConsumer() || !n.ok();
  return out;
}

class ConsumerRoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    auto pair = testing_util::MakeLinkPair(dir_.path(), testing_util::TestLinkParams("a", 1, 1 << 16),
                                           testing_util::TestLinkParams("b", 2, 1 << 16));
    ASSERT_TRUE(pair.ok()) << pair.status();
    a_ = pair->a;
    b_ = pair->b;
  }

  // b -> a.
  void Send(absl::string_view frame) { ASSERT_TRUE(b_->Send(frame, absl::InfinitePast()).ok()); }

  // What a's receive thread would drain now.
  std::vector<std::string> DrainOnA() {
    std::vector<std::string> got;
    auto n = a_->Drain(1000, [&](absl::string_view f) {
      got.emplace_back(f);
      return true;
    });
    EXPECT_TRUE(n.ok()) << n.status();
    return got;
  }

  shmesh::testing::ShortTempDir dir_{"role-"};
  std::shared_ptr<Link> a_, b_;
};

auto TakeR(std::vector<std::string>* got) {
  return [got](absl::string_view f) {
    if (f.empty() || f[0] != 'r') return false;
    got->emplace_back(f);
    return true;
  };
}

TEST_F(ConsumerRoleTest, TakesItsFramesAndLeavesTheRestInOrder) {
  Send("r1");
  Send("r2");
  Send("m1");
  Send("r3");
  std::vector<std::string> taken;
  const AsideDrain d = DrainAside(*a_, 16, TakeR(&taken));
  EXPECT_TRUE(d.ran);
  EXPECT_EQ(d.frames, 2u);
  EXPECT_FALSE(d.wake_receiver);  // the receive thread is not asleep
  EXPECT_EQ(taken, (std::vector<std::string>{"r1", "r2"}));
  EXPECT_FALSE(a_->ConsumerLent());
  // The refused frame is first for the receive thread, then the rest.
  EXPECT_EQ(DrainOnA(), (std::vector<std::string>{"m1", "r3"}));
  EXPECT_EQ(a_->Stats().rx_messages, 4u);
}

TEST_F(ConsumerRoleTest, WhileLentTheReceiveThreadLeavesTheRingAlone) {
  Send("r1");
  Send("m1");
  std::vector<std::string> inside;
  bool slept = false;
  const AsideDrain d = DrainAside(*a_, 16, [&](absl::string_view f) {
    EXPECT_TRUE(a_->ConsumerLent());
    inside = DrainOnA();          // the receive thread, now: nothing
    slept = a_->PrepareToSleep();  // may sleep: the borrower arms for it
    return f == "r1";
  });
  EXPECT_TRUE(d.ran);
  EXPECT_TRUE(inside.empty());
  EXPECT_TRUE(slept);
  // It gave the role back to a receive thread that sleeps while m1 waits.
  EXPECT_TRUE(d.wake_receiver);
  // A second borrower is refused while the role is taken.
  AsideDrain nested;
  (void)DrainAside(*a_, 16, [&](absl::string_view) {
    nested = DrainAside(*a_, 16, [](absl::string_view) { return true; });
    return false;
  });
  EXPECT_FALSE(nested.ran);
  EXPECT_EQ(DrainOnA(), (std::vector<std::string>{"m1"}));
}

TEST_F(ConsumerRoleTest, GivingTheRoleBackReArmsASleepingReceiver) {
  const int doorbell = a_->wait_handles().data;
  ASSERT_TRUE(a_->PrepareToSleep());  // the receive thread sleeps on the doorbell
  std::vector<std::string> taken;
  const AsideDrain d = DrainAside(*a_, 16, TakeR(&taken));
  EXPECT_TRUE(d.ran);
  EXPECT_EQ(d.frames, 0u);
  EXPECT_FALSE(d.wake_receiver);
  // Armed again: a frame after the give-back rings it.
  Send("m1");
  EXPECT_TRUE(Readable(doorbell, 2000));
  ASSERT_TRUE(a_->ClearDoorbell().ok());
  EXPECT_EQ(DrainOnA(), (std::vector<std::string>{"m1"}));
}

// A borrower and a receive thread at full speed on one ring: every frame
// is taken exactly once, each in ring order, and a receive thread that
// sleeps on the doorbell (or on its wake-up eventfd, which the borrower
// rings when it leaves frames for it) is never left asleep with frames
// waiting.
TEST_F(ConsumerRoleTest, BorrowerAndReceiveThreadShareARing) {
  constexpr int kFrames = 50'000;
  const int wake = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ASSERT_GE(wake, 0);
  std::atomic<bool> done{false};
  std::atomic<int> lost_wakeups{0};
  std::vector<int> by_receiver, by_borrower;
  // What each thread took, and what the peer wrote, for the other threads.
  std::atomic<int> received{0}, borrowed{0}, sent{0};
  std::thread receiver([&] {
    while (!done.load()) {
      auto n = a_->Drain(64, [&](absl::string_view f) {
        int seq = 0;
        EXPECT_TRUE(absl::SimpleAtoi(f.substr(1), &seq));
        by_receiver.push_back(seq);
        received.fetch_add(1);
        return true;
      });
      ASSERT_TRUE(n.ok());
      if (*n > 0) continue;
      if (!a_->PrepareToSleep()) continue;
      struct pollfd p[2] = {{a_->wait_handles().data, POLLIN, 0}, {wake, POLLIN, 0}};
      if (::poll(p, 2, 2000) == 0 && received.load() + borrowed.load() < sent.load()) ++lost_wakeups;
      (void)a_->ClearDoorbell();
      uint64_t v;
      (void)!::read(wake, &v, sizeof v);
    }
  });
  std::thread borrower([&] {
    while (!done.load()) {
      const AsideDrain d = DrainAside(*a_, 16, [&](absl::string_view f) {
        if (f[0] != 'r') return false;
        int seq = 0;
        EXPECT_TRUE(absl::SimpleAtoi(f.substr(1), &seq));
        by_borrower.push_back(seq);
        borrowed.fetch_add(1);
        return true;
      });
      if (d.wake_receiver) {
        const uint64_t one = 1;
        (void)!::write(wake, &one, sizeof one);
      }
      if (!d.ran || d.frames == 0) std::this_thread::yield();
    }
  });
  // kFrames, and on until each thread took some: with two CPUs shared
  // with other tests, one of them may not run at all for a while.
  const absl::Time stop_extra = absl::Now() + absl::Seconds(30);
  for (int i = 0; i < kFrames || ((received.load() == 0 || borrowed.load() == 0) && absl::Now() < stop_extra);
       ++i) {
    const std::string f = absl::StrCat(i % 3 == 0 ? "m" : "r", i);
    while (!b_->Send(f, absl::Now() + absl::Seconds(5)).ok()) {
    }
    sent.store(i + 1);
    if (i % 1000 == 0) absl::SleepFor(absl::Microseconds(200));  // let the receiver fall asleep now and then
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(60);
  while (absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(5));
    if (a_->Stats().rx_messages == static_cast<uint64_t>(sent.load())) break;
  }
  done.store(true);
  const uint64_t one = 1;
  (void)!::write(wake, &one, sizeof one);
  receiver.join();
  borrower.join();
  ::close(wake);
  EXPECT_EQ(lost_wakeups.load(), 0);
  EXPECT_EQ(by_receiver.size() + by_borrower.size(), static_cast<size_t>(sent.load()));
  EXPECT_TRUE(std::is_sorted(by_receiver.begin(), by_receiver.end()));
  EXPECT_TRUE(std::is_sorted(by_borrower.begin(), by_borrower.end()));
  std::vector<int> all = by_receiver;
  all.insert(all.end(), by_borrower.begin(), by_borrower.end());
  std::sort(all.begin(), all.end());
  for (int i = 0; i < static_cast<int>(all.size()); ++i) {
    if (all[i] != i) {
      ADD_FAILURE() << "frame " << i << " missing or duplicated";
      break;
    }
  }
  // Each did some of the work.
  EXPECT_GT(by_receiver.size(), 0u);
  EXPECT_GT(by_borrower.size(), 0u);
}

}  // namespace
}  // namespace mesh
