// Sender: the node's send path. Send, SendBatch and Broadcast of plain
// messages: size check, link lookup (LinkTable, lock-free while the links
// are unchanged), the 8-byte message envelope (kMessagePrefix) prepended to
// the payload in one ring write, and errors that say what happened and what
// to do. A send that finds the link broken (DATA_LOSS: a corrupt ring;
// UNAVAILABLE: the link is or went down) reports it through `link_failed`,
// which retires the link.
//
// Thread contract: thread-safe; every method may be called from any thread
// at once (each link serializes its own producers).
#ifndef SHMESH_MESH_DATAPLANE_SENDER_H_
#define SHMESH_MESH_DATAPLANE_SENDER_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mesh/links/link_table.h"
#include "mesh/links/transport.h"
#include "mesh/message.h"
#include "mesh/pool/send_pool.h"

namespace mesh {

class Sender {
 public:
  // Who asks: errors name C++ calls for the API (kApi), and the peers and
  // `meshctl topology` for gRPC callers (kRemote).
  enum class Caller { kApi, kRemote };
  struct Hooks {
    // OK while the node runs; otherwise the error a send gets ("not
    // started", "stopped"), naming `what`.
    std::function<absl::Status(absl::string_view what)> check_running;
    // A link a send found broken; the node retires it. Must not block.
    std::function<void(const std::shared_ptr<Transport>&, absl::string_view why)> link_failed;
  };

  // `links` and `pool` are borrowed and must outlive the sender. Payloads
  // of more than `ring_threshold` bytes go through `pool` (a block, and a
  // reference in the ring); smaller ones are copied into the ring.
  Sender(std::string node_name, size_t max_message_bytes, const LinkTable* links, Hooks hooks,
         pool::SendPool* pool = nullptr, size_t ring_threshold = ~size_t{0});

  // Writes `payload` into the ring to `peer`, waiting for room until
  // `deadline` (a past deadline: RESOURCE_EXHAUSTED at once if full). Errors:
  // FAILED_PRECONDITION (not running), INVALID_ARGUMENT (too large, or to
  // this node itself), NOT_FOUND (no link), RESOURCE_EXHAUSTED /
  // DEADLINE_EXCEEDED (full; the message says whether the peer is slow or
  // unresponsive), UNAVAILABLE (the link went down).
  absl::Status Send(Caller caller, absl::string_view peer, absl::string_view payload, absl::Time deadline);
  // Sends a reference to `block` (a loan, or a block of a large copy) to
  // `peer`: the payload is not copied. Errors as Send; also
  // RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED for the peer's pool quota.
  absl::Status SendBlock(absl::string_view peer, const pool::BlockHandle& block, absl::Time deadline);
  // A block of `payload.size()` bytes with `payload` copied in (the copy
  // that a large Send makes), waiting for pool memory until `deadline`.
  absl::StatusOr<pool::BlockHandle> CopyToBlock(absl::string_view payload, absl::Time deadline);
  // Writes `payloads` in order with one publish per ring's worth; returns
  // how many went in (a prefix). Errors as Send when none did.
  absl::StatusOr<size_t> SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                   absl::Time deadline);
  // Writes `payload` to every linked peer: first to every ring with room,
  // then to the full ones in turn (never waiting for an unresponsive one),
  // until `deadline`. An error only if no peer could be reached.
  absl::StatusOr<BroadcastResult> Broadcast(absl::string_view payload, absl::Time deadline);
  // The same with a reference to `block` for every peer: written once.
  absl::StatusOr<BroadcastResult> BroadcastBlock(const pool::BlockHandle& block, absl::Time deadline);
  // True if a payload of `bytes` goes through the pool.
  bool Pooled(size_t bytes) const { return pool_ != nullptr && bytes > ring_threshold_; }

 private:
  absl::Status CheckSize(size_t bytes) const;
  // Broadcast's body: `send(link, deadline)` writes the message to one link.
  absl::StatusOr<BroadcastResult> BroadcastWith(
      size_t bytes, const std::function<absl::Status(const std::shared_ptr<Transport>&, absl::Time)>& send,
      absl::Time deadline);
  std::shared_ptr<Transport> FindLink(Caller caller, absl::string_view peer, absl::Status* why) const;
  absl::Status ExplainSendError(const absl::Status& status, const Transport& link, size_t bytes) const;
  void NoteSendFailure(const std::shared_ptr<Transport>& link, const absl::Status& status) const;

  const std::string node_name_;
  const size_t max_message_bytes_;
  const LinkTable* const links_;
  const Hooks hooks_;
  pool::SendPool* const pool_;
  const size_t ring_threshold_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_SENDER_H_
