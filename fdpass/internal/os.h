// The OS layer of fdpass: the only code in shmesh's fdpass component that
// makes socket, poll, fcntl and file-system syscalls (STYLE rules 4 and 6).
//
// Each wrapper makes one syscall (retrying EINTR where that is safe), reads
// errno immediately, and returns either a Status built with
// absl::ErrnoToStatus and the object's name, or a small outcome enum for the
// errno values its caller must branch on. Nothing above this layer reads
// errno. New descriptors are always created close-on-exec and returned in a
// base::UniqueFd. Raw `int fd` parameters are borrowed.
//
// Private to //fdpass:fdpass; not part of its API.
//
// Thread contract: every function is thread-safe (no shared state beyond the
// kernel objects named by its arguments).
#ifndef SHMESH_FDPASS_INTERNAL_OS_H_
#define SHMESH_FDPASS_INTERNAL_OS_H_

#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <cstddef>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"

namespace fdpass {
namespace os_internal {

// socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC [| SOCK_NONBLOCK]).
absl::StatusOr<base::UniqueFd> SeqpacketSocket(bool non_blocking);

// socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC [| SOCK_NONBLOCK]).
absl::StatusOr<base::UniqueFd> StreamSocket(bool non_blocking);

// socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK).
absl::StatusOr<std::pair<base::UniqueFd, base::UniqueFd>> SeqpacketSocketPair();

// bind() to filesystem `path`. REQUIRES: `path` fits sun_path (checked by the
// caller). EADDRINUSE (the name exists) is the outcome kAddressInUse.
enum class BindOutcome { kBound, kAddressInUse };
absl::StatusOr<BindOutcome> Bind(int fd, const std::string& path);

// listen(). `path` only names the socket in error messages.
absl::Status Listen(int fd, int backlog, const std::string& path);

// connect() to filesystem `path`. Never retried here: the caller decides
// (AF_UNIX connect leaves the socket unconnected on EINTR and EAGAIN, so a
// retry is safe, but the caller owns the deadline). Other errno values become
// a Status naming `path` (e.g. EACCES: PERMISSION_DENIED).
enum class ConnectOutcome {
  kConnected,
  kBacklogFull,  // EAGAIN: the listener's backlog is full.
  kInterrupted,  // EINTR: a signal arrived while waiting for the backlog.
  kRefused,      // ECONNREFUSED: the name exists but nobody listens on it.
  kNoSuchFile,   // ENOENT: no such name.
  kWrongType,    // EPROTOTYPE: a listener of another socket type.
};
absl::StatusOr<ConnectOutcome> Connect(int fd, const std::string& path);

// accept4(SOCK_CLOEXEC | SOCK_NONBLOCK), retrying EINTR. An empty base::UniqueFd
// means EAGAIN (nothing pending). EMFILE/ENFILE/ENOBUFS/ENOMEM:
// RESOURCE_EXHAUSTED. ECONNABORTED/EPROTO/EPERM: UNAVAILABLE.
absl::StatusOr<base::UniqueFd> Accept(int listen_fd);

// sendmsg(fd, msg, MSG_NOSIGNAL | MSG_DONTWAIT), retrying EINTR. Returns the
// bytes sent, or nullopt on EAGAIN. EPIPE/ECONNRESET: UNAVAILABLE ("peer
// closed"). ETOOMANYREFS: RESOURCE_EXHAUSTED.
absl::StatusOr<std::optional<size_t>> SendMsg(int fd, const msghdr& msg);

// recvmsg(fd, msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT), retrying EINTR. Returns
// the bytes received (the kernel updates msg->msg_flags and
// msg->msg_controllen), or nullopt on EAGAIN. ECONNRESET: UNAVAILABLE.
absl::StatusOr<std::optional<size_t>> RecvMsg(int fd, msghdr* msg);

// ppoll() on one descriptor for at most `timeout` (InfiniteDuration: no
// limit; <= 0: just check). Returns revents; 0 on timeout or EINTR (the
// caller re-checks its deadline and polls again).
absl::StatusOr<short> PollOne(int fd, short events, absl::Duration timeout);

// setsockopt(SO_SNDTIMEO). InfiniteDuration: no timeout. REQUIRES: timeout > 0
// (the kernel reads a zero timeval as "no timeout").
absl::Status SetSendTimeout(int fd, absl::Duration timeout);

// Sets O_NONBLOCK (fcntl F_GETFL + F_SETFL).
absl::Status SetNonBlocking(int fd);

// getsockopt(SO_PEERCRED).
absl::StatusOr<ucred> PeerCredentials(int fd);

// lstat(path).st_mode; ENOENT: NOT_FOUND.
absl::StatusOr<mode_t> FileMode(const std::string& path);

// chmod(path, mode).
absl::Status Chmod(const std::string& path, mode_t mode);

// unlink(path); ENOENT is success (already gone).
absl::Status Unlink(const std::string& path);

// Opens directory `dir` and takes an exclusive flock() on it, waiting for
// other holders; the lock lasts until the returned descriptor is closed.
absl::StatusOr<base::UniqueFd> LockDirectory(const std::string& dir);

}  // namespace os_internal
}  // namespace fdpass

#endif  // SHMESH_FDPASS_INTERNAL_OS_H_
