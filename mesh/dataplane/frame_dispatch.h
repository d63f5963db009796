// FrameDispatch: where one frame that the receive thread took from a link
// goes. Its envelope is checked (envelope.h), then it is:
//   - a plain message: given to the message handler, or queued for
//     Receive() (the messages of one drain pass pushed under one lock, at
//     Flush());
//   - a pool reference: resolved in the link's inbox to the payload in the
//     peer's segment, then delivered as the message or publication it
//     carries;
//   - a pool release: handed to this node's pool;
//   - a topic frame, request or response: handed to the router.
// A malformed frame, one over max_message_bytes and a kind this node does
// not handle are dropped, counted and logged (at most one line a second,
// with how many were left out).
//
// Thread contract: the receive thread only (it is a part of Receiver's
// loop, in its own file); the counters may be read from any thread.
#ifndef SHMESH_MESH_DATAPLANE_FRAME_DISPATCH_H_
#define SHMESH_MESH_DATAPLANE_FRAME_DISPATCH_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/strings/string_view.h"
#include "mesh/base/log.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/dataplane/frame_router.h"
#include "mesh/dataplane/receive_queue.h"
#include "mesh/links/transport.h"
#include "mesh/message.h"
#include "mesh/pool/inbox.h"
#include "mesh/pool/send_pool.h"

namespace mesh {

// What FrameDispatch dropped. Written by the receive thread only (relaxed
// load + store), read relaxed by anyone: plain statistics, they publish no
// other memory.
struct DispatchCounters {
  std::atomic<uint64_t> dropped_oversize{0};
  std::atomic<uint64_t> dropped_invalid{0};    // malformed envelope or unknown version/kind
  std::atomic<uint64_t> dropped_unhandled{0};  // a known kind this node does not handle
  std::atomic<uint64_t> dropped_bad_refs{0};   // a pool reference that does not resolve
};

// Adds `n` to a counter with one writer (the receive thread): relaxed load
// and store, no read-modify-write needed.
inline void BumpCounter(std::atomic<uint64_t>& counter, uint64_t n = 1) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

class FrameDispatch {
 public:
  // Where frames go (borrowed; as Receiver::Hooks): `message_handler`, or
  // else `queue`; `router`, `inboxes` and `pool` may be null (their frames
  // are then dropped as unhandled).
  struct Targets {
    std::function<void(const MessageView&)> message_handler;
    ReceiveQueue* queue = nullptr;
    FrameRouter* router = nullptr;
    pool::Inboxes* inboxes = nullptr;
    pool::SendPool* pool = nullptr;
  };
  // `counters` and `log` are borrowed and must outlive this.
  FrameDispatch(Targets targets, size_t max_message_bytes, DispatchCounters* counters, const Logger* log);

  // One frame from `link` (the view is valid during the call). True: it
  // was delivered or dropped; false: its destination is full (or its pool
  // segment not seen yet): leave it first in the ring.
  bool Route(const std::shared_ptr<Transport>& link, absl::string_view frame) {
    // A plain message's header has exactly one valid encoding
    // (kMessagePrefix, 8 bytes: version, kind kMessage, no flags, channel
    // 0; no correlation), so comparing those 8 bytes is the whole check on
    // the hot path (ParseFrame agrees: see envelope_test and
    // tests/fuzz/envelope_fuzz.cc).
    if (ABSL_PREDICT_FALSE(frame.size() < kMessagePrefix.size() ||
                           std::memcmp(frame.data(), kMessagePrefix.data(), kMessagePrefix.size()) != 0)) {
      return RouteSlow(link, frame);
    }
    const absl::string_view payload = frame.substr(kMessagePrefix.size());
    if (Oversize(*link, payload.size(), frame.size())) return true;
    if (targets_.message_handler) {
      targets_.message_handler(MessageView{link->peer_name(), payload, {}});
    } else {
      queued_.push_back(Message{link->peer_name(), std::string(payload), {}});
    }
    return true;
  }

  // A publication read from a shared ring (shared_rings.h): the size check,
  // then the router. False: the subscription is full (hold the ring).
  bool RouteShared(const std::shared_ptr<Transport>& link, uint32_t channel, absl::string_view topic,
                   absl::string_view payload);

  // Pushes the messages queued since the last Flush to the queue (no-op
  // with a handler). Call after every drain of a link, before anything
  // that must come after its messages.
  void Flush() {
    if (!queued_.empty()) targets_.queue->PushBatch(&queued_);
  }

 private:
  // A frame that failed Route's fast check: the full parse says why, or it
  // is a frame for the pool or the router.
  bool RouteSlow(const std::shared_ptr<Transport>& link, absl::string_view frame);
  // A kPoolRef frame: resolved in the link's inbox, then delivered as the
  // message (channel 0) or publication (topic id `channel`) it carries. A
  // reference to a segment not seen yet is refused once, so that the
  // link's control channel (where the peer sent the segment before the
  // reference) is read first (see awaiting_control); after that it is
  // dropped and counted.
  bool RoutePooled(const std::shared_ptr<Transport>& link, const ParsedFrame& parsed, size_t frame_bytes);
  // True (and counted, logged) if `payload_bytes` is over max_message_bytes.
  bool Oversize(const Transport& link, size_t payload_bytes, size_t frame_bytes) {
    if (ABSL_PREDICT_TRUE(payload_bytes <= max_message_bytes_)) return false;
    DropOversize(link, frame_bytes);
    return true;
  }
  void DropOversize(const Transport& link, size_t frame_bytes);
  void NoteDrop(const Transport& link, absl::string_view what, size_t bytes);

  const Targets targets_;
  const size_t max_message_bytes_;
  DispatchCounters* const counters_;
  const Logger* const log_;
  // Without a handler: the messages of one drain pass, queued under one lock.
  std::vector<Message> queued_;
  LogLimiter drop_log_{absl::Seconds(1)};
};

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_FRAME_DISPATCH_H_
