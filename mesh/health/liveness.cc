#include "mesh/health/liveness.h"

#include <algorithm>

namespace mesh {
namespace health {

constexpr absl::Duration LivenessTracker::kMaxPeerBeatInterval;

LivenessTracker::LivenessTracker(absl::Duration unresponsive_after, absl::Duration peer_beat_interval,
                                 uint32_t initial_beat, absl::Time start)
    : threshold_(std::max(unresponsive_after, 3 * std::min(peer_beat_interval, kMaxPeerBeatInterval))),
      last_beat_(initial_beat),
      last_change_(start) {}

LivenessTracker::Change LivenessTracker::Observe(uint32_t peer_beat, absl::Time now) {
  if (peer_beat != last_beat_) {
    last_beat_ = peer_beat;
    last_change_ = now;
    if (!unresponsive_) return Change::kNone;
    unresponsive_ = false;
    return Change::kBecameResponsive;
  }
  if (unresponsive_ || now - last_change_ < threshold_) return Change::kNone;
  unresponsive_ = true;
  return Change::kBecameUnresponsive;
}

}  // namespace health
}  // namespace mesh
