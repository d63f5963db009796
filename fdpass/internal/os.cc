#include "fdpass/internal/os.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fdpass {
namespace os_internal {
namespace {

// errno `err` mapped the canonical way, but with the code forced to `code`
// (the message keeps the strerror text).
absl::Status ErrnoWithCode(absl::StatusCode code, int err,
                           absl::string_view what) {
  return absl::Status(code, absl::ErrnoToStatus(err, what).message());
}

// A sockaddr_un for `path`. REQUIRES: path.size() < sizeof(sun_path) (the
// caller validates), so the name is NUL-terminated.
socklen_t MakeAddress(const std::string& path, sockaddr_un* addr) {
  std::memset(addr, 0, sizeof(*addr));
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.data(), path.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() +
                                1);
}

}  // namespace

absl::StatusOr<base::UniqueFd> SeqpacketSocket(bool non_blocking) {
  int type = SOCK_SEQPACKET | SOCK_CLOEXEC | (non_blocking ? SOCK_NONBLOCK : 0);
  int fd = ::socket(AF_UNIX, type, 0);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, "socket(AF_UNIX, SOCK_SEQPACKET)");
  }
  return base::UniqueFd(fd);
}

absl::StatusOr<base::UniqueFd> StreamSocket(bool non_blocking) {
  int type = SOCK_STREAM | SOCK_CLOEXEC | (non_blocking ? SOCK_NONBLOCK : 0);
  int fd = ::socket(AF_UNIX, type, 0);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, "socket(AF_UNIX, SOCK_STREAM)");
  }
  return base::UniqueFd(fd);
}

absl::StatusOr<std::pair<base::UniqueFd, base::UniqueFd>> SeqpacketSocketPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0,
                   fds) != 0) {
    return absl::ErrnoToStatus(errno, "socketpair(AF_UNIX, SOCK_SEQPACKET)");
  }
  return std::make_pair(base::UniqueFd(fds[0]), base::UniqueFd(fds[1]));
}

absl::StatusOr<BindOutcome> Bind(int fd, const std::string& path) {
  sockaddr_un addr;
  socklen_t len = MakeAddress(path, &addr);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
    return BindOutcome::kBound;
  }
  int err = errno;
  if (err == EADDRINUSE) return BindOutcome::kAddressInUse;
  return absl::ErrnoToStatus(err, absl::StrCat("bind to ", path));
}

absl::Status Listen(int fd, int backlog, const std::string& path) {
  if (::listen(fd, backlog) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("listen on ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<ConnectOutcome> Connect(int fd, const std::string& path) {
  sockaddr_un addr;
  socklen_t len = MakeAddress(path, &addr);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) == 0) {
    return ConnectOutcome::kConnected;
  }
  int err = errno;
  switch (err) {
    case EAGAIN:
      return ConnectOutcome::kBacklogFull;
    case EINTR:
      return ConnectOutcome::kInterrupted;
    case ECONNREFUSED:
      return ConnectOutcome::kRefused;
    case ENOENT:
      return ConnectOutcome::kNoSuchFile;
    case EPROTOTYPE:
      return ConnectOutcome::kWrongType;
    default:
      return absl::ErrnoToStatus(err, absl::StrCat("connect to ", path));
  }
}

absl::StatusOr<base::UniqueFd> Accept(int listen_fd) {
  for (;;) {
    int fd =
        ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) return base::UniqueFd(fd);
    int err = errno;
    std::string what = absl::StrCat("accept4 on listening fd ", listen_fd);
    switch (err) {
      case EINTR:
        continue;
      case EAGAIN:
        return base::UniqueFd();
      case EMFILE:
      case ENFILE:
      case ENOBUFS:
      case ENOMEM:
        return ErrnoWithCode(absl::StatusCode::kResourceExhausted, err, what);
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
        return ErrnoWithCode(absl::StatusCode::kUnavailable, err, what);
      default:
        return absl::ErrnoToStatus(err, what);
    }
  }
}

absl::StatusOr<std::optional<size_t>> SendMsg(int fd, const msghdr& msg) {
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) return std::optional<size_t>(static_cast<size_t>(n));
    int err = errno;
    switch (err) {
      case EINTR:
        continue;
      case EAGAIN:
        return std::optional<size_t>();
      case EPIPE:
      case ECONNRESET:
        return ErrnoWithCode(
            absl::StatusCode::kUnavailable, err,
            absl::StrCat("peer closed the connection (sendmsg on fd ", fd,
                         ")"));
      case ETOOMANYREFS:
        return ErrnoWithCode(absl::StatusCode::kResourceExhausted, err,
                             absl::StrCat("sendmsg on fd ", fd,
                                          ": too many descriptors in flight"));
      default:
        return absl::ErrnoToStatus(err, absl::StrCat("sendmsg on fd ", fd));
    }
  }
}

absl::StatusOr<std::optional<size_t>> RecvMsg(int fd, msghdr* msg) {
  for (;;) {
    ssize_t n = ::recvmsg(fd, msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n >= 0) return std::optional<size_t>(static_cast<size_t>(n));
    int err = errno;
    switch (err) {
      case EINTR:
        continue;
      case EAGAIN:
        return std::optional<size_t>();
      case ECONNRESET:
        return ErrnoWithCode(
            absl::StatusCode::kUnavailable, err,
            absl::StrCat("peer reset the connection (recvmsg on fd ", fd, ")"));
      default:
        return absl::ErrnoToStatus(err, absl::StrCat("recvmsg on fd ", fd));
    }
  }
}

absl::StatusOr<short> PollOne(int fd, short events, absl::Duration timeout) {
  pollfd pfd = {fd, events, 0};
  timespec ts;
  const timespec* tsp = nullptr;
  if (timeout != absl::InfiniteDuration()) {
    ts = absl::ToTimespec(std::max(timeout, absl::ZeroDuration()));
    tsp = &ts;
  }
  int n = ::ppoll(&pfd, 1, tsp, nullptr);
  if (n >= 0) return n == 0 ? short{0} : pfd.revents;
  int err = errno;
  if (err == EINTR) return short{0};
  return absl::ErrnoToStatus(err, absl::StrCat("ppoll on fd ", fd));
}

absl::Status SetSendTimeout(int fd, absl::Duration timeout) {
  timeval tv = {0, 0};  // No timeout.
  if (timeout != absl::InfiniteDuration()) tv = absl::ToTimeval(timeout);
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("setsockopt(SO_SNDTIMEO) on fd ", fd));
  }
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("fcntl(F_GETFL) on fd ", fd));
  }
  if (::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("fcntl(F_SETFL) on fd ", fd));
  }
  return absl::OkStatus();
}

absl::StatusOr<ucred> PeerCredentials(int fd) {
  ucred cred;
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("getsockopt(SO_PEERCRED) on fd ", fd));
  }
  return cred;
}

absl::StatusOr<mode_t> FileMode(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", path));
  }
  return st.st_mode;
}

absl::Status Chmod(const std::string& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0) {
    int err = errno;
    return absl::ErrnoToStatus(err,
                               absl::StrFormat("chmod %s to %04o", path, mode));
  }
  return absl::OkStatus();
}

absl::Status Unlink(const std::string& path) {
  if (::unlink(path.c_str()) != 0) {
    int err = errno;
    if (err == ENOENT) return absl::OkStatus();
    return absl::ErrnoToStatus(err, absl::StrCat("unlink ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<base::UniqueFd> LockDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("open directory ", dir));
  }
  base::UniqueFd owned(fd);
  // flock(LOCK_EX) may be retried on EINTR: it either took the lock or not.
  for (;;) {
    if (::flock(owned.get(), LOCK_EX) == 0) return owned;
    int err = errno;
    if (err == EINTR) continue;
    return absl::ErrnoToStatus(err, absl::StrCat("flock(LOCK_EX) on ", dir));
  }
}

}  // namespace os_internal
}  // namespace fdpass
