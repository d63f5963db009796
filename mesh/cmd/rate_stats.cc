#include "mesh/cmd/rate_stats.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace mesh {
namespace cmd {

RateWindow::RateWindow(size_t window) : window_(std::max<size_t>(window, 1)) {}

void RateWindow::Add(absl::Time t) {
  ++total_;
  ++new_;
  if (last_.has_value()) {
    gaps_.push_back(std::max(t - *last_, absl::ZeroDuration()));
    if (gaps_.size() > window_) gaps_.pop_front();
  }
  last_ = t;
}

uint64_t RateWindow::TakeNew() {
  const uint64_t n = new_;
  new_ = 0;
  return n;
}

std::optional<RateReport> RateWindow::Report() const {
  if (gaps_.empty()) return std::nullopt;
  RateReport r;
  r.gaps = gaps_.size();
  // Seconds as doubles: a window of 10^6 gaps of a few microseconds sums
  // and squares without overflow or visible rounding.
  double sum = 0;
  r.min_gap = gaps_.front();
  r.max_gap = gaps_.front();
  for (const absl::Duration gap : gaps_) {
    sum += absl::ToDoubleSeconds(gap);
    r.min_gap = std::min(r.min_gap, gap);
    r.max_gap = std::max(r.max_gap, gap);
  }
  const double mean = sum / static_cast<double>(r.gaps);
  double squares = 0;
  for (const absl::Duration gap : gaps_) {
    const double d = absl::ToDoubleSeconds(gap) - mean;
    squares += d * d;
  }
  r.mean_gap = absl::Seconds(mean);
  r.stddev_gap = absl::Seconds(std::sqrt(squares / static_cast<double>(r.gaps)));
  // Every gap zero (a burst read in one go): the rate is unbounded, not
  // a division by zero.
  r.rate_hz = mean > 0 ? 1.0 / mean : INFINITY;
  return r;
}

std::string FormatRateReport(const RateReport& r) {
  return absl::StrFormat(
      "average rate: %.3f Hz  min: %.5fs  max: %.5fs  std dev: %.5fs  "
      "window: %d",
      r.rate_hz, absl::ToDoubleSeconds(r.min_gap),
      absl::ToDoubleSeconds(r.max_gap), absl::ToDoubleSeconds(r.stddev_gap),
      r.gaps);
}

}  // namespace cmd
}  // namespace mesh
