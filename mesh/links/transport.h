// Transport: the seam between the node and one link to one peer.
//
// Senders (any thread), the receiver (the node's receive thread) and the
// health monitor (the health thread) talk to a link only through this
// interface, so a second kind of link (a remote link over a gRPC stream,
// later) is a new class, not new branches in the node. Today's only
// implementation is Link (link.h): two shared-memory rings, their
// doorbells and the link socket.
//
// A frame is what one Send puts in the ring: the caller's prefix (the frame
// envelope, mesh/dataplane/envelope.h) followed by the payload. Transports
// do not look inside frames.
//
// Thread contract (every implementation):
//   - identity accessors, Stats(), MarkDown(), down(), unresponsive_since()
//     and SendControl(): thread-safe;
//   - SendFrame(), SendFrames(), SendInPlace(): thread-safe (a transport
//     serializes its producers);
//   - wait_handles(), Drain(), PrepareToSleep(), ClearDoorbell() and
//     ReadControl(): the receive thread only;
//   - BorrowConsumer(), ReturnConsumer() and ConsumerLent():
//     any thread; DrainBorrowed(): the borrower. The ring has one consumer
//     at a time: the receive thread, or a thread that borrows the consumer
//     role to take its own frames (a caller waiting for its response);
//   - BeatHeartbeat() and CheckPeerLiveness(): the health thread only.
#ifndef SHMESH_MESH_LINKS_TRANSPORT_H_
#define SHMESH_MESH_LINKS_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {

// Counters of one link, as seen from this node.
struct LinkStats {
  uint64_t tx_messages = 0, tx_bytes = 0, tx_full_events = 0;
  uint64_t rx_messages = 0, rx_bytes = 0;
  uint64_t tx_ring_bytes = 0, rx_ring_bytes = 0;
  uint64_t tx_queued_bytes = 0, rx_queued_bytes = 0;
  // Control messages (link socket) received, and those of a kind this
  // node does not know (counted and ignored).
  uint64_t control_received = 0, control_ignored = 0;
};

// One control message read from a transport, with the descriptors that
// came with it (owned).
struct ControlMessage {
  mesh::v1::LinkControl message;
  std::vector<base::UniqueFd> fds;
};

class Transport {
 public:
  virtual ~Transport() = default;

  // --- identity (immutable) ---
  virtual const mesh::v1::Member& peer() const = 0;
  const std::string& peer_name() const { return peer().name(); }
  // When the link came up, and how long its setup took on this side.
  virtual absl::Time since() const = 0;
  virtual absl::Duration handshake() const = 0;

  // --- sending (thread-safe) ---
  // Largest payload one frame with a `prefix_bytes` prefix can carry.
  virtual size_t MaxPayload(size_t prefix_bytes) const = 0;
  // Writes one frame, `prefix` then `payload`. If there is no room, waits
  // until `deadline`. Errors: RESOURCE_EXHAUSTED (no room and `deadline`
  // had passed), DEADLINE_EXCEEDED (no room until `deadline`), UNAVAILABLE
  // (the link is or went down), DATA_LOSS (the peer corrupted shared
  // memory: the caller must take the link down), INVALID_ARGUMENT (too big).
  virtual absl::Status SendFrame(absl::string_view prefix, absl::string_view payload,
                                 absl::Time deadline) = 0;
  // Writes one frame per payload, each with `prefix`, in order; `*written`
  // says how many went in (a prefix of `payloads`), also on error.
  virtual absl::Status SendFrames(absl::string_view prefix,
                                  absl::Span<const absl::string_view> payloads,
                                  absl::Time deadline, size_t* written) = 0;
  // Reserve/commit (the basis of loans): reserves room for a frame of up to
  // `max_len` bytes, lets `fill` write it in place (shared memory: the peer
  // cannot see it yet) and commits the length `fill` returns (at most
  // `max_len`; 0 abandons the frame). Errors as SendFrame.
  virtual absl::Status SendInPlace(size_t max_len, absl::Time deadline,
                                   absl::FunctionRef<size_t(absl::Span<uint8_t>)> fill) = 0;

  // --- control channel (the link socket after the handshake) ---
  // Sends `msg` with `fds` (which stay open on this side: the peer gets
  // duplicates). Never blocks: RESOURCE_EXHAUSTED if the socket is full,
  // UNAVAILABLE if the peer is gone.
  virtual absl::Status SendControl(const mesh::v1::LinkControl& msg,
                                   absl::Span<const int> fds = {}) = 0;
  // Receive thread: the next control message, nullopt if none is waiting.
  // UNAVAILABLE: the peer closed the socket (it is gone); any other error:
  // the peer broke the protocol. Either way the link is finished.
  virtual absl::StatusOr<std::optional<ControlMessage>> ReadControl() = 0;

  // --- receiving ---
  // (Receive thread only, up to BorrowConsumer.)
  // Descriptors the receive thread waits on (borrowed): `control` is
  // readable when a control message or EOF arrived; `data` when the peer
  // rang after writing frames while we slept.
  struct WaitHandles {
    int control = -1;
    int data = -1;
  };
  virtual WaitHandles wait_handles() const = 0;
  // Passes up to `max_frames` waiting frames to `fn` (the view is valid
  // during the call) and returns how many it took. `fn` returns false to
  // refuse a frame (its destination is full): that frame stays first in
  // line and the drain stops. DATA_LOSS if the peer corrupted shared
  // memory: the link is unusable. Returns 0 without looking while another
  // thread has the consumer role (ConsumerLent()).
  virtual absl::StatusOr<size_t> Drain(size_t max_frames,
                                       absl::FunctionRef<bool(absl::string_view)> fn) = 0;
  // Announces that the receiver is about to sleep; false if a frame arrived
  // meanwhile (then it must not sleep). While the consumer role is lent,
  // true at once: the borrower arms the doorbell when it gives the role
  // back (and asks for a Wake() if frames wait, see ReturnConsumer).
  virtual bool PrepareToSleep() = 0;

  // Any thread: lending the consumer role, for a thread that waits for one
  // kind of frame and can take it itself (Rpc's caller and its response:
  // no hand-off to the receive thread, which costs a wake-up).
  // BorrowConsumer() takes the role if nobody has it (false: someone has).
  // While it is lent the receive thread leaves the ring alone, and the
  // peer's writes ring no doorbell (the borrower polls). DrainBorrowed()
  // (REQUIRES: borrowed, by this thread) is Drain for the borrower: the
  // first frame `fn` refuses stays first in line for the receive thread.
  // ReturnConsumer() gives the role back; true if the receive thread
  // sleeps while frames wait (the caller must then wake it: the receiver's
  // Wake()); after a DATA_LOSS from DrainBorrowed, return the role and wake
  // the receive thread, which finds the same error and retires the link.
  virtual bool BorrowConsumer() = 0;
  virtual absl::StatusOr<size_t> DrainBorrowed(size_t max_frames,
                                               absl::FunctionRef<bool(absl::string_view)> fn) = 0;
  virtual bool ReturnConsumer() = 0;
  // Whether a thread other than the receive thread has the consumer role now.
  virtual bool ConsumerLent() const = 0;
  // Consumes doorbell rings; never blocks. UNAVAILABLE if the peer hung up
  // its doorbell (stop watching it).
  virtual absl::Status ClearDoorbell() = 0;

  // --- state (thread-safe) ---
  // Marks the link down: sends fail with UNAVAILABLE from now on. True for
  // the one call that took it down.
  virtual bool MarkDown() = 0;
  virtual bool down() const = 0;
  virtual LinkStats Stats() const = 0;

  // --- liveness ---
  // Health thread: tell the peer we run; look at whether it does (true when
  // its state changed with this call).
  virtual void BeatHeartbeat() = 0;
  virtual bool CheckPeerLiveness(absl::Time now, absl::Duration unresponsive_after) = 0;
  // Thread-safe: since when the peer has been silent, or InfiniteFuture().
  virtual absl::Time unresponsive_since() const = 0;
  bool unresponsive() const { return unresponsive_since() != absl::InfiniteFuture(); }
};

}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_TRANSPORT_H_
