#include "ringbuf/wait.h"

#include <algorithm>

namespace ringbuf {

void AdaptiveSpin::Reset(const WaitOptions& options) {
  infinite_ = options.spin == absl::InfiniteDuration();
  adaptive_ = options.adaptive && !infinite_;
  max_ns_ = infinite_ ? 0 : std::max<int64_t>(0, absl::ToInt64Nanoseconds(options.spin));
  min_ns_ = std::clamp<int64_t>(absl::ToInt64Nanoseconds(options.min_spin), 0, max_ns_);
  cur_ns_ = max_ns_;
}

absl::Duration AdaptiveSpin::budget() const {
  if (infinite_) return absl::InfiniteDuration();
  return absl::Nanoseconds(cur_ns_);
}

void AdaptiveSpin::OnSlept(absl::Duration waited, bool satisfied) {
  if (!adaptive_ || max_ns_ == 0) return;
  if (satisfied && waited <= absl::Nanoseconds(max_ns_)) {
    // The peer answered within the maximum spin: it is active, and a longer
    // spin would have avoided this sleep (and the peer's wake-up of us).
    // From zero, restart at the floor, or at 1 us if the floor is zero.
    const int64_t grown = cur_ns_ == 0 ? std::max<int64_t>(min_ns_, 1000) : cur_ns_ * 2;
    cur_ns_ = std::min(max_ns_, grown);
  } else {
    // Idle: even the maximum spin would have been wasted.
    cur_ns_ = std::max(min_ns_, cur_ns_ / 2);
  }
}

}  // namespace ringbuf
