#include "mesh/membership/backoff.h"

#include <algorithm>
#include <cstdlib>

namespace mesh {

Backoff::Backoff(absl::Duration min, absl::Duration max) : min_(min), max_(max), current_(min) {
  // A programmer error, never a peer's: the bounds are constants or options.
  if (!(min > absl::ZeroDuration() && min <= max)) std::abort();
}

absl::Duration Backoff::Next() {
  const absl::Duration now = current_;
  current_ = std::min(max_, std::max(min_, current_ * 2));
  return now;
}

absl::Time Backoff::Schedule(absl::Time now) {
  ++failures_;
  ready_at_ = now + Next();
  return ready_at_;
}

void Backoff::Reset() {
  current_ = min_;
  failures_ = 0;
  ready_at_ = absl::InfinitePast();
}

bool ShouldLogFailure(int failures) { return failures == 1 || (failures > 0 && failures % 10 == 0); }

}  // namespace mesh
