#include "ringbuf/internal/os.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U  // Linux 6.3+, newer than the system headers.
#endif

namespace ringbuf {
namespace os_internal {

absl::StatusOr<base::UniqueFd> MemfdCreate(const std::string& name) {
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
  if (fd < 0 && errno == EINVAL) {
    // Kernels before 6.3 reject MFD_NOEXEC_SEAL; the flag is only hygiene
    // (the region is never executed), so retry without it.
    fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  }
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("memfd_create(\"", name, "\")"));
  }
  return base::UniqueFd(fd);
}

absl::Status Ftruncate(int fd, uint64_t size) {
  int rc;
  do {
    rc = ::ftruncate(fd, static_cast<off_t>(size));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("ftruncate(fd ", fd, ", ", size, ")"));
  }
  return absl::OkStatus();
}

absl::Status AddSeals(int fd, int seals) {
  if (::fcntl(fd, F_ADD_SEALS, seals) < 0) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("fcntl(fd ", fd, ", F_ADD_SEALS, 0x", absl::Hex(seals), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> GetSeals(int fd) {
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fcntl(fd ", fd, ", F_GET_SEALS)"));
  }
  return seals;
}

absl::StatusOr<FileInfo> Fstat(int fd) {
  struct stat st;
  if (::fstat(fd, &st) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fstat(fd ", fd, ")"));
  }
  FileInfo info;
  info.regular = S_ISREG(st.st_mode);
  info.size = st.st_size < 0 ? 0 : static_cast<uint64_t>(st.st_size);
  return info;
}

absl::StatusOr<uint8_t*> MapShared(int fd, size_t size, bool populate) {
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  if (addr == MAP_FAILED) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("mmap(fd ", fd, ", ", size, " bytes, MAP_SHARED, RW)"));
  }
  return static_cast<uint8_t*>(addr);
}

absl::StatusOr<uint8_t*> MapSharedReadOnly(int fd, size_t size) {
  void* addr = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    return absl::ErrnoToStatus(errno, absl::StrCat("mmap(fd ", fd, ", ", size, " bytes, MAP_SHARED, read-only)"));
  }
  return static_cast<uint8_t*>(addr);
}

void Unmap(uint8_t* addr, size_t size) {
  if (::munmap(addr, size) < 0) {
    const int err = errno;
    std::fprintf(stderr, "ringbuf: munmap(%p, %zu) failed: %s\n", static_cast<void*>(addr), size,
                 std::strerror(err));
  }
}

absl::StatusOr<DoorbellPair> DoorbellPairCreate() {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) < 0) {
    return absl::ErrnoToStatus(errno, "socketpair(AF_UNIX, SOCK_STREAM) for a ring doorbell");
  }
  return DoorbellPair{base::UniqueFd(sv[0]), base::UniqueFd(sv[1])};
}

absl::Status CheckDoorbell(int fd) {
  struct stat st;
  if (::fstat(fd, &st) < 0) return absl::ErrnoToStatus(errno, absl::StrCat("fstat(fd ", fd, ")"));
  if (!S_ISSOCK(st.st_mode)) {
    const std::string proc = absl::StrCat("/proc/self/fd/", fd);
    char target[64];
    const ssize_t n = ::readlink(proc.c_str(), target, sizeof(target) - 1);
    target[n < 0 ? 0 : n] = '\0';
    return absl::InvalidArgumentError(
        absl::StrCat("doorbell fd ", fd, " is not a socket (it is ", n < 0 ? "unknown" : target, ")"));
  }
  int domain = 0, type = 0;
  socklen_t len = sizeof(domain);
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("getsockopt(fd ", fd, ", SO_DOMAIN)"));
  }
  len = sizeof(type);
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("getsockopt(fd ", fd, ", SO_TYPE)"));
  }
  if (domain != AF_UNIX || type != SOCK_STREAM) {
    return absl::InvalidArgumentError(absl::StrCat("doorbell fd ", fd, " is a socket of domain ", domain,
                                                   " and type ", type,
                                                   ", not an AF_UNIX SOCK_STREAM socket pair end"));
  }
  return absl::OkStatus();
}

absl::Status DoorbellRing(int fd) {
  const char byte = 1;
  ssize_t n;
  do {
    n = ::send(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) return absl::OkStatus();
  switch (errno) {
    case EAGAIN:
#if EWOULDBLOCK != EAGAIN
    case EWOULDBLOCK:
#endif
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
      return absl::OkStatus();
    default:
      return absl::ErrnoToStatus(errno, absl::StrCat("send(doorbell fd ", fd, ")"));
  }
}

absl::Status DoorbellDrain(int fd) {
  // 16 reads of 256 bytes: far more than an honest peer rings between two
  // drains (once per sleep); a spammer's rest keeps the end readable.
  char buf[256];
  for (int i = 0; i < 16; ++i) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n > 0) {
      if (static_cast<size_t>(n) < sizeof(buf)) return absl::OkStatus();
      continue;
    }
    if (n == 0) {
      return absl::UnavailableError(
          absl::StrCat("the other end of doorbell fd ", fd, " was closed (its process exited?)"));
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return absl::OkStatus();
    if (errno == ECONNRESET) {
      return absl::UnavailableError(absl::StrCat("doorbell fd ", fd, " was reset by its other end"));
    }
    return absl::ErrnoToStatus(errno, absl::StrCat("recv(doorbell fd ", fd, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> WaitReadable(int fd, absl::Duration timeout) {
  struct pollfd pfd;
  pfd.fd = fd;
  pfd.events = POLLIN;
  pfd.revents = 0;
  struct timespec ts;
  struct timespec* tsp = nullptr;
  if (timeout != absl::InfiniteDuration()) {
    ts = absl::ToTimespec(timeout < absl::ZeroDuration() ? absl::ZeroDuration() : timeout);
    tsp = &ts;
  }
  const int rc = ::ppoll(&pfd, 1, tsp, nullptr);
  if (rc < 0) {
    if (errno == EINTR) return false;
    return absl::ErrnoToStatus(errno, absl::StrCat("ppoll(fd ", fd, ")"));
  }
  if (rc == 0) return false;
  if (pfd.revents & POLLNVAL) {
    return absl::InvalidArgumentError(absl::StrCat("ppoll: fd ", fd, " is not open"));
  }
  return (pfd.revents & (POLLIN | POLLERR | POLLHUP)) != 0;
}

uint32_t CpuHint() {
  const int cpu = ::sched_getcpu();
  return cpu < 0 ? 0 : static_cast<uint32_t>(cpu) + 1;
}

absl::StatusOr<base::UniqueFd> Dup(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("fcntl(fd ", fd, ", F_DUPFD_CLOEXEC)"));
  return base::UniqueFd(copy);
}

}  // namespace os_internal
}  // namespace ringbuf
