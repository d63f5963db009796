// fdpass sockets: Unix-domain SOCK_SEQPACKET connections that carry small
// messages plus file descriptors (SCM_RIGHTS), and the peer's credentials;
// also SOCK_STREAM listeners whose connections are handed to a byte-stream
// protocol (gRPC) after a credentials check.
//
// This is how shmesh nodes hand each other memfd rings and doorbell sockets:
// a node listens on a filesystem socket, a peer connects, each side checks
// the other with GetPeerCred, and then SendMessage/ReceiveMessage move one
// message (bytes + descriptors) at a time. SOCK_SEQPACKET keeps message
// boundaries, so a message is never split or merged, and it reports the
// peer's exit as end-of-file on the connection.
//
// Every descriptor this file creates is close-on-exec and non-blocking.
// Every function that can wait takes an absolute `deadline`; a deadline at or
// before now means "try once, don't wait". EINTR never surfaces as an error.
//
// Thread contract: all functions are thread-safe; they keep no state of
// their own. Concurrent SendMessage calls on one socket each deliver a whole
// message (order between threads unspecified); the same holds for
// concurrent ReceiveMessage calls.
#ifndef SHMESH_FDPASS_SOCKET_H_
#define SHMESH_FDPASS_SOCKET_H_

#include <sys/types.h>

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"

namespace fdpass {

// Max descriptors in one message. Far below the kernel's SCM_MAX_FD (253).
inline constexpr size_t kMaxFdsPerMessage = 16;
// Max payload bytes of one message.
inline constexpr size_t kMaxMessageBytes = 64 * 1024;
// Longest filesystem socket path: sun_path is 108 bytes including the NUL.
inline constexpr size_t kMaxSocketPathBytes = 107;

// Credentials of the process at the other end of a Unix socket, as the
// kernel recorded them when the connection (or socketpair) was made.
struct PeerCred {
  pid_t pid;
  uid_t uid;
  gid_t gid;
};

// Creates a listening, non-blocking, close-on-exec SOCK_SEQPACKET socket
// bound to filesystem `path` (never the abstract namespace). The caller owns
// the result and should unlink `path` when done; a later call replaces a
// stale file. Existing `path`:
//   - a socket nobody listens on (a dead process's): unlinked, then bound;
//   - a socket with a live listener: ALREADY_EXISTS. Finding out costs that
//     listener one connection that closes at once (it reads EOF);
//   - anything else (file, directory, symlink): FAILED_PRECONDITION.
// Empty path, a leading or embedded '\0', or more than kMaxSocketPathBytes
// (107) bytes: INVALID_ARGUMENT. Calls in one process or several are
// serialized by an flock() on the parent directory, so two racing callers
// cannot both "replace" the same path. Other failures: the errno's code.
absl::StatusOr<base::UniqueFd> ListenSeqpacket(const std::string& path,
                                         int backlog = 128);

// Like ListenSeqpacket (same path rules, stale-file replacement, directory
// lock and errors), but a SOCK_STREAM listener: for byte-stream protocols
// such as gRPC, whose connections the caller accepts itself (Accept and
// GetPeerCred work on it) to check who connects. The socket file gets
// permission bits `mode` between bind and listen, so nobody can connect
// while it has wider ones. A chmod failure: its errno's code, nothing left
// on disk.
absl::StatusOr<base::UniqueFd> ListenStream(const std::string& path,
                                      mode_t mode = 0600, int backlog = 128);

// Accepts one connection on `listen_fd` (borrowed); the caller owns the
// result, which is non-blocking and close-on-exec. Waits with poll() until
// `deadline`: DEADLINE_EXCEEDED. EMFILE/ENFILE/ENOBUFS/ENOMEM:
// RESOURCE_EXHAUSTED (back off before retrying; don't spin). ECONNABORTED,
// EPROTO: UNAVAILABLE. REQUIRES: `listen_fd` is non-blocking (as
// ListenSeqpacket and ListenStream make it), or the accept itself may block.
absl::StatusOr<base::UniqueFd> Accept(int listen_fd, absl::Time deadline);

// Connects to the SOCK_SEQPACKET listener at filesystem `path`; the caller
// owns the non-blocking, close-on-exec result. If the listener's backlog is
// full, waits for room until `deadline`: DEADLINE_EXCEEDED. No socket at
// `path` (ENOENT) or nobody listening (ECONNREFUSED): UNAVAILABLE, naming
// `path`. A listener of another socket type: FAILED_PRECONDITION. Bad path:
// INVALID_ARGUMENT, as for ListenSeqpacket.
absl::StatusOr<base::UniqueFd> ConnectSeqpacket(const std::string& path,
                                          absl::Time deadline);

// A connected pair of SOCK_SEQPACKET sockets, non-blocking and
// close-on-exec; the caller owns both. Errors: the errno's code (EMFILE:
// RESOURCE_EXHAUSTED).
absl::StatusOr<std::pair<base::UniqueFd, base::UniqueFd>> SeqpacketPair();

// SO_PEERCRED of connected Unix socket `fd` (borrowed): the pid, uid and gid
// of the peer when it connected (for a pair: when it was created). Not a
// socket: INVALID_ARGUMENT; not connected: FAILED_PRECONDITION.
absl::StatusOr<PeerCred> GetPeerCred(int fd);

// Sends one message on connected SOCK_SEQPACKET `fd` (borrowed): `bytes`
// plus `fds`. The sender keeps ownership of `fds`; the receiver gets its own
// duplicates, and the message holds the open files until it is received.
// Waits for socket-buffer room until `deadline`: DEADLINE_EXCEEDED, nothing
// sent. More than kMaxMessageBytes bytes or kMaxFdsPerMessage fds, a
// negative fd, or no bytes and no fds (which would read as EOF, see
// ReceiveMessage): INVALID_ARGUMENT. Peer gone (EPIPE/ECONNRESET):
// UNAVAILABLE. Never raises SIGPIPE.
absl::Status SendMessage(int fd, absl::string_view bytes,
                         absl::Span<const int> fds, absl::Time deadline);

// One received message. The receiver owns `fds` (close-on-exec).
struct ReceivedMessage {
  std::string bytes;
  std::vector<base::UniqueFd> fds;
};

// Receives one message from connected SOCK_SEQPACKET `fd` (borrowed),
// waiting until `deadline`: DEADLINE_EXCEEDED. Received descriptors are
// owned before anything else is looked at, and all of them are closed on any
// error below. Errors:
//   - more than kMaxFdsPerMessage fds, or a control message other than
//     SCM_RIGHTS: INVALID_ARGUMENT (the peer broke the protocol);
//   - payload over kMaxMessageBytes (MSG_TRUNC), or descriptors dropped by
//     the kernel (MSG_CTRUNC, e.g. our RLIMIT_NOFILE is reached): DATA_LOSS;
//   - end of stream: OUT_OF_RANGE "peer closed the connection". SOCK_SEQPACKET
//     reads both EOF and an empty message as 0 bytes; we treat 0 bytes with
//     no fds as EOF, which is why SendMessage refuses to send that;
//   - the peer closed with our messages unread (ECONNRESET): UNAVAILABLE.
absl::StatusOr<ReceivedMessage> ReceiveMessage(int fd, absl::Time deadline);

// Waits until `fd` (borrowed) is readable, has hung up or has an error
// (poll POLLIN). Timeout: DEADLINE_EXCEEDED. `fd` not open: INVALID_ARGUMENT.
absl::Status WaitReadable(int fd, absl::Time deadline);

}  // namespace fdpass

#endif  // SHMESH_FDPASS_SOCKET_H_
