// Backoff: the one retry schedule of the membership layer. Every retry of the
// control plane (joining seeds, asking a stray seed again, announcing this
// node to a member, dialing a member's link socket) owns one Backoff. A
// failure schedules the next try `current()` after it and doubles the delay,
// within [min, max]; a success resets it. It also counts consecutive
// failures, so that callers can rate-limit their logs (ShouldLogFailure).
//
// Pure value type: no clock of its own (callers pass `now`), no syscalls.
// Thread-compatible: the owner serializes every call.
#ifndef SHMESH_MESH_MEMBERSHIP_BACKOFF_H_
#define SHMESH_MESH_MEMBERSHIP_BACKOFF_H_

#include "absl/time/time.h"

namespace mesh {

class Backoff {
 public:
  // REQUIRES: 0 < min <= max. Starts ready, with delay `min`.
  Backoff(absl::Duration min, absl::Duration max);

  // Returns the delay to wait now and doubles the following one, within
  // [min, max] (min, 2 min, 4 min, ... max, max, ...).
  absl::Duration Next();
  // A failure at `now`: ready again at now + Next(); counts the failure.
  // Returns the new ready time.
  absl::Time Schedule(absl::Time now);
  // A success: delay back to min, failure count 0, ready at once.
  void Reset();
  // Moves the ready time without counting a failure or changing the delay.
  void set_ready_at(absl::Time t) { ready_at_ = t; }

  bool Ready(absl::Time now) const { return now >= ready_at_; }
  absl::Time ready_at() const { return ready_at_; }
  // The delay the next Schedule() waits.
  absl::Duration current() const { return current_; }
  // Consecutive failures since construction or the last Reset().
  int failures() const { return failures_; }
  absl::Duration min() const { return min_; }
  absl::Duration max() const { return max_; }

 private:
  absl::Duration min_;
  absl::Duration max_;
  absl::Duration current_;
  absl::Time ready_at_ = absl::InfinitePast();
  int failures_ = 0;
};

// Whether the `failures`-th consecutive failure (1-based) should be logged:
// the 1st and every 10th (1, 10, 20, ...), so a peer that stays away costs a
// log line every 10 retries at most.
bool ShouldLogFailure(int failures);

}  // namespace mesh

#endif  // SHMESH_MESH_MEMBERSHIP_BACKOFF_H_
