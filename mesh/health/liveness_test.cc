#include "mesh/health/liveness.h"

#include <cstdint>
#include <limits>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace mesh {
namespace health {
namespace {

using Change = LivenessTracker::Change;

// A fixed, arbitrary fake start time: nothing here reads a clock.
const absl::Time kStart = absl::FromUnixSeconds(1'700'000'000);

TEST(LivenessTrackerTest, SteadyBeatsNeverFlag) {
  LivenessTracker t(absl::Milliseconds(500), absl::Milliseconds(100), 7, kStart);
  uint32_t beat = 7;
  for (int i = 1; i <= 1000; ++i) {
    // The peer beats every 100 ms; we look every 400 ms (less than the
    // threshold), so every observation sees a new value.
    beat += 4;
    ASSERT_EQ(t.Observe(beat, kStart + i * absl::Milliseconds(400)), Change::kNone) << i;
    ASSERT_FALSE(t.unresponsive());
  }
  EXPECT_EQ(t.unresponsive_since(), absl::InfiniteFuture());
}

TEST(LivenessTrackerTest, SilenceFlagsExactlyAtTheThreshold) {
  LivenessTracker t(absl::Milliseconds(500), absl::Milliseconds(10), 3, kStart);
  EXPECT_EQ(t.threshold(), absl::Milliseconds(500));
  // Measured from `start` for the initial value.
  EXPECT_EQ(t.Observe(3, kStart), Change::kNone);
  EXPECT_EQ(t.Observe(3, kStart + absl::Milliseconds(499)), Change::kNone);
  EXPECT_EQ(t.Observe(3, kStart + absl::Milliseconds(500) - absl::Nanoseconds(1)), Change::kNone);
  EXPECT_FALSE(t.unresponsive());
  EXPECT_EQ(t.Observe(3, kStart + absl::Milliseconds(500)), Change::kBecameUnresponsive);
  EXPECT_TRUE(t.unresponsive());
  EXPECT_EQ(t.unresponsive_since(), kStart);
  // Reported once, not at every observation.
  EXPECT_EQ(t.Observe(3, kStart + absl::Seconds(5)), Change::kNone);
  EXPECT_EQ(t.unresponsive_since(), kStart);
}

TEST(LivenessTrackerTest, SilenceIsMeasuredFromTheObservationThatSawTheValue) {
  LivenessTracker t(absl::Seconds(1), absl::ZeroDuration(), 0, kStart);
  // The peer beat at some point before kStart + 3 s; we only know from then.
  const absl::Time seen = kStart + absl::Seconds(3);
  EXPECT_EQ(t.Observe(1, seen), Change::kNone);
  EXPECT_EQ(t.Observe(1, seen + absl::Milliseconds(999)), Change::kNone);
  EXPECT_EQ(t.Observe(1, seen + absl::Seconds(1)), Change::kBecameUnresponsive);
  EXPECT_EQ(t.unresponsive_since(), seen);
}

TEST(LivenessTrackerTest, ThreePeerIntervalsWhenLonger) {
  // The peer beats every 400 ms: 3 x 400 ms = 1.2 s beats 500 ms.
  LivenessTracker t(absl::Milliseconds(500), absl::Milliseconds(400), 0, kStart);
  EXPECT_EQ(t.threshold(), absl::Milliseconds(1200));
  EXPECT_EQ(t.Observe(0, kStart + absl::Milliseconds(500)), Change::kNone);
  EXPECT_EQ(t.Observe(0, kStart + absl::Milliseconds(1199)), Change::kNone);
  EXPECT_EQ(t.Observe(0, kStart + absl::Milliseconds(1200)), Change::kBecameUnresponsive);
}

TEST(LivenessTrackerTest, PeerIntervalIsCapped) {
  // A peer claiming an hour between beats gets 3 x 10 s.
  LivenessTracker t(absl::Milliseconds(500), absl::Hours(1), 0, kStart);
  EXPECT_EQ(t.threshold(), 3 * LivenessTracker::kMaxPeerBeatInterval);
  EXPECT_EQ(t.Observe(0, kStart + absl::Seconds(29)), Change::kNone);
  EXPECT_EQ(t.Observe(0, kStart + absl::Seconds(30)), Change::kBecameUnresponsive);
  // An untold interval (zero) leaves unresponsive_after alone.
  LivenessTracker u(absl::Milliseconds(500), absl::ZeroDuration(), 0, kStart);
  EXPECT_EQ(u.threshold(), absl::Milliseconds(500));
}

TEST(LivenessTrackerTest, RecoversAtTheFirstNewBeat) {
  LivenessTracker t(absl::Milliseconds(100), absl::ZeroDuration(), 5, kStart);
  ASSERT_EQ(t.Observe(5, kStart + absl::Milliseconds(100)), Change::kBecameUnresponsive);
  const absl::Time back = kStart + absl::Seconds(2);
  EXPECT_EQ(t.Observe(6, back), Change::kBecameResponsive);
  EXPECT_FALSE(t.unresponsive());
  EXPECT_EQ(t.unresponsive_since(), absl::InfiniteFuture());
  EXPECT_EQ(t.Observe(7, back + absl::Milliseconds(10)), Change::kNone);
  // And the silence clock restarts from the last new value.
  EXPECT_EQ(t.Observe(7, back + absl::Milliseconds(109)), Change::kNone);
  EXPECT_EQ(t.Observe(7, back + absl::Milliseconds(110)), Change::kBecameUnresponsive);
  EXPECT_EQ(t.unresponsive_since(), back + absl::Milliseconds(10));
}

TEST(LivenessTrackerTest, CounterWrapAroundIsABeat) {
  const uint32_t kMax = std::numeric_limits<uint32_t>::max();
  LivenessTracker t(absl::Milliseconds(100), absl::ZeroDuration(), kMax - 1, kStart);
  EXPECT_EQ(t.Observe(kMax, kStart + absl::Milliseconds(90)), Change::kNone);
  EXPECT_EQ(t.Observe(0, kStart + absl::Milliseconds(180)), Change::kNone);
  EXPECT_EQ(t.Observe(1, kStart + absl::Milliseconds(270)), Change::kNone);
  // Going "backwards" is a change too: only equality means silence.
  EXPECT_EQ(t.Observe(kMax, kStart + absl::Milliseconds(360)), Change::kNone);
  EXPECT_FALSE(t.unresponsive());
  ASSERT_EQ(t.Observe(kMax, kStart + absl::Milliseconds(460)), Change::kBecameUnresponsive);
  EXPECT_EQ(t.Observe(0, kStart + absl::Milliseconds(470)), Change::kBecameResponsive);
}

TEST(LivenessTrackerTest, BeatAtTheLastMomentKeepsThePeerResponsive) {
  LivenessTracker t(absl::Milliseconds(500), absl::ZeroDuration(), 0, kStart);
  // The value changes in the very observation that would have flagged.
  EXPECT_EQ(t.Observe(1, kStart + absl::Milliseconds(500)), Change::kNone);
  EXPECT_FALSE(t.unresponsive());
  EXPECT_EQ(t.Observe(2, kStart + absl::Milliseconds(1000)), Change::kNone);
  EXPECT_EQ(t.Observe(2, kStart + absl::Milliseconds(1499)), Change::kNone);
  EXPECT_FALSE(t.unresponsive());
}

TEST(LivenessTrackerTest, HugeTimeJumps) {
  LivenessTracker t(absl::Milliseconds(500), absl::Milliseconds(100), 0, kStart);
  // A jump far forward with no new beat: unresponsive since the start.
  EXPECT_EQ(t.Observe(0, kStart + absl::Hours(24 * 365 * 100)), Change::kBecameUnresponsive);
  EXPECT_EQ(t.unresponsive_since(), kStart);
  EXPECT_EQ(t.Observe(1, absl::InfiniteFuture()), Change::kBecameResponsive);
  // Even at an infinite time the state stays consistent.
  EXPECT_EQ(t.Observe(1, absl::InfiniteFuture()), Change::kBecameUnresponsive);
  EXPECT_TRUE(t.unresponsive());
  EXPECT_EQ(t.Observe(2, absl::InfiniteFuture()), Change::kBecameResponsive);
  EXPECT_FALSE(t.unresponsive());
}

TEST(LivenessTrackerTest, TimeGoingBackwardsNeverFlags) {
  LivenessTracker t(absl::Milliseconds(500), absl::ZeroDuration(), 0, kStart);
  EXPECT_EQ(t.Observe(0, kStart - absl::Hours(1)), Change::kNone);
  EXPECT_EQ(t.Observe(0, absl::InfinitePast()), Change::kNone);
  EXPECT_FALSE(t.unresponsive());
  EXPECT_EQ(t.Observe(0, kStart + absl::Milliseconds(500)), Change::kBecameUnresponsive);
}

TEST(LivenessTrackerTest, ZeroThresholdFlagsAtOnce) {
  LivenessTracker t(absl::ZeroDuration(), absl::ZeroDuration(), 0, kStart);
  EXPECT_EQ(t.Observe(0, kStart), Change::kBecameUnresponsive);
}

}  // namespace
}  // namespace health
}  // namespace mesh
