// NodeImpl: the control-plane backends (control/backend.h) over Membership
// and the link table, change notification, and topology. Lifecycle is in
// node.cc, the data path and link events in node_data.cc.
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/node_impl.h"
#include "mesh/topology/topology.h"

namespace mesh {
namespace {

// Whole-mesh topology: how long each member gets to answer.
constexpr absl::Duration kGatherTimeout = absl::Seconds(2);

}  // namespace

mesh::v1::Member NodeImpl::SelfMember() const {
  mesh::v1::Member m;
  m.set_name(name());
  m.set_id(id_);
  m.set_pid(::getpid());
  m.set_uid(::getuid());
  m.set_grpc_address(grpc_address());
  m.set_link_socket(link_path_);
  m.set_state(mesh::v1::UP);
  m.set_ring_capacity_bytes(config_.ring_capacity_bytes());
  return m;
}

// ---------------------------------------------------------------------------
// Discovery (control::DiscoveryBackend).

std::vector<mesh::v1::Member> NodeImpl::Members() const {
  if (membership_ == nullptr) return {SelfMember()};
  return membership_->Members();
}

absl::StatusOr<std::vector<mesh::v1::Member>> NodeImpl::HandleJoin(const mesh::v1::Member& member,
                                                                   const std::vector<mesh::v1::Member>& known) {
  if (stopping() || membership_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("node ", name(), " is stopping"));
  }
  return membership_->HandleJoin(member, known);
}

void NodeImpl::HandleLeave(const std::string& leaver, uint64_t id) {
  if (membership_ == nullptr || !membership_->IsMember(leaver, id)) return;
  log_.Info("member left: %s", leaver);
  std::shared_ptr<Transport> link = links_.Find(leaver);
  if (link != nullptr && link->peer().id() == id && receiver_ != nullptr) {
    // The leaver sent its last messages before calling Leave: the receive
    // thread drains them, then retires the link (as on a Goodbye or EOF).
    receiver_->Leave(std::move(link));
  } else {
    membership_->Depart(leaver, id, [] {});
  }
}

// ---------------------------------------------------------------------------
// Change notification (control::ChangeSource).

uint64_t NodeImpl::ChangeGeneration() const {
  // Membership's counter moves on every membership and link change; one
  // more once the node is stopping.
  return (membership_ == nullptr ? 0 : membership_->generation()) + (stopping() ? 1 : 0);
}

control::ChangeSource::ListenerId NodeImpl::AddChangeListener(std::function<void()> listener) {
  absl::MutexLock lock(&listeners_mu_);
  const ListenerId id = next_listener_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void NodeImpl::RemoveChangeListener(ListenerId id) {
  absl::MutexLock lock(&listeners_mu_);  // waits for a NotifyChange in progress
  listeners_.erase(id);
}

void NodeImpl::NotifyChange() {
  // Held while the listeners run, so that RemoveChangeListener returning
  // means "not running and never again". The listeners only schedule work
  // (backend.h), so this is short.
  absl::MutexLock lock(&listeners_mu_);
  for (const auto& [id, listener] : listeners_) listener();
}

// ---------------------------------------------------------------------------
// Topology.

absl::StatusOr<mesh::v1::TopologySnapshot> NodeImpl::LocalTopology() {
  SHMESH_RETURN_IF_ERROR(CheckRunning("Topology()"));
  std::vector<topology::LinkReport> reports;
  for (const auto& link : links_.Live()) {
    const LinkStats s = link->Stats();
    topology::LinkReport r;
    r.peer = link->peer_name();
    r.tx_messages = s.tx_messages;
    // Payload bytes: the link counts whole frames; every frame carries at
    // least a base envelope (kMessagePrefix.size() bytes), which is taken
    // off. (Requests and responses carry 8 to 12 bytes more, counted as
    // payload; topic declarations count as messages.)
    r.tx_bytes = s.tx_bytes - std::min(s.tx_bytes, s.tx_messages * kMessagePrefix.size());
    r.tx_full_events = s.tx_full_events;
    r.rx_messages = s.rx_messages;
    r.rx_bytes = s.rx_bytes - std::min(s.rx_bytes, s.rx_messages * kMessagePrefix.size());
    r.tx_ring_bytes = s.tx_ring_bytes;
    r.rx_ring_bytes = s.rx_ring_bytes;
    r.tx_queued_bytes = s.tx_queued_bytes;
    r.rx_queued_bytes = s.rx_queued_bytes;
    r.peer_unresponsive = link->unresponsive();
    r.since = link->since();
    reports.push_back(std::move(r));
  }
  mesh::v1::TopologySnapshot snapshot = topology::LocalSnapshot(name(), absl::Now(), Members(), reports);
  *snapshot.add_topics() = TopicsReport();
  *snapshot.add_pools() = PoolReport();
  return snapshot;
}

absl::StatusOr<mesh::v1::TopologySnapshot> NodeImpl::GatherTopology(absl::Time deadline) {
  SHMESH_ASSIGN_OR_RETURN(mesh::v1::TopologySnapshot local, LocalTopology());
  // Ask every live member for its own links, all at once (async gRPC, no
  // thread per member), and merge: each direction's counters come from its
  // sender.
  std::vector<std::string> targets;
  for (int i = 1; i < local.members_size(); ++i) {
    if (local.members(i).state() != mesh::v1::DOWN) targets.push_back(local.members(i).grpc_address());
  }
  std::vector<mesh::v1::TopologySnapshot> remote;
  for (auto& answer : membership_->peer_client().GetTopologyAll(targets, /*local_only=*/true, deadline)) {
    if (answer.ok()) remote.push_back(std::move(*answer));
  }
  return topology::MergeSnapshots(std::move(local), remote);
}

absl::StatusOr<mesh::v1::TopologySnapshot> NodeImpl::Topology(bool local_only) {
  if (local_only) return LocalTopology();
  return GatherTopology(absl::Now() + kGatherTimeout);
}

}  // namespace mesh
