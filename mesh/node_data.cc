// NodeImpl: the data path (Send, SendBatch, Broadcast, Receive), the
// handlers, and links coming and going. Lifecycle is in node.cc; membership
// and the control thread in node_control.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fdpass/status_macros.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/node_impl.h"

namespace mesh {
namespace {

// Broadcast: how long one wait for room in one full peer's ring may take
// before the next full peer gets its turn.
constexpr absl::Duration kBroadcastSlice = absl::Milliseconds(1);

PeerInfo PeerInfoOf(const Transport& link) {
  return PeerInfo{link.peer_name(), link.peer().id(), link.peer().pid(), link.handshake()};
}

}  // namespace

// ---------------------------------------------------------------------------
// Sending.

absl::Status NodeImpl::CheckSize(size_t bytes) const {
  if (bytes > config_.max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", bytes, " bytes exceeds max_message_bytes (",
                                                   config_.max_message_bytes(), "); split it or raise the limit"));
  }
  return absl::OkStatus();
}

std::shared_ptr<Transport> NodeImpl::FindLink(Caller caller, absl::string_view peer, absl::Status* why) {
  std::shared_ptr<Transport> link = links_.Find(peer);
  if (ABSL_PREDICT_TRUE(link != nullptr)) return link;
  if (absl::Status running = CheckRunning("sending"); !running.ok()) {
    *why = running;
  } else if (peer == name()) {
    *why = absl::InvalidArgumentError(
        absl::StrCat("cannot send to '", peer, "': that is this node itself; send to another node"));
  } else if (caller == Caller::kApi) {
    *why = absl::NotFoundError(absl::StrCat("no link from ", name(), " to peer '", peer,
                                            "'; check Peers() or wait for it with WaitForPeers()"));
  } else {
    const std::vector<std::string> names = links_.LiveNames();
    *why = absl::NotFoundError(absl::StrCat("node ", name(), " has no link to peer '", peer, "' (its peers: ",
                                            names.empty() ? "none" : absl::StrJoin(names, ", "),
                                            "); see `meshctl topology`"));
  }
  return nullptr;
}

absl::Status NodeImpl::ExplainSendError(const absl::Status& status, const Transport& link, size_t bytes) const {
  const std::string& peer = link.peer_name();
  const absl::Time silent_since = link.unresponsive_since();
  const std::string why =
      silent_since == absl::InfiniteFuture()
          ? absl::StrCat("'", peer, "' is not keeping up (slow consumer?)")
          : absl::StrCat("'", peer, "' is unresponsive: its process has not run for ",
                         absl::FormatDuration(absl::Trunc(absl::Now() - silent_since, absl::Milliseconds(1))),
                         " (stopped or hung?)");
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      return absl::ResourceExhaustedError(absl::StrCat("ring to '", peer, "' is full (", bytes,
                                                       " bytes did not fit); ", why,
                                                       "; retry later or pass a deadline to wait"));
    case absl::StatusCode::kDeadlineExceeded:
      return absl::DeadlineExceededError(absl::StrCat("ring to '", peer, "' stayed full until the deadline; ", why));
    default:
      return status;
  }
}

void NodeImpl::NoteSendFailure(const std::shared_ptr<Transport>& link, const absl::Status& status) {
  // DATA_LOSS: the peer corrupted the ring we write into. UNAVAILABLE: the
  // link is down already (then this is a no-op), or the peer hung up its
  // doorbell while we waited for room. Either way the link is finished.
  if (absl::IsDataLoss(status) || absl::IsUnavailable(status)) {
    LinkFailed(link, absl::StrCat("send failed: ", status.message()));
  }
}

// The send path, step by step: size check; LinkTable::Find (per-thread
// cache, no lock while the link set is unchanged); Transport::SendFrame (the
// link's send mutex, the 16-byte envelope and the payload copied into the
// ring, one tail store; a doorbell write only if the peer's receive thread
// sleeps). No clock is read and nothing is allocated unless the ring is
// full or something fails.
absl::Status NodeImpl::SendFrom(Caller caller, absl::string_view peer, absl::string_view payload,
                                absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  absl::Status why;
  std::shared_ptr<Transport> link = FindLink(caller, peer, &why);
  if (link == nullptr) return why;
  absl::Status s = link->SendFrame(kMessagePrefix, payload, deadline);
  if (ABSL_PREDICT_TRUE(s.ok())) return s;
  NoteSendFailure(link, s);
  return ExplainSendError(s, *link, payload.size());
}

absl::Status NodeImpl::SendApi(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return SendFrom(Caller::kApi, peer, payload, deadline);
}

absl::Status NodeImpl::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return SendFrom(Caller::kRemote, peer, payload, deadline);
}

absl::StatusOr<size_t> NodeImpl::SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                           absl::Time deadline) {
  for (absl::string_view payload : payloads) SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  absl::Status why;
  std::shared_ptr<Transport> link = FindLink(Caller::kApi, peer, &why);
  if (link == nullptr) return why;
  if (payloads.empty()) return 0;
  size_t written = 0;
  absl::Status s = link->SendFrames(kMessagePrefix, payloads, deadline, &written);
  if (!s.ok()) NoteSendFailure(link, s);
  if (written > 0 || s.ok()) return written;
  return ExplainSendError(s, *link, payloads[0].size());
}

absl::StatusOr<BroadcastResult> NodeImpl::BroadcastApi(absl::string_view payload, absl::Time deadline) {
  return BroadcastFrom(Caller::kApi, payload, deadline);
}

absl::StatusOr<control::BroadcastOutcome> NodeImpl::Broadcast(absl::string_view payload, absl::Time deadline) {
  SHMESH_ASSIGN_OR_RETURN(BroadcastResult result, BroadcastFrom(Caller::kRemote, payload, deadline));
  return control::BroadcastOutcome{std::move(result.delivered), std::move(result.not_reached)};
}

// Broadcast, step by step: (1) one pass writes to every peer whose ring
// has room, without waiting; (2) the peers left (full rings) are retried
// in turn, each for at most kBroadcastSlice at a time, until each is
// written or `deadline` passes; peers reported unresponsive are not waited
// for (their process does not run: it will not make room). So one full or
// stopped peer never delays the others' copies, and the call returns at
// `deadline` at the latest.
absl::StatusOr<BroadcastResult> NodeImpl::BroadcastFrom(Caller caller, absl::string_view payload,
                                                        absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(CheckRunning("Broadcast()"));
  SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  const std::vector<std::shared_ptr<Transport>> links = links_.Live();
  BroadcastResult result;
  auto give_up = [&](const std::shared_ptr<Transport>& link, const absl::Status& s) {
    NoteSendFailure(link, s);
    result.not_reached.emplace_back(link->peer_name(), ExplainSendError(s, *link, payload.size()));
  };
  std::vector<std::shared_ptr<Transport>> full;
  for (const auto& link : links) {
    absl::Status s = link->SendFrame(kMessagePrefix, payload, absl::InfinitePast());
    if (s.ok()) {
      result.delivered.push_back(link->peer_name());
    } else if (absl::IsResourceExhausted(s) && deadline > absl::Now() && !link->unresponsive()) {
      full.push_back(link);
    } else {
      give_up(link, s);
    }
  }
  while (!full.empty()) {
    std::vector<std::shared_ptr<Transport>> still_full;
    for (const auto& link : full) {
      const absl::Time now = absl::Now();
      absl::Status s = link->SendFrame(kMessagePrefix, payload, std::min(deadline, now + kBroadcastSlice));
      if (s.ok()) {
        result.delivered.push_back(link->peer_name());
      } else if ((absl::IsDeadlineExceeded(s) || absl::IsResourceExhausted(s)) && absl::Now() < deadline &&
                 !link->unresponsive()) {
        still_full.push_back(link);
      } else {
        give_up(link, absl::IsResourceExhausted(s) ? absl::DeadlineExceededError(s.message()) : s);
      }
    }
    full.swap(still_full);
  }
  if (result.delivered.empty() && !result.not_reached.empty()) {
    std::vector<std::string> why;
    for (const auto& [peer, status] : result.not_reached) why.push_back(status.ToString());
    return absl::Status(result.not_reached.front().second.code(),
                        absl::StrCat("broadcast reached none of ", result.not_reached.size(),
                                     " peer(s): ", absl::StrJoin(why, "; ")));
  }
  return result;
}

// ---------------------------------------------------------------------------
// Receiving and handlers.

absl::Status NodeImpl::SetMessageHandler(std::function<void(const MessageView&)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetMessageHandler()"));
  message_handler_ = std::move(handler);
  return absl::OkStatus();
}
absl::Status NodeImpl::SetPeerUpHandler(std::function<void(const PeerInfo&)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetPeerUpHandler()"));
  peer_up_handler_ = std::move(handler);
  return absl::OkStatus();
}
absl::Status NodeImpl::SetPeerDownHandler(std::function<void(const PeerInfo&)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetPeerDownHandler()"));
  peer_down_handler_ = std::move(handler);
  return absl::OkStatus();
}
absl::Status NodeImpl::SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetPeerUnresponsiveHandler()"));
  peer_unresponsive_handler_ = std::move(handler);
  return absl::OkStatus();
}

absl::StatusOr<Message> NodeImpl::Receive(absl::Time deadline) {
  if (message_handler_) {
    return absl::FailedPreconditionError("Receive() called on a node with a message handler; use one or the other");
  }
  if (queue_ == nullptr) SHMESH_RETURN_IF_ERROR(CheckRunning("Receive()"));
  return queue_->Receive(deadline);
}

int NodeImpl::receive_fd() const { return queue_ == nullptr ? -1 : queue_->ready_fd(); }

Receiver::Counters NodeImpl::ReceiveCounters() const {
  return receiver_ == nullptr ? Receiver::Counters{} : receiver_->counters();
}

std::vector<std::string> NodeImpl::Peers() const { return links_.LiveNames(); }

std::vector<std::string> NodeImpl::UnresponsivePeers() const {
  std::vector<std::string> out;
  for (const auto& link : links_.Live()) {
    if (link->unresponsive()) out.push_back(link->peer_name());
  }
  return out;
}

absl::Status NodeImpl::WaitForPeers(size_t n, absl::Time deadline) {
  if (links_.AwaitSize(n, deadline)) return absl::OkStatus();
  SHMESH_RETURN_IF_ERROR(CheckRunning("WaitForPeers()"));
  return absl::DeadlineExceededError(absl::StrCat("node ", name(), " has ", links_.size(), " peer(s), wanted ", n,
                                                  "; are the other nodes running and seeded to this mesh?"));
}

// ---------------------------------------------------------------------------
// Links coming and going.

void NodeImpl::InstallLink(std::shared_ptr<Transport> link) {
  const PeerInfo info = PeerInfoOf(*link);
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* member = roster_.Find(link->peer_name());
    if (stopping() || member == nullptr || member->member.id() != link->peer().id() ||
        links_.Contains(link->peer_name())) {
      log_.Debug("dropping redundant or stale link to %s", link->peer_name());
      (void)link->MarkDown();
      return;
    }
    (void)links_.Install(link);
    // Posted once the link is in the table (the handler may send to the
    // peer at once), under mu_, which LinkFailed takes to post the down
    // event: so this peer's down is posted after its up, and the events
    // thread runs them in that order.
    if (peer_up_handler_) events_.Post([this, info] { peer_up_handler_(info); });
    roster_.MarkLinked(link->peer_name(), absl::Now());
    reconciler_.OnLinkUp(link->peer_name());
    BumpLocked();
  }
  receiver_->Wake();
  NotifyChange();
  log_.Info("peer up: %s (pid %d)", info.name, info.pid);
}

void NodeImpl::LinkFailed(const std::shared_ptr<Transport>& link, absl::string_view why) {
  if (!link->MarkDown()) return;  // someone else noticed first
  const PeerInfo info = PeerInfoOf(*link);
  bool was_installed = false;
  {
    absl::MutexLock lock(&mu_);
    was_installed = links_.Remove(link);
    if (was_installed && peer_down_handler_) events_.Post([this, info] { peer_down_handler_(info); });
    DepartLocked(link->peer_name(), link->peer().id());
    BumpLocked();
  }
  if (was_installed) log_.Info("peer down: %s (pid %d): %s", info.name, info.pid, why);
  receiver_->Wake();
  WakeControl();
  NotifyChange();
}

void NodeImpl::OnLivenessChange(const std::shared_ptr<Transport>& link, bool unresponsive) {
  const absl::Time now = absl::Now();
  if (unresponsive) {
    log_.Warning(
        "peer %s (pid %d) is unresponsive: its process has not run for %s (stopped or hung?); sends to it "
        "queue in its ring until the ring is full, then fail",
        link->peer_name(), link->peer().pid(),
        absl::FormatDuration(absl::Trunc(now - link->unresponsive_since(), absl::Milliseconds(1))));
  } else {
    log_.Info("peer %s is responsive again", link->peer_name());
  }
  if (!peer_unresponsive_handler_) return;
  // Ordered with the up/down events by the queue: posted under mu_ with a
  // check that the link is still installed (so never after its down).
  absl::MutexLock lock(&mu_);
  if (link->down() || links_.Find(link->peer_name()) != link) return;
  const PeerInfo info = PeerInfoOf(*link);
  events_.Post([this, info, unresponsive] { peer_unresponsive_handler_(info, unresponsive); });
}

}  // namespace mesh
