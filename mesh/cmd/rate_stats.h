// Message rate statistics for `meshctl hz`: the gaps between the last N
// arrivals of a topic, and from them the mean rate and the spread of the
// gaps (min, max, standard deviation), as `ros2 topic hz` reports them.
// Pure (the caller passes the arrival times), so it is unit-tested with
// made-up clocks.
//
// Thread contract: thread-compatible (meshctl guards it with a mutex: the
// receive thread adds, the main thread reports).
#ifndef SHMESH_MESH_CMD_RATE_STATS_H_
#define SHMESH_MESH_CMD_RATE_STATS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mesh {
namespace cmd {

struct RateReport {
  // Gaps the statistics cover (at most the window).
  size_t gaps = 0;
  // 1 / mean gap.
  double rate_hz = 0;
  absl::Duration mean_gap;
  absl::Duration min_gap;
  absl::Duration max_gap;
  // Population standard deviation of the gaps.
  absl::Duration stddev_gap;
};

class RateWindow {
 public:
  // Keeps the gaps between the last `window` + 1 arrivals. REQUIRES:
  // window >= 1.
  explicit RateWindow(size_t window);

  // One arrival at `t`. Times are expected in order; an earlier one (a
  // clock step) counts as a gap of zero.
  void Add(absl::Time t);

  // The statistics over the window; nullopt until there are two arrivals.
  std::optional<RateReport> Report() const;

  // Arrivals since construction, and since the last TakeNew() call.
  uint64_t total() const { return total_; }
  uint64_t TakeNew();

 private:
  const size_t window_;
  std::deque<absl::Duration> gaps_;
  std::optional<absl::Time> last_;
  uint64_t total_ = 0;
  uint64_t new_ = 0;
};

// One line for a report, without the newline:
//   "average rate: 49.981 Hz  min: 0.0192s  max: 0.0208s  std dev: 0.00031s
//   window: 50"
std::string FormatRateReport(const RateReport& report);

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_RATE_STATS_H_
