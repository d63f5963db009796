// The few syscalls the mesh layer makes beyond fdpass and ringbuf: eventfds,
// epoll, the run directory, and a liveness probe. Each wrapper captures errno
// at once and returns a Status naming the object. Thread-safe free functions;
// Epoll is thread-compatible.
#ifndef SHMESH_MESH_BASE_OS_H_
#define SHMESH_MESH_BASE_OS_H_

#include <sys/epoll.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fdpass/unique_fd.h"

namespace mesh {

// A non-blocking, close-on-exec eventfd.
absl::StatusOr<fdpass::UniqueFd> MakeEventFd();
// Adds 1 to the eventfd (borrowed): it becomes readable.
void SignalEventFd(int fd);
// Reads the eventfd (borrowed) to zero: it stops being readable.
void DrainEventFd(int fd);

// An owned epoll instance.
class Epoll {
 public:
  static absl::StatusOr<Epoll> Create();
  // Watches borrowed `fd` for `events`; `tag` comes back in epoll_event.data.
  absl::Status Add(int fd, uint32_t events, uint64_t tag);
  void Remove(int fd);
  // Waits up to `timeout_ms` (-1: forever); returns the number of events,
  // 0 on timeout or EINTR.
  int Wait(epoll_event* events, int max_events, int timeout_ms);

 private:
  explicit Epoll(fdpass::UniqueFd fd) : fd_(std::move(fd)) {}
  fdpass::UniqueFd fd_;
};

// Creates `path` (and missing parents) with mode 0700, or checks an existing
// one: it must be a directory owned by us; group/other access is removed.
absl::Status EnsurePrivateDir(const std::string& path);
// True unless kill(pid, 0) says ESRCH (no such process).
bool ProcessAlive(pid_t pid);
// Names the calling thread (at most 15 characters; longer names are cut) so
// that `top -H`, gdb and /proc/<pid>/task/*/comm show what it is.
void NameThisThread(const char* name);
// unlink(path), ignoring ENOENT.
void RemoveFile(const std::string& path);

}  // namespace mesh

#endif  // SHMESH_MESH_BASE_OS_H_
