// HealthMonitor over two real Links in one process: "a" dials "b" over a
// real SOCK_SEQPACKET listener, so the heartbeats are the real counters in
// the two rings' shared memory. Link a->b sits in table TA, watched by
// monitor MA; b->a in TB, watched by MB. Ticking a monitor beats for its
// side and checks the other's beat; the fake-clock cases drive Tick() with
// chosen times (the trackers start at the links' real since(), so the fake
// times start there too), one case runs the real thread. Every case checks
// that /proc/self/fd has as many entries at the end as at the start.
#include "mesh/health/health_monitor.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "gtest/gtest.h"
#include "mesh/links/link.h"
#include "mesh/links/link_pair_testutil.h"
#include "mesh/links/link_table.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/ring.h"
#include "testing/fd_count.h"

namespace mesh {
namespace health {
namespace {

constexpr uint64_t kIdA = 0xa;
constexpr uint64_t kIdB = 0xb;
constexpr size_t kRingBytes = 4096;
constexpr absl::Duration kUnresponsiveAfter = absl::Seconds(2);
// Both sides' beat interval unless a case says otherwise: short enough
// that 3x it stays under kUnresponsiveAfter.
constexpr absl::Duration kBeat = absl::Milliseconds(100);

LinkParams Params(const std::string& name, uint64_t id, absl::Duration beat) {
  return testing_util::TestLinkParams(name, id, kRingBytes, beat);
}

struct Change {
  std::string peer;
  bool unresponsive;
  bool operator==(const Change& o) const { return peer == o.peer && unresponsive == o.unresponsive; }
};

std::ostream& operator<<(std::ostream& os, const Change& c) {
  return os << c.peer << (c.unresponsive ? ":unresponsive" : ":responsive");
}

// Collects a monitor's on_change calls. Thread-safe: the real health thread
// calls it.
class Recorder {
 public:
  HealthMonitor::OnChange Callback() {
    return [this](const std::shared_ptr<Transport>& link, bool unresponsive) {
      absl::MutexLock lock(&mu_);
      changes_.push_back({link->peer_name(), unresponsive});
    };
  }
  std::vector<Change> changes() const {
    absl::MutexLock lock(&mu_);
    return changes_;
  }
  // Waits (real time) until `n` changes were recorded or `timeout` passed.
  bool AwaitCount(size_t n, absl::Duration timeout) const {
    const absl::Time deadline = absl::Now() + timeout;
    while (changes().size() < n) {
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(2));
    }
    return true;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Change> changes_ ABSL_GUARDED_BY(mu_);
};

class HealthMonitorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = shmesh::testing::CountOpenFds();
    char tmpl[] = "/tmp/mhm-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }

  void TearDown() override {
    ma_.reset();
    mb_.reset();
    (void)ta_.Close();
    (void)tb_.Close();
    a_.reset();
    b_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    EXPECT_EQ(shmesh::testing::CountOpenFds(), fds_before_) << "descriptors leaked";
  }

  // Brings up the link: "a" dials (this thread), "b" accepts (a second
  // thread), each announcing its beat interval. Installs a_ in TA and b_ in
  // TB; the listener is gone afterwards.
  void Connect(absl::Duration a_beat, absl::Duration b_beat) {
    absl::StatusOr<testing_util::LinkPair> pair =
        testing_util::MakeLinkPair(dir_, Params("a", kIdA, a_beat), Params("b", kIdB, b_beat));
    ASSERT_TRUE(pair.ok()) << pair.status();
    a_ = std::move(pair->a);
    b_ = std::move(pair->b);
    ASSERT_EQ(a_->peer_name(), "b");
    ASSERT_EQ(b_->peer_name(), "a");
    ASSERT_TRUE(ta_.Install(a_));
    ASSERT_TRUE(tb_.Install(b_));
    // Both trackers start at their link's since(); fake time starts after.
    t0_ = std::max(a_->since(), b_->since());
  }

  void MakeMonitors(HealthMonitor::Options options) {
    absl::StatusOr<std::unique_ptr<HealthMonitor>> ma = HealthMonitor::Create(options, &ta_, ra_.Callback());
    ASSERT_TRUE(ma.ok()) << ma.status();
    absl::StatusOr<std::unique_ptr<HealthMonitor>> mb = HealthMonitor::Create(options, &tb_, rb_.Callback());
    ASSERT_TRUE(mb.ok()) << mb.status();
    ma_ = std::move(*ma);
    mb_ = std::move(*mb);
  }

  static HealthMonitor::Options FakeClockOptions() {
    HealthMonitor::Options o;
    o.unresponsive_after = kUnresponsiveAfter;  // the interval is unused: no thread
    return o;
  }

  // Both sides beat and check at `t` (MA first); neither may report.
  void Round(absl::Time t) {
    ASSERT_EQ(ma_->Tick(t), 0);
    ASSERT_EQ(mb_->Tick(t), 0);
  }

  std::string dir_;
  size_t fds_before_ = 0;
  LinkTable ta_, tb_;
  std::shared_ptr<Link> a_, b_;  // a_: a's link to b (in TA); b_: b's link to a (in TB)
  Recorder ra_, rb_;
  std::unique_ptr<HealthMonitor> ma_, mb_;
  absl::Time t0_;
};

TEST_F(HealthMonitorTest, BothSidesTickingStayResponsive) {
  ASSERT_NO_FATAL_FAILURE(Connect(kBeat, kBeat));
  ASSERT_NO_FATAL_FAILURE(MakeMonitors(FakeClockOptions()));
  // Each tick sees the other side's beat from the previous round: the
  // silence each sees is one period, just under the threshold.
  const absl::Duration period = kUnresponsiveAfter - absl::Milliseconds(1);
  for (int i = 0; i < 50; ++i) ASSERT_NO_FATAL_FAILURE(Round(t0_ + i * period)) << i;
  EXPECT_TRUE(ra_.changes().empty());
  EXPECT_TRUE(rb_.changes().empty());
  EXPECT_FALSE(a_->unresponsive());
  EXPECT_FALSE(b_->unresponsive());
  EXPECT_EQ(a_->unresponsive_since(), absl::InfiniteFuture());
}

TEST_F(HealthMonitorTest, SilentPeerIsReportedOnceAtTheThresholdAndAgainWhenItBeats) {
  ASSERT_NO_FATAL_FAILURE(Connect(kBeat, kBeat));
  ASSERT_NO_FATAL_FAILURE(MakeMonitors(FakeClockOptions()));
  ASSERT_NO_FATAL_FAILURE(Round(t0_));  // b beats at t0
  // MA's next tick is the first to see that beat: b's silence starts there.
  const absl::Time t1 = t0_ + absl::Milliseconds(100);
  ASSERT_EQ(ma_->Tick(t1), 0);
  // From here only MA ticks: b does not beat.
  for (absl::Duration d = absl::Milliseconds(100); d < kUnresponsiveAfter; d += absl::Milliseconds(100)) {
    ASSERT_EQ(ma_->Tick(t1 + d), 0) << d;
  }
  ASSERT_EQ(ma_->Tick(t1 + kUnresponsiveAfter - absl::Nanoseconds(1)), 0);
  EXPECT_TRUE(ra_.changes().empty());
  EXPECT_FALSE(a_->unresponsive());

  EXPECT_EQ(ma_->Tick(t1 + kUnresponsiveAfter), 1);
  EXPECT_EQ(ra_.changes(), (std::vector<Change>{{"b", true}}));
  EXPECT_TRUE(a_->unresponsive());
  EXPECT_EQ(a_->unresponsive_since(), t1);
  // Reported once, not on every tick while the silence lasts.
  for (int i = 1; i <= 30; ++i) ASSERT_EQ(ma_->Tick(t1 + kUnresponsiveAfter + i * absl::Seconds(2)), 0) << i;
  EXPECT_EQ(ra_.changes().size(), 1u);
  EXPECT_EQ(a_->unresponsive_since(), t1);

  // b beats again. a kept beating all along, so MB has nothing to report.
  const absl::Time t2 = t1 + absl::Seconds(100);
  EXPECT_EQ(mb_->Tick(t2), 0);
  EXPECT_EQ(ma_->Tick(t2), 1);
  EXPECT_EQ(ra_.changes(), (std::vector<Change>{{"b", true}, {"b", false}}));
  EXPECT_FALSE(a_->unresponsive());
  EXPECT_EQ(a_->unresponsive_since(), absl::InfiniteFuture());
  for (int i = 1; i <= 10; ++i) ASSERT_NO_FATAL_FAILURE(Round(t2 + i * absl::Milliseconds(500))) << i;
  EXPECT_EQ(ra_.changes().size(), 2u);
  EXPECT_TRUE(rb_.changes().empty());
  EXPECT_FALSE(b_->unresponsive());
}

TEST_F(HealthMonitorTest, PeerWithALongerBeatIntervalGetsThreeOfThem) {
  // b beats every second: 3 s of silence, not 2, before MA reports it.
  // a beats every 100 ms, so MB keeps the plain 2 s.
  ASSERT_NO_FATAL_FAILURE(Connect(kBeat, absl::Seconds(1)));
  ASSERT_NO_FATAL_FAILURE(MakeMonitors(FakeClockOptions()));
  ASSERT_NO_FATAL_FAILURE(Round(t0_));
  const absl::Time t1 = t0_ + absl::Milliseconds(100);
  ASSERT_EQ(ma_->Tick(t1), 0);
  EXPECT_EQ(ma_->Tick(t1 + kUnresponsiveAfter), 0);
  EXPECT_EQ(ma_->Tick(t1 + absl::Seconds(3) - absl::Nanoseconds(1)), 0);
  EXPECT_TRUE(ra_.changes().empty());
  EXPECT_EQ(ma_->Tick(t1 + absl::Seconds(3)), 1);
  EXPECT_EQ(ra_.changes(), (std::vector<Change>{{"b", true}}));
  EXPECT_EQ(a_->unresponsive_since(), t1);

  // The other way: MA stops too; MB's next tick sees a's last beat, and
  // a's silence is reported after the plain 2 s.
  const absl::Time tb = t1 + absl::Seconds(3);
  EXPECT_EQ(mb_->Tick(tb), 0);
  EXPECT_EQ(mb_->Tick(tb + kUnresponsiveAfter - absl::Nanoseconds(1)), 0);
  EXPECT_EQ(mb_->Tick(tb + kUnresponsiveAfter), 1);
  EXPECT_EQ(rb_.changes(), (std::vector<Change>{{"a", true}}));
  EXPECT_EQ(b_->unresponsive_since(), tb);
}

TEST_F(HealthMonitorTest, AHostileBeatIntervalIsCapped) {
  // b claims to beat once an hour: honored only up to 10 s, so 30 s.
  ASSERT_NO_FATAL_FAILURE(Connect(kBeat, absl::Hours(1)));
  ASSERT_NO_FATAL_FAILURE(MakeMonitors(FakeClockOptions()));
  ASSERT_NO_FATAL_FAILURE(Round(t0_));
  const absl::Time t1 = t0_ + absl::Milliseconds(100);
  ASSERT_EQ(ma_->Tick(t1), 0);
  EXPECT_EQ(ma_->Tick(t1 + absl::Seconds(30) - absl::Nanoseconds(1)), 0);
  EXPECT_EQ(ma_->Tick(t1 + absl::Seconds(30)), 1);
  EXPECT_EQ(ra_.changes(), (std::vector<Change>{{"b", true}}));
}

TEST_F(HealthMonitorTest, ALinkMarkedDownIsNeitherBeatNorChecked) {
  ASSERT_NO_FATAL_FAILURE(Connect(kBeat, kBeat));
  ASSERT_NO_FATAL_FAILURE(MakeMonitors(FakeClockOptions()));
  ASSERT_NO_FATAL_FAILURE(Round(t0_));  // MB saw a's beat at t0
  ASSERT_TRUE(a_->MarkDown());
  // MA still holds its copy of the link set (the table did not change):
  // Tick itself skips the link. b keeps beating, but MA does not look; a
  // no longer beats, so MB sees a fall silent from t0.
  for (absl::Duration d = absl::Milliseconds(500); d < kUnresponsiveAfter; d += absl::Milliseconds(500)) {
    ASSERT_EQ(ma_->Tick(t0_ + d), 0) << d;
    ASSERT_EQ(mb_->Tick(t0_ + d), 0) << d;
  }
  EXPECT_EQ(mb_->Tick(t0_ + kUnresponsiveAfter), 1);
  EXPECT_EQ(rb_.changes(), (std::vector<Change>{{"a", true}}));
  for (int i = 0; i < 20; ++i) ASSERT_EQ(ma_->Tick(t0_ + kUnresponsiveAfter + i * absl::Seconds(5)), 0) << i;
  EXPECT_TRUE(ra_.changes().empty());
  EXPECT_FALSE(a_->unresponsive());
}

TEST_F(HealthMonitorTest, StopWithoutStartIsFine) {
  ASSERT_NO_FATAL_FAILURE(Connect(kBeat, kBeat));
  ASSERT_NO_FATAL_FAILURE(MakeMonitors(FakeClockOptions()));
  ma_->Stop();
  ma_->Stop();  // idempotent
  ma_.reset();
  // A monitor over an empty table, never started, destroyed without Stop.
  LinkTable empty;
  absl::StatusOr<std::unique_ptr<HealthMonitor>> m = HealthMonitor::Create(FakeClockOptions(), &empty, ra_.Callback());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->Tick(absl::Now()), 0);
  m->reset();
  EXPECT_TRUE(ra_.changes().empty());
}

TEST_F(HealthMonitorTest, CreateUnderAnExhaustedDescriptorLimitFailsCleanly) {
  rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit none = saved;
  none.rlim_cur = 0;  // no new descriptor, whatever number it would get
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &none), 0);
  absl::StatusOr<std::unique_ptr<HealthMonitor>> m = HealthMonitor::Create(FakeClockOptions(), &ta_, ra_.Callback());
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kResourceExhausted) << m.status();
}

TEST_F(HealthMonitorTest, RealThreadBeatsReportsAndStopsWithoutLeaks) {
  ASSERT_NO_FATAL_FAILURE(Connect(kBeat, kBeat));
  const size_t fds_with_links = shmesh::testing::CountOpenFds();
  HealthMonitor::Options options;
  options.interval = absl::Milliseconds(10);
  options.unresponsive_after = kUnresponsiveAfter;  // roomy: a slow machine must not flap
  ASSERT_NO_FATAL_FAILURE(MakeMonitors(options));
  ma_->Start();
  mb_->Start();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_TRUE(ra_.changes().empty());
  EXPECT_TRUE(rb_.changes().empty());

  // b's health thread stops: MA's thread reports b, once.
  mb_->Stop();
  ASSERT_TRUE(ra_.AwaitCount(1, absl::Seconds(30)));
  // Not before b's last beat had been seen unchanged for the threshold.
  EXPECT_LE(a_->unresponsive_since() + kUnresponsiveAfter, absl::Now());
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(ra_.changes(), (std::vector<Change>{{"b", true}}));
  EXPECT_TRUE(a_->unresponsive());

  // b beats once more (by hand: its thread is stopped): responsive again.
  EXPECT_EQ(mb_->Tick(absl::Now()), 0);
  ASSERT_TRUE(ra_.AwaitCount(2, absl::Seconds(30)));
  EXPECT_EQ(ra_.changes(), (std::vector<Change>{{"b", true}, {"b", false}}));
  EXPECT_FALSE(a_->unresponsive());

  ma_->Stop();
  ma_.reset();
  mb_.reset();
  EXPECT_EQ(shmesh::testing::CountOpenFds(), fds_with_links) << "the monitors leaked descriptors";
  EXPECT_TRUE(rb_.changes().empty());
}

}  // namespace
}  // namespace health
}  // namespace mesh
