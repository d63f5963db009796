// The narrow interfaces the control-plane services (services.h) are written
// against, so that they need nothing of the node itself: the node implements
// them (NodeImpl today), tests implement them with plain in-memory fakes.
// Only these declarations cross from mesh/control/ to the node; there is no
// include from here into the node, and none from the node into services.cc.
//
// Threads: the services call every method from gRPC callback threads or
// from their own executor threads (executor.h), never more than the calls in
// flight, and with none of the node's locks held. Methods documented as
// blocking are called only from executor threads; all others must return
// promptly (no waiting on peers, no gRPC calls).
#ifndef SHMESH_MESH_CONTROL_BACKEND_H_
#define SHMESH_MESH_CONTROL_BACKEND_H_

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace control {

// Membership, for the Discovery service.
// Thread contract: thread-safe; every method returns promptly.
class DiscoveryBackend {
 public:
  virtual ~DiscoveryBackend() = default;

  // Discovery.Join: announces `member` (and the members it `known`s) to this
  // node and returns this node's member list, itself first. The services
  // have already checked sizes (address length, list length); the backend
  // checks the rest: INVALID_ARGUMENT for a malformed member (message names
  // the field), ALREADY_EXISTS for a name held by another live process,
  // FAILED_PRECONDITION / UNAVAILABLE when not started or stopping. The
  // status message reaches the client as is.
  virtual absl::StatusOr<std::vector<mesh::v1::Member>> HandleJoin(
      const mesh::v1::Member& member, const std::vector<mesh::v1::Member>& known) = 0;

  // Discovery.Leave: member `name` with id `id` leaves. Unknown names and
  // stale ids are ignored (Leave is idempotent). REQUIRES: !name.empty(),
  // id != 0 (checked by the services).
  virtual void HandleLeave(const std::string& name, uint64_t id) = 0;

  // The members as this node sees them, itself first, each with its state
  // and since. WatchMembers diffs successive lists by name (id and state);
  // a member no longer listed is reported DOWN.
  virtual std::vector<mesh::v1::Member> Members() const = 0;
};

// What a Messaging.Send with `broadcast` achieved (mesh/node.h
// BroadcastResult, repeated here so that this header needs no node header).
struct BroadcastOutcome {
  // Peers the message was written to.
  std::vector<std::string> delivered;
  // Linked peers that did not get it, and why (the message reaches the
  // client as SendResponse.NotReached.reason).
  std::vector<std::pair<std::string, absl::Status>> not_reached;
};

// Topology, for the Topology service.
// Thread contract: thread-safe. LocalTopology returns promptly;
// GatherTopology may block until its deadline and is called on executor
// threads only.
class TopologyBackend {
 public:
  virtual ~TopologyBackend() = default;

  // This node's own snapshot (GetTopology local_only): its members and its
  // own links (mesh/topology LocalSnapshot). FAILED_PRECONDITION before the
  // node started. Prompt: no gRPC, no waiting.
  virtual absl::StatusOr<mesh::v1::TopologySnapshot> LocalTopology() = 0;

  // The whole mesh: asks every member for its local snapshot (in parallel,
  // with async gRPC: no thread per member) and merges them with this node's
  // (mesh/topology MergeSnapshots); members that did not answer by
  // `deadline` are left out. Blocks until every answer is in or `deadline`.
  // FAILED_PRECONDITION before the node started.
  virtual absl::StatusOr<mesh::v1::TopologySnapshot> GatherTopology(absl::Time deadline) = 0;
};

// The debugging Send, for the Messaging service.
// Thread contract: thread-safe. Both methods may block until their deadline
// and are called on executor threads only.
class MessagingBackend {
 public:
  virtual ~MessagingBackend() = default;

  // Writes `payload` into the ring to `peer`, waiting for room until
  // `deadline` (InfinitePast: fail at once with RESOURCE_EXHAUSTED if the
  // ring is full). The node's Send codes: NOT_FOUND (no such peer),
  // INVALID_ARGUMENT ("exceeds max_message_bytes"), RESOURCE_EXHAUSTED,
  // DEADLINE_EXCEEDED (still full at `deadline`), UNAVAILABLE (link down /
  // unresponsive), FAILED_PRECONDITION.
  virtual absl::Status Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) = 0;

  // Writes `payload` to every linked peer, each until `deadline`. OK when
  // at least one peer got it; the outcome lists who did and who did not.
  virtual absl::StatusOr<BroadcastOutcome> Broadcast(absl::string_view payload, absl::Time deadline) = 0;
};

// Change notification, for the watch streams (replaces polling
// ChangeGeneration/WaitForChange with a thread per stream).
// Thread contract: thread-safe.
class ChangeSource {
 public:
  using ListenerId = uint64_t;

  virtual ~ChangeSource() = default;

  // A counter that moves (never back) on every change of this node's
  // membership or links, and once more when the node starts stopping.
  virtual uint64_t ChangeGeneration() const = 0;

  // Registers `listener`, called after each move of ChangeGeneration() (the
  // new value is visible to it) and once when the node starts stopping.
  // Calls may be coalesced (one call for several moves) but never lost: a
  // move after a call starts is followed by another call. The listener runs
  // on a node thread with no node lock held, so it may call any method of
  // these interfaces; it must not block (the services only schedule work).
  // Returns an id for RemoveChangeListener (never 0).
  virtual ListenerId AddChangeListener(std::function<void()> listener) = 0;

  // Unregisters; when it returns the listener is not running and will not
  // be called again. Unknown ids are ignored. REQUIRES: not called from
  // inside a listener.
  virtual void RemoveChangeListener(ListenerId id) = 0;

  // True once the node began stopping: watch streams then end with
  // UNAVAILABLE "node is stopping".
  virtual bool stopping() const = 0;
};

// All a service set needs. The four may be one object; each is borrowed
// and must outlive the services (and the ControlServer that owns them).
struct Backends {
  DiscoveryBackend* discovery = nullptr;
  TopologyBackend* topology = nullptr;
  MessagingBackend* messaging = nullptr;
  ChangeSource* changes = nullptr;
};

}  // namespace control
}  // namespace mesh

#endif  // SHMESH_MESH_CONTROL_BACKEND_H_
