// Eventfds: the in-process wake-up primitive of shmesh (a thread sleeping in
// poll/epoll on the eventfd is woken by another thread signalling it).
//
// One set of wrappers for every layer. Ring doorbells between processes are
// not eventfds (a peer could block us on a shared one; see STYLE rule 16 and
// ringbuf/internal/os.h): these are for descriptors the process made itself
// and never passes to a peer.
//
// What can fail, and who may ignore it:
//   - MakeEventFd fails on descriptor or memory exhaustion (EMFILE, ENFILE,
//     ENOMEM). The caller can act (fail its Start or Create) and must.
//   - SignalEventFd and DrainEventFd on an eventfd the caller owns can only
//     fail with EBADF or EINVAL: the descriptor is closed or is not an
//     eventfd, a programmer bug in the owner. A full counter (EAGAIN on
//     write) is not a failure: the eventfd is readable already, which is all
//     a signal asks for; an empty counter (EAGAIN on read) is not one either.
//     Callers that can report (a Start returning Status) propagate the
//     error; wake-up paths that cannot (Stop, destructors, a thread's loop)
//     ignore it explicitly with `(void)`.
//
// Thread contract: thread-safe free functions (the kernel serializes); `fd`
// parameters are borrowed.
#ifndef SHMESH_BASE_EVENTFD_H_
#define SHMESH_BASE_EVENTFD_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace base {

// A new non-blocking, close-on-exec eventfd with a zero counter. The caller
// owns the result. Errors: RESOURCE_EXHAUSTED-like codes from errno (EMFILE,
// ENFILE, ENOMEM), as absl::ErrnoToStatus maps them.
absl::StatusOr<UniqueFd> MakeEventFd();

// Adds 1 to the counter of eventfd `fd`, making it readable. Never blocks.
// OK also when the counter is saturated (EAGAIN: readable already). Retries
// EINTR. Errors: EBADF/EINVAL (not an open eventfd).
absl::Status SignalEventFd(int fd);

// Reads the counter of eventfd `fd` to zero, so it stops being readable.
// Never blocks (the eventfd must be non-blocking, as MakeEventFd makes it).
// OK also when the counter was already zero (EAGAIN). Retries EINTR.
// Errors: EBADF/EINVAL (not an open eventfd).
absl::Status DrainEventFd(int fd);

}  // namespace base

#endif  // SHMESH_BASE_EVENTFD_H_
