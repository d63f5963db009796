// NodeImpl: membership, the control thread (the reconciler's plans), and
// the control-plane backends (control/backend.h). Lifecycle and the data
// path are in node.cc.
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/eventfd.h"
#include "base/status_macros.h"
#include "mesh/base/os.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/node_impl.h"
#include "mesh/topology/topology.h"

namespace mesh {
namespace {

// Deadlines of control-plane calls between nodes.
constexpr absl::Duration kRpcTimeout = absl::Seconds(1);
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(2);
// Whole-mesh topology: how long each member gets to answer.
constexpr absl::Duration kGatherTimeout = absl::Seconds(2);
// Seed rounds that fail this many times in a row are worth a WARNING; the
// first ones are start-up races (the seed is still starting) at DEBUG.
constexpr int kQuietSeedFailures = 10;

}  // namespace

// ---------------------------------------------------------------------------
// Membership.

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

bool NodeImpl::LinkedLocked(const std::string& peer) const { return links_.Contains(peer); }

void NodeImpl::BumpLocked() {
  // release: pairs with the acquire load in ChangeGeneration.
  change_generation_.fetch_add(1, std::memory_order_release);
}

void NodeImpl::WakeControl() {
  if (control_wake_) (void)base::SignalEventFd(control_wake_.get());
}

void NodeImpl::ApplyLocked(const Roster::Change& change, absl::Time now) {
  for (const mesh::v1::Member& m : change.departed) reconciler_.OnMemberRemoved(m.name(), m.id());
  for (const mesh::v1::Member& m : change.added) {
    reconciler_.OnMemberAdded(m, now);
    log_.Info("member joined: %s (pid %d, %s)", m.name(), m.pid(), m.grpc_address());
  }
  if (!change.empty()) BumpLocked();
}

void NodeImpl::LearnLocked(const std::vector<mesh::v1::Member>& members, absl::Time now) {
  auto linked = [this](const std::string& n) ABSL_NO_THREAD_SAFETY_ANALYSIS { return LinkedLocked(n); };
  Roster::Change change;
  for (const mesh::v1::Member& m : members) (void)roster_.Learn(m, now, linked, &change);
  ApplyLocked(change, now);
}

void NodeImpl::DepartLocked(const std::string& peer, uint64_t id) {
  if (!roster_.Depart(peer, id, absl::Now())) return;
  reconciler_.OnMemberRemoved(peer, id);
  BumpLocked();
}

std::vector<mesh::v1::Member> NodeImpl::Members() const {
  std::vector<mesh::v1::Member> out;
  out.push_back(SelfMember());
  *out.back().mutable_since() = topology::TimeToProto(absl::Now());
  absl::MutexLock lock(&mu_);
  auto linked = [this](const std::string& n) ABSL_NO_THREAD_SAFETY_ANALYSIS { return LinkedLocked(n); };
  for (mesh::v1::Member& m : roster_.Members(absl::Now(), linked)) out.push_back(std::move(m));
  return out;
}

absl::StatusOr<std::vector<mesh::v1::Member>> NodeImpl::HandleJoin(const mesh::v1::Member& member,
                                                                   const std::vector<mesh::v1::Member>& known) {
  if (stopping()) return absl::UnavailableError(absl::StrCat("node ", name(), " is stopping"));
  std::vector<mesh::v1::Member> out;
  out.push_back(SelfMember());
  *out.back().mutable_since() = topology::TimeToProto(absl::Now());
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    auto linked = [this](const std::string& n) ABSL_NO_THREAD_SAFETY_ANALYSIS { return LinkedLocked(n); };
    SHMESH_ASSIGN_OR_RETURN(Roster::Change change, roster_.Join(member, known, linked, now));
    ApplyLocked(change, now);
    if (member.name() != name()) reconciler_.OnJoinedUs(member.name(), member.id());
    for (mesh::v1::Member& m : roster_.Live(linked)) out.push_back(std::move(m));
  }
  WakeControl();
  NotifyChange();
  return out;
}

void NodeImpl::HandleLeave(const std::string& leaver, uint64_t id) {
  std::shared_ptr<Transport> link;
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* e = roster_.Find(leaver);
    if (e == nullptr || e->member.id() != id) return;
    link = links_.Find(leaver);
    if (link == nullptr) {
      DepartLocked(leaver, id);
    }
  }
  log_.Info("member left: %s", leaver);
  // The leaver sent its last messages before calling Leave: the receive
  // thread drains them, then retires the link (as on a Goodbye or EOF).
  if (link != nullptr && receiver_ != nullptr) {
    receiver_->Leave(std::move(link));
  } else {
    WakeControl();
    NotifyChange();
  }
}

// ---------------------------------------------------------------------------
// Change notification (control::ChangeSource).

uint64_t NodeImpl::ChangeGeneration() const {
  // acquire: pairs with the release increments in BumpLocked.
  return change_generation_.load(std::memory_order_acquire);
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
// Control thread: runs the reconciler's plans.

mesh::v1::JoinRequest NodeImpl::MakeJoinRequest() {
  mesh::v1::JoinRequest req;
  *req.mutable_member() = SelfMember();
  absl::MutexLock lock(&mu_);
  auto linked = [this](const std::string& n) ABSL_NO_THREAD_SAFETY_ANALYSIS { return LinkedLocked(n); };
  for (mesh::v1::Member& m : roster_.Live(linked)) *req.add_known() = std::move(m);
  return req;
}

absl::Status NodeImpl::JoinSeeds() {
  const mesh::v1::JoinRequest req = MakeJoinRequest();
  std::vector<std::string> errors;
  absl::Status taken;
  for (const std::string& seed : config_.seeds()) {
    absl::StatusOr<mesh::v1::JoinResponse> resp = peers_.Join(seed, req, absl::Now() + kRpcTimeout);
    if (resp.ok()) {
      const std::vector<mesh::v1::Member> answer(resp->members().begin(), resp->members().end());
      log_.Info("joined through seed %s: %d member(s)", seed, answer.size());
      {
        absl::MutexLock lock(&mu_);
        LearnLocked(answer, absl::Now());
        reconciler_.OnSeedJoined(seed, answer);
      }
      NotifyChange();
      return absl::OkStatus();
    }
    if (absl::IsAlreadyExists(resp.status()) && taken.ok()) taken = resp.status();
    errors.push_back(std::string(resp.status().message()));
  }
  Reconciler::Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    outcome = reconciler_.OnSeedRoundFailed(absl::Now());
  }
  if (!taken.ok()) {
    // The seed answered: our name is held by a live node. Not a race.
    return absl::AlreadyExistsError(absl::StrCat("cannot join the mesh: ", taken.message()));
  }
  if (outcome.log) {
    const std::string line =
        absl::StrCat("no seed reachable (attempt ", outcome.failures, "): ", absl::StrJoin(errors, "; "),
                     "; retrying in ", absl::FormatDuration(outcome.retry_at - absl::Now()));
    if (outcome.failures >= kQuietSeedFailures) {
      log_.Warning("%s", line);
    } else {
      log_.Debug("%s", line);
    }
  }
  return absl::UnavailableError(absl::StrJoin(errors, "; "));
}

void NodeImpl::Announce(const Reconciler::Target& target) {
  mesh::v1::Member member;
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* e = roster_.Find(target.name);
    if (e == nullptr || e->member.id() != target.id) {
      (void)reconciler_.OnAnnounceResult(target.name, target.id, false, false, absl::Now());
      return;
    }
    member = e->member;
  }
  absl::StatusOr<mesh::v1::JoinResponse> resp =
      peers_.Join(member.grpc_address(), MakeJoinRequest(), absl::Now() + kRpcTimeout);
  const bool alive = resp.ok() || ProcessAlive(member.pid());
  Reconciler::Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    if (resp.ok()) {
      LearnLocked(std::vector<mesh::v1::Member>(resp->members().begin(), resp->members().end()), absl::Now());
    }
    outcome = reconciler_.OnAnnounceResult(target.name, target.id, resp.ok(), alive, absl::Now());
    if (outcome.depart) DepartLocked(target.name, target.id);
  }
  if (!resp.ok() && alive && outcome.log) {
    // The first failures are start-up races (its server is not up yet).
    if (outcome.failures >= kQuietSeedFailures) {
      log_.Warning("cannot announce to %s: %s; retrying", target.name, resp.status().message());
    } else {
      log_.Debug("cannot announce to %s: %s; retrying", target.name, resp.status().message());
    }
  }
  NotifyChange();
}

void NodeImpl::Dial(const Reconciler::Target& target) {
  mesh::v1::Member member;
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* e = roster_.Find(target.name);
    if (e == nullptr || e->member.id() != target.id) {
      (void)reconciler_.OnDialResult(target.name, target.id, absl::NotFoundError("gone"), false, absl::Now());
      return;
    }
    member = e->member;
  }
  absl::StatusOr<std::shared_ptr<Link>> link = link_setup_->Dial(member, absl::Now() + kHandshakeTimeout);
  if (link.ok()) InstallLink(std::move(*link));
  const absl::Status status = link.ok() ? absl::OkStatus() : link.status();
  const bool alive = link.ok() || ProcessAlive(member.pid());
  Reconciler::Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    outcome = reconciler_.OnDialResult(target.name, target.id, status, alive, absl::Now());
    if (outcome.depart) DepartLocked(target.name, target.id);
  }
  if (absl::IsAborted(status)) {
    log_.Debug("link to %s refused (%s); announcing again", target.name, status.message());
  } else if (!status.ok() && alive && outcome.log) {
    if (outcome.failures >= kQuietSeedFailures) {
      log_.Warning("cannot link to %s: %s; retrying", target.name, status.message());
    } else {
      log_.Debug("cannot link to %s: %s; retrying", target.name, status.message());
    }
  }
}

absl::Time NodeImpl::Reconcile() {
  Reconciler::Plan plan;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    const absl::Time expiry = roster_.ExpireDeparted(now);
    std::set<std::string> addresses = roster_.Addresses();
    addresses.insert(grpc_address_);
    auto linked = [this](const std::string& n) ABSL_NO_THREAD_SAFETY_ANALYSIS { return LinkedLocked(n); };
    plan = reconciler_.Decide(now, linked, addresses);
    plan.next_wake = std::min(plan.next_wake, expiry);
  }
  if (plan.join_seeds) {
    absl::Status joined = JoinSeeds();
    if (absl::IsAlreadyExists(joined)) log_.Error("%s", joined.message());
  }
  for (const std::string& seed : plan.stray_seeds) {
    if (stopping()) break;
    absl::StatusOr<mesh::v1::JoinResponse> resp = peers_.Join(seed, MakeJoinRequest(), absl::Now() + kRpcTimeout);
    {
      absl::MutexLock lock(&mu_);
      if (resp.ok()) {
        log_.Debug("seed %s answered again: %d member(s)", seed, resp->members_size());
        LearnLocked(std::vector<mesh::v1::Member>(resp->members().begin(), resp->members().end()), absl::Now());
      }
      (void)reconciler_.OnStraySeedResult(seed, resp.ok(), absl::Now());
    }
    NotifyChange();
  }
  for (const Reconciler::Target& t : plan.announce) {
    if (stopping()) break;
    Announce(t);
  }
  for (const Reconciler::Target& t : plan.dial) {
    if (stopping()) break;
    Dial(t);
  }
  // A plan's results make new work (an answered announce readies a dial).
  return plan.empty() ? plan.next_wake : absl::Now();
}

void NodeImpl::ControlLoop() {
  NameThisThread("mesh-control");
  pollfd wake = {control_wake_.get(), POLLIN, 0};
  absl::Time next = absl::Now();
  while (!stopping()) {
    const int timeout_ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
    if (next > absl::Now() && ::poll(&wake, 1, timeout_ms) > 0) (void)base::DrainEventFd(control_wake_.get());
    if (stopping()) break;
    next = Reconcile();
  }
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
    // Payload bytes: every frame this node sends or accepts carries one
    // envelope (kFrameHeaderBytes), which the link counts with it.
    r.tx_bytes = s.tx_bytes - std::min(s.tx_bytes, s.tx_messages * kFrameHeaderBytes);
    r.tx_full_events = s.tx_full_events;
    r.rx_messages = s.rx_messages;
    r.rx_bytes = s.rx_bytes - std::min(s.rx_bytes, s.rx_messages * kFrameHeaderBytes);
    r.tx_ring_bytes = s.tx_ring_bytes;
    r.rx_ring_bytes = s.rx_ring_bytes;
    r.tx_queued_bytes = s.tx_queued_bytes;
    r.rx_queued_bytes = s.rx_queued_bytes;
    r.peer_unresponsive = link->unresponsive();
    r.since = link->since();
    reports.push_back(std::move(r));
  }
  return topology::LocalSnapshot(name(), absl::Now(), Members(), reports);
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
  for (auto& answer : peers_.GetTopologyAll(targets, /*local_only=*/true, deadline)) {
    if (answer.ok()) remote.push_back(std::move(*answer));
  }
  return topology::MergeSnapshots(std::move(local), remote);
}

absl::StatusOr<mesh::v1::TopologySnapshot> NodeImpl::Topology(bool local_only) {
  if (local_only) return LocalTopology();
  return GatherTopology(absl::Now() + kGatherTimeout);
}

}  // namespace mesh
