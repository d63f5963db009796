// NodeImpl: the data path (delegated to the Sender and the Receiver), the
// handlers, and links coming and going. Lifecycle is in node.cc; membership
// and the control thread in node_control.cc.
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/node_impl.h"

namespace mesh {
namespace {

PeerInfo PeerInfoOf(const Transport& link) {
  return PeerInfo{link.peer_name(), link.peer().id(), link.peer().pid(), link.handshake()};
}

}  // namespace

// ---------------------------------------------------------------------------
// Sending: the Sender (dataplane/sender.h) does it.

absl::Status NodeImpl::SendApi(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return sender_.Send(Sender::Caller::kApi, peer, payload, deadline);
}

absl::Status NodeImpl::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return sender_.Send(Sender::Caller::kRemote, peer, payload, deadline);
}

absl::StatusOr<size_t> NodeImpl::SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                           absl::Time deadline) {
  return sender_.SendBatch(peer, payloads, deadline);
}

absl::StatusOr<BroadcastResult> NodeImpl::BroadcastApi(absl::string_view payload, absl::Time deadline) {
  return sender_.Broadcast(payload, deadline);
}

absl::StatusOr<control::BroadcastOutcome> NodeImpl::Broadcast(absl::string_view payload, absl::Time deadline) {
  SHMESH_ASSIGN_OR_RETURN(BroadcastResult result, sender_.Broadcast(payload, deadline));
  return control::BroadcastOutcome{std::move(result.delivered), std::move(result.not_reached)};
}

absl::StatusOr<mesh::Loan> NodeImpl::NewLoan(size_t bytes, absl::Time deadline) {
  if (bytes > config_.max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("a loan of ", bytes, " bytes exceeds max_message_bytes (",
                                                   config_.max_message_bytes(), "); loan less or raise the limit"));
  }
  SHMESH_ASSIGN_OR_RETURN(pool::BlockHandle block, pool_->Allocate(bytes, deadline));
  return mesh::Loan(std::move(block));
}

absl::Status NodeImpl::SendLoan(absl::string_view peer, mesh::Loan* loan, absl::Time deadline) {
  if (loan->block() == nullptr) return absl::InvalidArgumentError("the loan is empty (already sent, or moved from)");
  SHMESH_RETURN_IF_ERROR(sender_.SendBlock(peer, *loan->block(), deadline));
  loan->Consume();
  return absl::OkStatus();
}

absl::StatusOr<BroadcastResult> NodeImpl::BroadcastLoan(mesh::Loan* loan, absl::Time deadline) {
  if (loan->block() == nullptr) return absl::InvalidArgumentError("the loan is empty (already sent, or moved from)");
  SHMESH_ASSIGN_OR_RETURN(BroadcastResult result, sender_.BroadcastBlock(*loan->block(), deadline));
  loan->Consume();
  return result;
}

mesh::v1::PoolUsage NodeImpl::PoolReport() const {
  const pool::SendPool::Stats s = pool_->stats();
  const pool::Inboxes::Stats r = inboxes_.stats();
  mesh::v1::PoolUsage out;
  out.set_node(name());
  out.set_segments(s.segments);
  out.set_segment_bytes(s.segment_bytes);
  out.set_blocks_in_use(s.blocks_in_use);
  out.set_bytes_in_use(s.bytes_in_use);
  out.set_sent_messages(s.sent_messages);
  out.set_sent_bytes(s.sent_bytes);
  out.set_bad_releases(s.bad_releases);
  for (const auto& h : s.held_by) {
    mesh::v1::PoolUsage::PeerHold* hold = out.add_held_by();
    hold->set_peer(h.peer);
    hold->set_blocks(h.blocks);
    hold->set_bytes(h.bytes);
  }
  out.set_mapped_segments(r.mapped_segments);
  out.set_mapped_bytes(r.mapped_bytes);
  out.set_dropped_bad_refs(r.dropped_bad_refs);
  return out;
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
  // Installed and its peer-up posted under Membership's mutex, which
  // LinkFailed's Depart takes too: so this peer's down is posted after its
  // up, and the events thread runs them in that order. Posted once the link
  // is in the table: the handler may send to the peer at once. The log line
  // comes first, before the link is in the table: a WaitForPeers that
  // returns with this peer finds its "peer up" already written. (Links are
  // installed and removed only under that mutex, so the table cannot gain
  // this peer between the check and Install; only a Stop can refuse it.)
  const bool installed = membership_->Admit(link->peer_name(), link->peer().id(), [&] {
    if (stopping() || links_.Find(link->peer_name()) != nullptr) return false;
    log_.Info("peer up: %s (pid %d)", info.name, info.pid);
    if (!links_.Install(link)) return false;
    if (peer_up_handler_) events_.Post([this, info] { peer_up_handler_(info); });
    return true;
  });
  if (!installed) {
    log_.Debug("dropping redundant or stale link to %s", link->peer_name());
    (void)link->MarkDown();
    return;
  }
  receiver_->Wake();
  TopicsLinkUp(link);
}

void NodeImpl::LinkFailed(const std::shared_ptr<Transport>& link, absl::string_view why) {
  if (!link->MarkDown()) return;  // someone else noticed first
  const PeerInfo info = PeerInfoOf(*link);
  bool was_installed = false;
  membership_->Depart(link->peer_name(), link->peer().id(), [&] {
    was_installed = links_.Remove(link);
    if (was_installed && peer_down_handler_) events_.Post([this, info] { peer_down_handler_(info); });
  });
  if (was_installed) log_.Info("peer down: %s (pid %d): %s", info.name, info.pid, why);
  TopicsLinkDown(link.get(), why);
  pool_->LinkGone(link.get());  // what the peer held is free again
  receiver_->Wake();
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
  // Ordered with the up/down events: posted under Membership's mutex, and
  // only while the link is installed (so never after its down).
  membership_->RunExclusive([&] {
    if (link->down() || links_.Find(link->peer_name()) != link) return;
    const PeerInfo info = PeerInfoOf(*link);
    events_.Post([this, info, unresponsive] { peer_unresponsive_handler_(info, unresponsive); });
  });
}

}  // namespace mesh
