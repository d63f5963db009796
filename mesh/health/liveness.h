// LivenessTracker: decides from a peer's heartbeat counter whether the peer
// is responsive. The counter lives in shared memory (consumer_heartbeat in
// ringbuf/ring_layout.h) and the peer bumps it every beat interval while its
// process runs; the tracker only sees successive values of it.
//
// The rule: the peer becomes unresponsive when the counter has not changed
// for `threshold()` = max(unresponsive_after, 3 * peer beat interval),
// measured from the first observation that saw the current value (or from
// `start` for the value the tracker was built with); it becomes responsive
// again at the first observation of a different value. Values are only
// compared for equality, so the counter wrapping around is a change like
// any other. Time comes from the caller: the tracker reads no clock.
//
// Thread contract: thread-compatible; in the node one thread (the health
// thread) owns each tracker. Whoever needs the state elsewhere (senders'
// error messages) keeps its own copy of unresponsive_since().
#ifndef SHMESH_MESH_HEALTH_LIVENESS_H_
#define SHMESH_MESH_HEALTH_LIVENESS_H_

#include <cstdint>

#include "absl/time/time.h"

namespace mesh {
namespace health {

class LivenessTracker {
 public:
  enum class Change {
    kNone,                // the state did not change with this observation
    kBecameUnresponsive,  // see unresponsive_since()
    kBecameResponsive,
  };

  // The largest peer beat interval honored: the interval comes from the
  // peer, and a hostile one must not make itself unmonitorable.
  static constexpr absl::Duration kMaxPeerBeatInterval = absl::Seconds(10);

  // `peer_beat_interval` is the interval the peer announced (zero: not told),
  // capped at kMaxPeerBeatInterval. `initial_beat` is the counter's value
  // read at `start` (when the link came up): the silence clock starts then.
  // The peer starts responsive.
  LivenessTracker(absl::Duration unresponsive_after, absl::Duration peer_beat_interval,
                  uint32_t initial_beat, absl::Time start);

  // Records the counter's value `peer_beat` read at `now` and says whether
  // the peer's state changed. `now` should not go backwards; if it does,
  // the peer only looks silent for less time.
  Change Observe(uint32_t peer_beat, absl::Time now);

  // The time of the observation that first saw the counter's current value
  // while the peer is unresponsive; InfiniteFuture() while it is responsive.
  // (A flag, not the time, says which: the state stays consistent even for
  // absurd times such as `now` == InfiniteFuture().)
  absl::Time unresponsive_since() const { return unresponsive_ ? last_change_ : absl::InfiniteFuture(); }
  bool unresponsive() const { return unresponsive_; }

  // How long the counter must stay unchanged to make the peer unresponsive.
  absl::Duration threshold() const { return threshold_; }

 private:
  const absl::Duration threshold_;
  uint32_t last_beat_;
  absl::Time last_change_;  // when last_beat_ was first observed
  bool unresponsive_ = false;
};

}  // namespace health
}  // namespace mesh

#endif  // SHMESH_MESH_HEALTH_LIVENESS_H_
