// SharedFanout: the publishing side of a publisher with
// PublisherOptions::shared_ring. One ringbuf::BroadcastProducer for all the
// matched subscribers: each publication is written once, whatever their
// number, and each subscriber's receive thread reads it from the same
// memory (mesh/dataplane/shared_rings.h).
//
// Every matched link is offered the ring over its control channel
// (LinkControl.SharedRing with the ring's memfd, the subscriber's cursor
// page and its doorbell end): the first time at the oldest message of the
// history, later (after an eviction) at the tail. A subscriber that holds
// the ring past a Publish deadline is evicted (reported in not_reached,
// told with SharedRingEnd) and offered the ring again at the next
// Publish; one whose process does not run (the link is unresponsive) is
// not offered it until it runs again. A link no longer matched is told
// SharedRingEnd and dropped.
//
// Thread contract: the owning PublisherCore's mutex serializes every call.
#ifndef SHMESH_MESH_PUBSUB_SHARED_FANOUT_H_
#define SHMESH_MESH_PUBSUB_SHARED_FANOUT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mesh/links/transport.h"
#include "mesh/topic.h"
#include "ringbuf/broadcast.h"

namespace mesh {
namespace pubsub {

class SharedFanout {
 public:
  // A ring of `capacity` data bytes (a power of two), keeping the last
  // `history` messages for new subscribers.
  static absl::StatusOr<std::unique_ptr<SharedFanout>> Create(const std::string& topic, uint32_t channel,
                                                              size_t capacity, size_t history);
  // The largest payload one publication may have: half the ring.
  size_t MaxPayload() const { return producer_.MaxFrameSize(); }
  // The subscribers are now the links in `matched`: offers the ring to
  // those without one, ends it for the others.
  void Sync(const std::vector<std::shared_ptr<Transport>>& matched);
  // Writes `payload` once for every subscriber with the ring; those that
  // hold it past `deadline` are evicted. Fills `result`.
  void Publish(absl::string_view payload, absl::Time deadline, PublishResult* result);
  // Ends the ring for every subscriber (best effort).
  void Close();
  // Whether a subscriber is without the ring (Sync would offer it again).
  bool any_without_ring() const { return any_without_ring_; }

 private:
  struct Subscriber {
    std::shared_ptr<Transport> link;
    uint32_t id = 0;           // its consumer in producer_; 0: it has no ring now
    bool offered = false;      // it had the ring once (a new offer starts at the tail)
    absl::Status why_not;      // with id 0: why (for not_reached)
  };
  SharedFanout(std::string topic, uint32_t channel, ringbuf::BroadcastProducer producer)
      : topic_(std::move(topic)), channel_(channel), producer_(std::move(producer)) {}
  void Offer(Subscriber* s);
  void End(Subscriber* s);

  const std::string topic_;
  const uint32_t channel_;
  ringbuf::BroadcastProducer producer_;
  std::vector<Subscriber> subscribers_;
  bool any_without_ring_ = false;
};

}  // namespace pubsub
}  // namespace mesh

#endif  // SHMESH_MESH_PUBSUB_SHARED_FANOUT_H_
