#include "mesh/cmd/rate_stats.h"

#include <cmath>
#include <optional>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mesh {
namespace cmd {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1795370581);

TEST(RateWindowTest, NoReportBeforeTwoArrivals) {
  RateWindow w(10);
  EXPECT_FALSE(w.Report().has_value());
  w.Add(kStart);
  EXPECT_FALSE(w.Report().has_value());
  EXPECT_EQ(w.total(), 1u);
}

TEST(RateWindowTest, SteadyRate) {
  RateWindow w(100);
  for (int i = 0; i <= 50; ++i) w.Add(kStart + i * absl::Milliseconds(20));
  const std::optional<RateReport> r = w.Report();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->gaps, 50u);
  EXPECT_NEAR(r->rate_hz, 50.0, 1e-6);
  EXPECT_EQ(r->min_gap, absl::Milliseconds(20));
  EXPECT_EQ(r->max_gap, absl::Milliseconds(20));
  EXPECT_LT(r->stddev_gap, absl::Microseconds(1));
}

TEST(RateWindowTest, SpreadOfTheGaps) {
  // Gaps of 10 ms and 30 ms alternating: mean 20 ms (50 Hz), standard
  // deviation 10 ms.
  RateWindow w(100);
  absl::Time t = kStart;
  w.Add(t);
  for (int i = 0; i < 10; ++i) {
    t += absl::Milliseconds(i % 2 == 0 ? 10 : 30);
    w.Add(t);
  }
  const std::optional<RateReport> r = w.Report();
  ASSERT_TRUE(r.has_value());
  EXPECT_NEAR(r->rate_hz, 50.0, 1e-6);
  EXPECT_EQ(r->min_gap, absl::Milliseconds(10));
  EXPECT_EQ(r->max_gap, absl::Milliseconds(30));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(r->stddev_gap), 10.0, 1e-6);
  EXPECT_EQ(FormatRateReport(*r),
            "average rate: 50.000 Hz  min: 0.01000s  max: 0.03000s  std dev: "
            "0.01000s  window: 10");
}

TEST(RateWindowTest, OnlyTheWindowCounts) {
  // 20 slow gaps (100 ms), then 5 fast ones (10 ms): a window of 5 sees only
  // the fast ones.
  RateWindow w(5);
  absl::Time t = kStart;
  w.Add(t);
  for (int i = 0; i < 20; ++i) w.Add(t += absl::Milliseconds(100));
  for (int i = 0; i < 5; ++i) w.Add(t += absl::Milliseconds(10));
  const std::optional<RateReport> r = w.Report();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->gaps, 5u);
  EXPECT_NEAR(r->rate_hz, 100.0, 1e-6);
  EXPECT_EQ(r->max_gap, absl::Milliseconds(10));
  EXPECT_EQ(w.total(), 26u);
}

TEST(RateWindowTest, TakeNewCountsSinceTheLastCall) {
  RateWindow w(10);
  w.Add(kStart);
  w.Add(kStart + absl::Seconds(1));
  EXPECT_EQ(w.TakeNew(), 2u);
  EXPECT_EQ(w.TakeNew(), 0u);
  w.Add(kStart + absl::Seconds(2));
  EXPECT_EQ(w.TakeNew(), 1u);
}

TEST(RateWindowTest, ClockStepBackAndBurstsDoNotDivideByZero) {
  RateWindow w(10);
  w.Add(kStart);
  w.Add(kStart - absl::Seconds(1));  // counted as a gap of 0
  const std::optional<RateReport> r = w.Report();
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->min_gap, absl::ZeroDuration());
  EXPECT_TRUE(std::isinf(r->rate_hz));
}

}  // namespace
}  // namespace cmd
}  // namespace mesh
