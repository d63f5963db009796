#include "fdpass/socket.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cstring>
#include <optional>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "fdpass/internal/os.h"

namespace fdpass {
namespace {

namespace os = os_internal;

// Room for one SCM_RIGHTS header with one descriptor more than we accept, so
// a peer that sends too many is told apart from a truncation (the kernel
// fills what fits and drops the rest with MSG_CTRUNC), plus room for one
// SCM_CREDENTIALS in case someone turned on SO_PASSCRED.
constexpr size_t kRecvControlBytes =
    CMSG_SPACE(sizeof(int) * (kMaxFdsPerMessage + 1)) +
    CMSG_SPACE(sizeof(ucred));
constexpr size_t kSendControlBytes =
    CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage);

absl::Status ValidatePath(const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("socket path is empty");
  }
  if (path[0] == '\0') {
    return absl::InvalidArgumentError(
        "abstract-namespace socket paths (leading '\\0') are not supported");
  }
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path contains a '\\0': ", absl::CEscape(path)));
  }
  if (path.size() > kMaxSocketPathBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("socket path is ", path.size(), " bytes, over the ",
                     kMaxSocketPathBytes, "-byte limit of sun_path: ", path));
  }
  return absl::OkStatus();
}

// The directory holding `path`, for the bind lock.
std::string ParentDirectory(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Waits until `fd` reports any of `events` (or an error/hangup) or until
// `deadline`. Polls at least once, so a passed deadline still sees readiness.
absl::Status WaitFor(int fd, short events, absl::Time deadline) {
  for (;;) {
    absl::Duration remaining = deadline - absl::Now();
    SHMESH_ASSIGN_OR_RETURN(short revents, os::PollOne(fd, events, remaining));
    if (revents & POLLNVAL) {
      return absl::InvalidArgumentError(
          absl::StrCat("poll: fd ", fd, " is not open"));
    }
    if (revents != 0) return absl::OkStatus();
    // Timeout or EINTR: stop only once the deadline has really passed.
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat(
          "deadline passed waiting for fd ", fd,
          (events & POLLOUT) ? " to become writable" : " to become readable"));
    }
  }
}

// Takes ownership of every descriptor in `msg`'s control data, in any
// control message that carries them. Called first, before any inspection.
// Also reports whether a control message of another kind was present.
std::vector<base::UniqueFd> TakeReceivedFds(msghdr* msg, bool* unexpected_cmsg) {
  std::vector<base::UniqueFd> fds;
  *unexpected_cmsg = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len >= CMSG_LEN(0)) {
      size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const unsigned char* data = CMSG_DATA(c);
      for (size_t i = 0; i < n; ++i) {
        int fd;
        std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
        fds.emplace_back(fd);
      }
    } else {
      *unexpected_cmsg = true;
    }
  }
  return fds;
}

// The kind of Unix socket a listener is: the probe of an existing file
// must use the same type (a live listener of another type answers
// EPROTOTYPE, a stale file of any type ECONNREFUSED).
enum class SocketKind { kSeqpacket, kStream };

absl::StatusOr<base::UniqueFd> MakeSocket(SocketKind kind, bool non_blocking) {
  return kind == SocketKind::kSeqpacket ? os::SeqpacketSocket(non_blocking)
                                        : os::StreamSocket(non_blocking);
}

// Tells whether anything listens on socket file `path` by connecting to it
// with a non-blocking socket (which never waits) and closing at once.
absl::StatusOr<os::ConnectOutcome> ProbeListener(const std::string& path,
                                                 SocketKind kind) {
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd probe,
                          MakeSocket(kind, /*non_blocking=*/true));
  for (;;) {
    SHMESH_ASSIGN_OR_RETURN(os::ConnectOutcome outcome,
                            os::Connect(probe.get(), path));
    if (outcome != os::ConnectOutcome::kInterrupted) return outcome;
  }
}

// ListenSeqpacket and ListenStream: bind (replacing a stale file), chmod to
// `mode` if given, listen.
absl::StatusOr<base::UniqueFd> ListenUnix(const std::string& path, SocketKind kind,
                                    std::optional<mode_t> mode, int backlog) {
  SHMESH_RETURN_IF_ERROR(ValidatePath(path));
  // Held until we return: probe, unlink, bind and listen are one step for
  // every fdpass listener on this directory.
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd dir_lock,
                          os::LockDirectory(ParentDirectory(path)));
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd listener,
                          MakeSocket(kind, /*non_blocking=*/true));
  // Two tries: if the name exists and is a stale socket, the first try
  // removes it. Under the lock nothing else should recreate it in between.
  for (int attempt = 0;; ++attempt) {
    SHMESH_ASSIGN_OR_RETURN(os::BindOutcome bound,
                            os::Bind(listener.get(), path));
    if (bound == os::BindOutcome::kBound) break;
    if (attempt == 1) {
      return absl::AlreadyExistsError(absl::StrCat(
          "cannot bind ", path, ": the name was recreated while replacing it"));
    }
    absl::StatusOr<mode_t> file_mode = os::FileMode(path);
    if (absl::IsNotFound(file_mode.status())) continue;  // Removed meanwhile.
    if (!file_mode.ok()) return file_mode.status();
    if (!S_ISSOCK(*file_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a socket; not replacing it"));
    }
    SHMESH_ASSIGN_OR_RETURN(os::ConnectOutcome outcome,
                            ProbeListener(path, kind));
    switch (outcome) {
      case os::ConnectOutcome::kRefused:  // Stale: its process is gone.
        SHMESH_RETURN_IF_ERROR(os::Unlink(path));
        continue;
      case os::ConnectOutcome::kNoSuchFile:
        continue;
      case os::ConnectOutcome::kConnected:
      case os::ConnectOutcome::kBacklogFull:
      case os::ConnectOutcome::kWrongType:    // Alive, just another type.
      case os::ConnectOutcome::kInterrupted:  // (ProbeListener retries it.)
        return absl::AlreadyExistsError(
            absl::StrCat("a process is already listening on ", path));
    }
  }
  // Bound but not listening: a connect() now is refused, so nobody gets in
  // before the mode is narrowed.
  absl::Status ready =
      mode.has_value() ? os::Chmod(path, *mode) : absl::OkStatus();
  if (ready.ok()) ready = os::Listen(listener.get(), backlog, path);
  if (!ready.ok()) {
    // Don't leave a bound name that nobody will ever listen on. The chmod
    // or listen error is what the caller needs; an unlink error would hide
    // it.
    (void)os::Unlink(path);
    return ready;
  }
  return listener;
}

}  // namespace

absl::StatusOr<base::UniqueFd> ListenSeqpacket(const std::string& path, int backlog) {
  return ListenUnix(path, SocketKind::kSeqpacket, std::nullopt, backlog);
}

absl::StatusOr<base::UniqueFd> ListenStream(const std::string& path, mode_t mode,
                                      int backlog) {
  return ListenUnix(path, SocketKind::kStream, mode, backlog);
}

absl::StatusOr<base::UniqueFd> Accept(int listen_fd, absl::Time deadline) {
  for (;;) {
    SHMESH_ASSIGN_OR_RETURN(base::UniqueFd fd, os::Accept(listen_fd));
    if (fd.valid()) return fd;
    absl::Status waited = WaitFor(listen_fd, POLLIN, deadline);
    if (absl::IsDeadlineExceeded(waited)) {
      return absl::DeadlineExceededError(
          absl::StrCat("no connection arrived on listening fd ", listen_fd,
                       " before the deadline"));
    }
    SHMESH_RETURN_IF_ERROR(waited);
  }
}

absl::StatusOr<base::UniqueFd> ConnectSeqpacket(const std::string& path,
                                          absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(ValidatePath(path));
  // AF_UNIX connect() never completes asynchronously: with a full backlog a
  // non-blocking socket just gets EAGAIN, and poll() on the unconnected
  // socket never reports room. So to wait, connect on a blocking socket and
  // let the kernel wake us when the listener accepts, bounded by SO_SNDTIMEO;
  // then switch the connected socket to non-blocking. With no time left,
  // make one non-blocking attempt instead (a zero SO_SNDTIMEO means forever).
  const bool try_once = deadline <= absl::Now();
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd sock,
                          os::SeqpacketSocket(/*non_blocking=*/try_once));
  for (;;) {
    if (!try_once) {
      absl::Duration remaining = deadline - absl::Now();
      if (remaining <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(absl::StrCat(
            "deadline passed connecting to ", path, " (backlog full)"));
      }
      if (remaining != absl::InfiniteDuration()) {
        // Round up so a sub-microsecond remainder doesn't become 0 (forever).
        remaining = absl::Ceil(remaining, absl::Microseconds(1));
      }
      SHMESH_RETURN_IF_ERROR(os::SetSendTimeout(sock.get(), remaining));
    }
    SHMESH_ASSIGN_OR_RETURN(os::ConnectOutcome outcome,
                            os::Connect(sock.get(), path));
    switch (outcome) {
      case os::ConnectOutcome::kConnected:
        if (!try_once) {
          // Back to the defaults a fresh socket would have: no send timeout
          // left behind, and non-blocking like every fdpass socket.
          SHMESH_RETURN_IF_ERROR(
              os::SetSendTimeout(sock.get(), absl::InfiniteDuration()));
          SHMESH_RETURN_IF_ERROR(os::SetNonBlocking(sock.get()));
        }
        return sock;
      case os::ConnectOutcome::kInterrupted:
        continue;  // Still unconnected; retry with the time that is left.
      case os::ConnectOutcome::kBacklogFull:
        return absl::DeadlineExceededError(
            absl::StrCat("deadline passed connecting to ", path,
                         ": the listener's backlog is full"));
      case os::ConnectOutcome::kRefused:
        return absl::UnavailableError(
            absl::StrCat("nobody is listening on ", path,
                         " (connection refused; a stale socket file?)"));
      case os::ConnectOutcome::kNoSuchFile:
        return absl::UnavailableError(
            absl::StrCat("no socket at ", path, " (no such file)"));
      case os::ConnectOutcome::kWrongType:
        return absl::FailedPreconditionError(absl::StrCat(
            "the socket at ", path, " is not a SOCK_SEQPACKET listener"));
    }
  }
}

absl::StatusOr<std::pair<base::UniqueFd, base::UniqueFd>> SeqpacketPair() {
  return os::SeqpacketSocketPair();
}

absl::StatusOr<PeerCred> GetPeerCred(int fd) {
  SHMESH_ASSIGN_OR_RETURN(ucred cred, os::PeerCredentials(fd));
  if (cred.pid == 0) {
    // Linux reports pid 0 when the socket has no peer.
    return absl::FailedPreconditionError(
        absl::StrCat("fd ", fd, " has no peer credentials (not connected?)"));
  }
  return PeerCred{cred.pid, cred.uid, cred.gid};
}

absl::Status SendMessage(int fd, absl::string_view bytes,
                         absl::Span<const int> fds, absl::Time deadline) {
  if (bytes.size() > kMaxMessageBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("message of ", bytes.size(), " bytes exceeds the ",
                     kMaxMessageBytes, "-byte limit"));
  }
  if (fds.size() > kMaxFdsPerMessage) {
    return absl::InvalidArgumentError(
        absl::StrCat("message carries ", fds.size(),
                     " descriptors; the limit is ", kMaxFdsPerMessage));
  }
  if (bytes.empty() && fds.empty()) {
    return absl::InvalidArgumentError(
        "empty message with no descriptors: the receiver would read it as EOF");
  }
  for (int passed : fds) {
    if (passed < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot send negative descriptor ", passed));
    }
  }

  iovec iov;
  iov.iov_base = const_cast<char*>(bytes.data());
  iov.iov_len = bytes.size();
  msghdr msg;
  std::memset(&msg, 0, sizeof(msg));
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) unsigned char control[kSendControlBytes];
  if (!fds.empty()) {
    std::memset(control, 0, sizeof(control));
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }

  for (;;) {
    SHMESH_ASSIGN_OR_RETURN(std::optional<size_t> sent, os::SendMsg(fd, msg));
    if (sent.has_value()) {
      // SOCK_SEQPACKET sends are all-or-nothing.
      if (*sent != bytes.size()) {
        return absl::InternalError(
            absl::StrCat("short send on fd ", fd, ": ", *sent, " of ",
                         bytes.size(), " bytes (is it SOCK_SEQPACKET?)"));
      }
      return absl::OkStatus();
    }
    SHMESH_RETURN_IF_ERROR(WaitFor(fd, POLLOUT, deadline));
  }
}

absl::StatusOr<ReceivedMessage> ReceiveMessage(int fd, absl::Time deadline) {
  ReceivedMessage out;
  out.bytes.resize(kMaxMessageBytes);
  iovec iov;
  iov.iov_base = out.bytes.data();
  iov.iov_len = out.bytes.size();
  alignas(cmsghdr) unsigned char control[kRecvControlBytes];
  msghdr msg;
  size_t n = 0;
  for (;;) {
    std::memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    SHMESH_ASSIGN_OR_RETURN(std::optional<size_t> received,
                            os::RecvMsg(fd, &msg));
    if (received.has_value()) {
      n = *received;
      break;
    }
    SHMESH_RETURN_IF_ERROR(WaitFor(fd, POLLIN, deadline));
  }

  // Own every descriptor first: any return below closes them all.
  bool unexpected_cmsg = false;
  out.fds = TakeReceivedFds(&msg, &unexpected_cmsg);

  if (out.fds.size() > kMaxFdsPerMessage) {
    return absl::InvalidArgumentError(absl::StrCat(
        "peer sent more than ", kMaxFdsPerMessage,
        " descriptors in one message on fd ", fd, "; closed them all"));
  }
  if (unexpected_cmsg) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected control message (not SCM_RIGHTS) on fd ", fd,
                     "; closed all received descriptors"));
  }
  if (msg.msg_flags & MSG_TRUNC) {
    return absl::DataLossError(absl::StrCat(
        "message on fd ", fd, " exceeded ", kMaxMessageBytes,
        " bytes and was truncated; closed all received descriptors"));
  }
  if (msg.msg_flags & MSG_CTRUNC) {
    return absl::DataLossError(absl::StrCat(
        "descriptors of a message on fd ", fd,
        " were dropped by the kernel (MSG_CTRUNC; RLIMIT_NOFILE reached?); "
        "closed the ",
        out.fds.size(), " that arrived"));
  }
  if (n == 0 && out.fds.empty()) {
    return absl::OutOfRangeError(
        absl::StrCat("peer closed the connection (fd ", fd, ")"));
  }
  out.bytes.resize(n);
  out.bytes.shrink_to_fit();
  return out;
}

absl::Status WaitReadable(int fd, absl::Time deadline) {
  return WaitFor(fd, POLLIN, deadline);
}

}  // namespace fdpass
