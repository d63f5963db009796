#include "ringbuf/internal/os.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
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

absl::StatusOr<fdpass::UniqueFd> MemfdCreate(const std::string& name) {
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_NOEXEC_SEAL);
  if (fd < 0 && errno == EINVAL) {
    // Kernels before 6.3 reject MFD_NOEXEC_SEAL; the flag is only hygiene
    // (the region is never executed), so retry without it.
    fd = ::memfd_create(name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  }
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("memfd_create(\"", name, "\")"));
  }
  return fdpass::UniqueFd(fd);
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

absl::StatusOr<uint8_t*> MapShared(int fd, size_t size) {
  void* addr = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (addr == MAP_FAILED) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("mmap(fd ", fd, ", ", size, " bytes, MAP_SHARED, RW)"));
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

absl::StatusOr<fdpass::UniqueFd> EventfdCreate() {
  int fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, "eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)");
  return fdpass::UniqueFd(fd);
}

absl::Status CheckEventfd(int fd) {
  const std::string proc = absl::StrCat("/proc/self/fd/", fd);
  char target[64];
  const ssize_t n = ::readlink(proc.c_str(), target, sizeof(target) - 1);
  if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat("readlink(", proc, ")"));
  target[n] = '\0';
  if (std::strcmp(target, "anon_inode:[eventfd]") != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("fd ", fd, " is not an eventfd (it is ", target, ")"));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return absl::ErrnoToStatus(errno, absl::StrCat("fcntl(fd ", fd, ", F_GETFL)"));
  if ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fcntl(fd ", fd, ", F_SETFL, O_NONBLOCK)"));
  }
  return absl::OkStatus();
}

absl::Status EventfdSignal(int fd) {
  const uint64_t one = 1;
  const ssize_t n = ::write(fd, &one, sizeof(one));
  if (n < 0 && errno != EAGAIN) {
    return absl::ErrnoToStatus(errno, absl::StrCat("write(eventfd ", fd, ")"));
  }
  return absl::OkStatus();
}

absl::Status EventfdDrain(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return absl::ErrnoToStatus(errno, absl::StrCat("fcntl(fd ", fd, ", F_GETFL)"));
  if ((flags & O_NONBLOCK) == 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("fcntl(fd ", fd, ", F_SETFL, O_NONBLOCK)"));
  }
  uint64_t count;
  const ssize_t n = ::read(fd, &count, sizeof(count));
  if (n < 0 && errno != EAGAIN) {
    return absl::ErrnoToStatus(errno, absl::StrCat("read(eventfd ", fd, ")"));
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

absl::StatusOr<fdpass::UniqueFd> Dup(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0)
    return absl::ErrnoToStatus(errno, absl::StrCat("fcntl(fd ", fd, ", F_DUPFD_CLOEXEC)"));
  return fdpass::UniqueFd(copy);
}

}  // namespace os_internal
}  // namespace ringbuf
