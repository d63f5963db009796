#include "mesh/dataplane/sender.h"

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "mesh/dataplane/envelope.h"

namespace mesh {
namespace {

// Broadcast: how long one wait for room in one full peer's ring may take
// before the next full peer gets its turn.
constexpr absl::Duration kBroadcastSlice = absl::Milliseconds(1);

}  // namespace

Sender::Sender(std::string node_name, size_t max_message_bytes, const LinkTable* links, Hooks hooks,
               pool::SendPool* pool, size_t ring_threshold)
    : node_name_(std::move(node_name)),
      max_message_bytes_(max_message_bytes),
      links_(links),
      hooks_(std::move(hooks)),
      pool_(pool),
      ring_threshold_(ring_threshold) {}

absl::Status Sender::CheckSize(size_t bytes) const {
  if (bytes > max_message_bytes_) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", bytes, " bytes exceeds max_message_bytes (",
                                                   max_message_bytes_, "); split it or raise the limit"));
  }
  return absl::OkStatus();
}

std::shared_ptr<Transport> Sender::FindLink(Caller caller, absl::string_view peer, absl::Status* why) const {
  std::shared_ptr<Transport> link = links_->Find(peer);
  if (ABSL_PREDICT_TRUE(link != nullptr)) return link;
  if (absl::Status running = hooks_.check_running("sending"); !running.ok()) {
    *why = running;
  } else if (peer == node_name_) {
    *why = absl::InvalidArgumentError(
        absl::StrCat("cannot send to '", peer, "': that is this node itself; send to another node"));
  } else if (caller == Caller::kApi) {
    *why = absl::NotFoundError(absl::StrCat("no link from ", node_name_, " to peer '", peer,
                                            "'; check Peers() or wait for it with WaitForPeers()"));
  } else {
    const std::vector<std::string> names = links_->LiveNames();
    *why = absl::NotFoundError(absl::StrCat("node ", node_name_, " has no link to peer '", peer, "' (its peers: ",
                                            names.empty() ? "none" : absl::StrJoin(names, ", "),
                                            "); see `meshctl topology`"));
  }
  return nullptr;
}

absl::Status Sender::ExplainSendError(const absl::Status& status, const Transport& link, size_t bytes) const {
  // The pool's quota errors explain themselves (who holds how much).
  if (absl::StrContains(status.message(), "pool.peer_quota_bytes")) return status;
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

void Sender::NoteSendFailure(const std::shared_ptr<Transport>& link, const absl::Status& status) const {
  // DATA_LOSS: the peer corrupted the ring we write into. UNAVAILABLE: the
  // link is down already (then this is a no-op), or the peer hung up its
  // doorbell while we waited for room. Either way the link is finished.
  if (absl::IsDataLoss(status) || absl::IsUnavailable(status)) {
    hooks_.link_failed(link, absl::StrCat("send failed: ", status.message()));
  }
}

// The send path, step by step: size check; LinkTable::Find (per-thread
// cache, no lock while the link set is unchanged); Transport::SendFrame (the
// link's send mutex, the 8-byte envelope and the payload copied into the
// ring, one tail store; a doorbell write only if the peer's receive thread
// sleeps). No clock is read and nothing is allocated unless the ring is
// full or something fails.
absl::Status Sender::Send(Caller caller, absl::string_view peer, absl::string_view payload,
                          absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  absl::Status why;
  std::shared_ptr<Transport> link = FindLink(caller, peer, &why);
  if (link == nullptr) return why;
  if (ABSL_PREDICT_FALSE(Pooled(payload.size()))) {
    absl::StatusOr<pool::BlockHandle> block = CopyToBlock(payload, deadline);
    if (!block.ok()) return block.status();
    absl::Status s = pool_->SendRef(link, *block, 0, deadline);
    if (s.ok()) return s;
    NoteSendFailure(link, s);
    return ExplainSendError(s, *link, payload.size());
  }
  absl::Status s = link->SendFrame(kMessagePrefix, payload, deadline);
  if (ABSL_PREDICT_TRUE(s.ok())) return s;
  NoteSendFailure(link, s);
  return ExplainSendError(s, *link, payload.size());
}

absl::StatusOr<pool::BlockHandle> Sender::CopyToBlock(absl::string_view payload, absl::Time deadline) {
  absl::StatusOr<pool::BlockHandle> block = pool_->Allocate(payload.size(), deadline, /*copy=*/true);
  if (!block.ok()) return block.status();
  if (!payload.empty()) std::memcpy(block->data(), payload.data(), payload.size());
  return block;
}

absl::Status Sender::SendBlock(absl::string_view peer, const pool::BlockHandle& block, absl::Time deadline) {
  if (pool_ == nullptr || !block) return absl::InvalidArgumentError("the loan is empty (already sent or dropped)");
  SHMESH_RETURN_IF_ERROR(CheckSize(block.size()));
  absl::Status why;
  std::shared_ptr<Transport> link = FindLink(Caller::kApi, peer, &why);
  if (link == nullptr) return why;
  absl::Status s = pool_->SendRef(link, block, 0, deadline);
  if (s.ok()) return s;
  NoteSendFailure(link, s);
  return ExplainSendError(s, *link, block.size());
}

absl::StatusOr<size_t> Sender::SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                         absl::Time deadline) {
  for (absl::string_view payload : payloads) SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  if (std::any_of(payloads.begin(), payloads.end(), [&](absl::string_view p) { return Pooled(p.size()); })) {
    // Large payloads go one by one (through the pool), in order.
    size_t sent = 0;
    for (absl::string_view payload : payloads) {
      absl::Status s = Send(Caller::kApi, peer, payload, deadline);
      if (!s.ok()) {
        if (sent > 0) return sent;
        return s;
      }
      ++sent;
    }
    return sent;
  }
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

// Broadcast, step by step: (1) one pass writes to every peer whose ring
// has room, without waiting; (2) the peers left (full rings) are retried
// in turn, each for at most kBroadcastSlice at a time, until each is
// written or `deadline` passes; peers reported unresponsive are not waited
// for (their process does not run: it will not make room). So one full or
// stopped peer never delays the others' copies, and the call returns at
// `deadline` at the latest.
absl::StatusOr<BroadcastResult> Sender::Broadcast(absl::string_view payload, absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(hooks_.check_running("Broadcast()"));
  SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  if (Pooled(payload.size())) {
    absl::StatusOr<pool::BlockHandle> block = CopyToBlock(payload, deadline);
    if (!block.ok()) return block.status();
    return BroadcastBlock(*block, deadline);
  }
  return BroadcastWith(
      payload.size(),
      [payload](const std::shared_ptr<Transport>& link, absl::Time d) {
        return link->SendFrame(kMessagePrefix, payload, d);
      },
      deadline);
}

absl::StatusOr<BroadcastResult> Sender::BroadcastBlock(const pool::BlockHandle& block, absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(hooks_.check_running("Broadcast()"));
  if (pool_ == nullptr || !block) return absl::InvalidArgumentError("the loan is empty (already sent or dropped)");
  SHMESH_RETURN_IF_ERROR(CheckSize(block.size()));
  pool::SendPool* pool = pool_;
  return BroadcastWith(
      block.size(),
      [pool, &block](const std::shared_ptr<Transport>& link, absl::Time d) { return pool->SendRef(link, block, 0, d); },
      deadline);
}

absl::StatusOr<BroadcastResult> Sender::BroadcastWith(
    size_t bytes, const std::function<absl::Status(const std::shared_ptr<Transport>&, absl::Time)>& send,
    absl::Time deadline) {
  const std::vector<std::shared_ptr<Transport>> links = links_->Live();
  BroadcastResult result;
  auto give_up = [&](const std::shared_ptr<Transport>& link, const absl::Status& s) {
    NoteSendFailure(link, s);
    result.not_reached.emplace_back(link->peer_name(), ExplainSendError(s, *link, bytes));
  };
  std::vector<std::shared_ptr<Transport>> full;
  for (const auto& link : links) {
    absl::Status s = send(link, absl::InfinitePast());
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
      absl::Status s = send(link, std::min(deadline, now + kBroadcastSlice));
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

}  // namespace mesh
