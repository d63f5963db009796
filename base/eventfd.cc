#include "base/eventfd.h"

#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace base {

absl::StatusOr<UniqueFd> MakeEventFd() {
  const int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "eventfd(EFD_NONBLOCK | EFD_CLOEXEC) failed");
  return UniqueFd(fd);
}

absl::Status SignalEventFd(int fd) {
  const uint64_t one = 1;
  for (;;) {
    if (::write(fd, &one, sizeof(one)) == static_cast<ssize_t>(sizeof(one))) return absl::OkStatus();
    const int err = errno;
    if (err == EINTR) continue;
    // The counter is saturated: the eventfd is readable already.
    if (err == EAGAIN) return absl::OkStatus();
    return absl::ErrnoToStatus(err, absl::StrCat("cannot signal eventfd ", fd));
  }
}

absl::Status DrainEventFd(int fd) {
  uint64_t value = 0;
  for (;;) {
    // One read returns the whole counter and zeroes it.
    if (::read(fd, &value, sizeof(value)) == static_cast<ssize_t>(sizeof(value))) return absl::OkStatus();
    const int err = errno;
    if (err == EINTR) continue;
    if (err == EAGAIN) return absl::OkStatus();  // already zero
    return absl::ErrnoToStatus(err, absl::StrCat("cannot drain eventfd ", fd));
  }
}

}  // namespace base
