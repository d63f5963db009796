// ControlChannel: framed control messages (mesh.v1.LinkControl) with
// descriptors, both ways, on a link's socket after its handshake.
//
// Each link keeps the Unix SOCK_SEQPACKET socket of its handshake open for
// its whole life (mesh/links/link.h). This class turns it into a control channel:
// one LinkControl per socket message, descriptors attached with SCM_RIGHTS
// (for now only a future kind, PoolSegment, will carry any). The wire rules
// are in the comment on LinkControl in proto/mesh/v1/mesh.proto:
//   - at most kMaxControlMessageBytes serialized and kMaxControlFds
//     descriptors per message; Goodbye, Ping and Pong carry none;
//   - a body case we do not know (a newer peer) is counted and ignored;
//   - end-of-file means the peer is gone.
// Everything else (garbage bytes, truncation, descriptors where none
// belong, too many descriptors) is a protocol violation: Read returns an
// error and the caller retires the link.
//
// Nothing here waits on the peer: sends use MSG_DONTWAIT | MSG_NOSIGNAL and
// fail with RESOURCE_EXHAUSTED when the socket buffer is full (a peer that
// does not read cannot hang us), reads return "nothing now" instead of
// waiting.
#ifndef SHMESH_MESH_LINKS_CONTROL_CHANNEL_H_
#define SHMESH_MESH_LINKS_CONTROL_CHANNEL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace links {

// Largest serialized LinkControl either end sends or accepts.
inline constexpr size_t kMaxControlMessageBytes = 4096;
// Most descriptors attached to one LinkControl.
inline constexpr size_t kMaxControlFds = 8;
// Most messages one Read() call takes off the socket (see Read).
inline constexpr size_t kMaxMessagesPerRead = 16;

// Choices of one channel. Both ends of a link must use the same.
struct ControlChannelOptions {
  // TESTING ONLY: lets Ping carry up to kMaxControlFds descriptors, so that
  // tests can check descriptor delivery while no kind carries any. Remove
  // once PoolSegment exists (its tests will cover delivery).
  bool testing_fds_on_ping = false;
};

// Checks `msg`, which arrived (or is to be sent) with `num_fds` descriptors,
// against the wire rules above. Pure: no I/O; shared by ControlChannel and
// the fuzz target. OK for a known body with the descriptors it may carry,
// and for an unknown body case (body unset but the message not empty: a
// newer peer's kind; the receiver ignores it). INVALID_ARGUMENT: an empty
// message, more than kMaxControlFds descriptors, or descriptors on a kind
// that carries none. Size is not checked here (the caller has the bytes).
absl::Status ValidateLinkControl(const mesh::v1::LinkControl& msg,
                                 size_t num_fds,
                                 const ControlChannelOptions& options = {});

// One received control message of a known kind. The receiver owns `fds`
// (close-on-exec), which are exactly the descriptors the message came with.
struct ReceivedControl {
  mesh::v1::LinkControl message;
  std::vector<base::UniqueFd> fds;
};

// Counters of one channel since it was made.
struct ControlChannelStats {
  uint64_t sent_messages = 0;  // Send() calls that sent.
  uint64_t sent_fds = 0;       // descriptors those carried
  uint64_t send_full = 0;      // Send() calls refused: socket buffer full
  uint64_t received_messages = 0;  // known kinds returned by Read()
  uint64_t received_fds = 0;       // descriptors those carried
  uint64_t ignored_messages = 0;   // unknown kinds skipped (fds closed)
};

// The control channel over one link socket.
//
// Ownership: the socket is borrowed. The Link owns it and must keep it open
// for as long as this object is used; closing it is the Link's job (which
// the peer then reads as EOF).
//
// Thread contract: Send() and Stats() are thread-safe; concurrent Send()s
// each deliver one whole message (SOCK_SEQPACKET sends are atomic), in an
// unspecified order between threads. Read() is single-consumer: call it
// from one thread only (the node's receive thread), never concurrently with
// itself.
class ControlChannel {
 public:
  // REQUIRES: `socket` is a connected SOCK_SEQPACKET Unix socket (borrowed,
  // see above) whose handshake is complete.
  explicit ControlChannel(int socket, ControlChannelOptions options = {});

  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  // Sends `msg` with `fds` attached, without waiting. The caller keeps
  // ownership of `fds` (nothing is closed here); the peer gets its own
  // copies. INVALID_ARGUMENT: no body set, fails ValidateLinkControl, over
  // kMaxControlMessageBytes serialized, or a negative fd; nothing sent.
  // RESOURCE_EXHAUSTED: the socket buffer is full (the peer is not reading),
  // nothing sent; retry later or treat the peer as stuck. UNAVAILABLE: the
  // peer is gone. Never raises SIGPIPE.
  absl::Status Send(const mesh::v1::LinkControl& msg,
                    absl::Span<const int> fds = {});

  // Takes the next message of a known kind off the socket, without waiting.
  // nullopt: nothing to deliver now. Unknown kinds are consumed, counted and
  // their descriptors closed on the way; to stay bounded, one call takes at
  // most kMaxMessagesPerRead messages off the socket, so nullopt can also
  // mean that many were ignored. Call it while the socket is readable, until
  // nullopt; with level-triggered epoll, anything still queued reports the
  // socket readable again. Every descriptor is owned before anything is
  // inspected, and all of a message's are closed on any error. Errors, all
  // meaning "retire the link":
  //   UNAVAILABLE: the peer closed the socket (EOF) or reset it;
  //   DATA_LOSS: a message or its descriptors were truncated (MSG_TRUNC,
  //     MSG_CTRUNC: e.g. our RLIMIT_NOFILE was reached);
  //   INVALID_ARGUMENT: unparseable bytes, an oversized message, too many
  //     descriptors, descriptors on a kind that carries none, an empty body,
  //     or a control message other than SCM_RIGHTS.
  // Read keeps no error state: after an error the caller stops using it.
  absl::StatusOr<std::optional<ReceivedControl>> Read();

  // A snapshot of the counters (each read on its own: not one instant).
  ControlChannelStats Stats() const;

  // The borrowed socket (for the caller's epoll set).
  int socket() const { return socket_; }

 private:
  const int socket_;
  const ControlChannelOptions options_;

  // Counters. Each is updated with a relaxed fetch_add and read relaxed by
  // Stats(): they are plain event counts that order nothing else, so no
  // stronger order is needed. The send ones may be bumped by several
  // threads at once (hence atomic RMWs); the receive ones by Read()'s one
  // thread, read by others.
  std::atomic<uint64_t> sent_messages_{0};
  std::atomic<uint64_t> sent_fds_{0};
  std::atomic<uint64_t> send_full_{0};
  std::atomic<uint64_t> received_messages_{0};
  std::atomic<uint64_t> received_fds_{0};
  std::atomic<uint64_t> ignored_messages_{0};
};

}  // namespace links
}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_CONTROL_CHANNEL_H_
