// Epoll: an owned epoll instance, the readiness multiplexer of the threads
// that wait on several descriptors at once (the receive thread, the link
// setup thread, the control server's accept thread).
//
// Thread contract: thread-compatible; each Epoll has one owning thread (the
// loop that calls Wait), which also calls Add and Remove.
#ifndef SHMESH_BASE_EPOLL_H_
#define SHMESH_BASE_EPOLL_H_

#include <sys/epoll.h>

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace base {

class Epoll {
 public:
  // epoll_create1(EPOLL_CLOEXEC). Errors: descriptor or memory exhaustion.
  static absl::StatusOr<Epoll> Create();

  // Watches borrowed `fd` (which must stay open until Remove) for `events`
  // (EPOLLIN, ...); `tag` comes back in epoll_event.data.u64. Errors: EEXIST
  // (already watched), EPERM (a regular file), ENOSPC (max_user_watches).
  absl::Status Add(int fd, uint32_t events, uint64_t tag);

  // Stops watching `fd`. Never fails: ENOENT/EBADF mean it is not watched
  // any more, which is what the caller wants.
  void Remove(int fd);

  // Waits up to `timeout_ms` (-1: forever; 0: just check) and fills at most
  // `max_events` entries of `events`. Returns how many, 0 on timeout or
  // EINTR (callers loop and recompute their deadline). Any other failure
  // (EBADF, EFAULT, EINVAL) is a programmer bug and aborts with a message.
  int Wait(epoll_event* events, int max_events, int timeout_ms);

  // The epoll descriptor, still owned by this object (for tests and for
  // nesting one epoll set in another).
  int fd() const { return fd_.get(); }

 private:
  explicit Epoll(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace base

#endif  // SHMESH_BASE_EPOLL_H_
