// SharedRings: the shared rings (ringbuf/broadcast.h) this node reads, one
// per publisher that offered one (LinkControl.SharedRing): a publisher with
// PublisherOptions::shared_ring writes each publication once, for all its
// subscribers, and each subscriber's receive thread reads it here. Every
// ring belongs to the link it was offered on and goes with it.
//
// The doorbells of all the rings are in one epoll set of its own, which
// the receive thread nests in its own (fd()): readable when some
// publisher rang for a ring we said we sleep on.
//
// Thread contract: the receive thread only.
#ifndef SHMESH_MESH_DATAPLANE_SHARED_RINGS_H_
#define SHMESH_MESH_DATAPLANE_SHARED_RINGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/epoll.h"
#include "base/unique_fd.h"
#include "mesh/links/transport.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/broadcast.h"

namespace mesh {

// At most this many shared rings per link (an offer beyond fails the link).
inline constexpr size_t kMaxSharedRingsPerLink = 64;

class SharedRings {
 public:
  // `valid_topic` checks an offer's topic name (the node's topic grammar).
  static absl::StatusOr<SharedRings> Create(std::function<absl::Status(absl::string_view)> valid_topic);

  // The epoll set of the doorbells (borrowed): nest it in the caller's.
  int fd() const { return epoll_.fd(); }
  size_t size() const { return rings_.size(); }

  // An offer read from `link`'s control channel, with its descriptors:
  // maps the ring (replacing one with the same channel from `link`).
  // Errors (the link fails): INVALID_ARGUMENT / FAILED_PRECONDITION for a
  // malformed offer (descriptors, capacity, topic, start), or
  // RESOURCE_EXHAUSTED past kMaxSharedRingsPerLink.
  absl::Status Add(const std::shared_ptr<Transport>& link, const mesh::v1::LinkControl::SharedRing& offer,
                   std::vector<base::UniqueFd> fds);
  // Drops `link`'s ring `channel` (a SharedRingEnd); unknown: ignored.
  void Remove(const Transport* link, uint32_t channel);
  // Drops every ring of a link that is not in `active`.
  void KeepOnly(absl::Span<const std::shared_ptr<Transport>> active);

  // A frame of a shared ring: its link, the publisher's channel, topic and
  // payload. Returns false to refuse it (its destination is full): the
  // frame stays first in its ring, which is not offered again until
  // Unhold().
  using Deliver = absl::FunctionRef<bool(const std::shared_ptr<Transport>& link, uint32_t channel,
                                         absl::string_view topic, absl::string_view payload)>;
  // Why a ring was dropped while reading it: evicted (it held the
  // publisher past a deadline), the publisher gone, or corrupt.
  using Dropped = absl::FunctionRef<void(const Transport& link, absl::string_view topic, const absl::Status& why)>;
  // Reads up to `batch` frames from each ring; true if any was taken.
  bool Drain(size_t batch, Deliver deliver, Dropped dropped);
  // Offers refused frames again (after a wake-up).
  void Unhold();
  // Before the receive thread sleeps: false if a frame came meanwhile.
  // A held ring is not asked (it would never let us sleep): `*any_held`
  // says whether there is one (the caller then polls).
  bool PrepareToSleep(bool* any_held);
  // After a wake-up: consumes the doorbells that rang.
  void ClearDoorbells();

 private:
  struct Ring {
    std::shared_ptr<Transport> link;
    uint32_t channel = 0;
    std::string topic;
    ringbuf::BroadcastConsumer consumer;
    bool held = false;
    uint64_t tag = 0;
  };
  SharedRings(base::Epoll epoll, std::function<absl::Status(absl::string_view)> valid_topic)
      : epoll_(std::move(epoll)), valid_topic_(std::move(valid_topic)) {}
  void Erase(std::map<std::pair<const Transport*, uint32_t>, Ring>::iterator it);

  base::Epoll epoll_;
  std::function<absl::Status(absl::string_view)> valid_topic_;
  // By (link, channel).
  std::map<std::pair<const Transport*, uint32_t>, Ring> rings_;
  uint64_t next_tag_ = 1;
};

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_SHARED_RINGS_H_
