#include "base/epoll.h"

#include <errno.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace base {

absl::StatusOr<Epoll> Epoll::Create() {
  const int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "epoll_create1(EPOLL_CLOEXEC) failed");
  return Epoll(UniqueFd(fd));
}

absl::Status Epoll::Add(int fd, uint32_t events, uint64_t tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  if (::epoll_ctl(fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("epoll_ctl(ADD, fd ", fd, ") on epoll ", fd_.get(), " failed"));
  }
  return absl::OkStatus();
}

void Epoll::Remove(int fd) {
  // ENOENT/EBADF: already gone, which is what the caller wants.
  (void)::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

int Epoll::Wait(epoll_event* events, int max_events, int timeout_ms) {
  const int n = ::epoll_wait(fd_.get(), events, max_events, timeout_ms);
  if (n >= 0) return n;
  const int err = errno;
  if (err == EINTR) return 0;  // the caller loops anyway
  std::fprintf(stderr, "base::Epoll::Wait(epoll %d, max_events %d): %s\n", fd_.get(), max_events,
               std::strerror(err));
  std::abort();
}

}  // namespace base
