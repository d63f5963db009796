#include "mesh/base/os.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace mesh {

absl::StatusOr<fdpass::UniqueFd> MakeEventFd() {
  int fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "eventfd() failed");
  return fdpass::UniqueFd(fd);
}

void SignalEventFd(int fd) {
  uint64_t one = 1;
  // EAGAIN means the counter is saturated: it is readable already.
  (void)!::write(fd, &one, sizeof(one));
}

void DrainEventFd(int fd) {
  uint64_t value;
  // Non-blocking: one read zeroes the counter, EAGAIN if it was zero.
  (void)!::read(fd, &value, sizeof(value));
}

absl::StatusOr<Epoll> Epoll::Create() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "epoll_create1() failed");
  return Epoll(fdpass::UniqueFd(fd));
}

absl::Status Epoll::Add(int fd, uint32_t events, uint64_t tag) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = tag;
  if (::epoll_ctl(fd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("epoll_ctl(ADD, fd ", fd, ") failed"));
  }
  return absl::OkStatus();
}

void Epoll::Remove(int fd) {
  // ENOENT/EBADF: already gone, which is what the caller wants.
  (void)::epoll_ctl(fd_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

int Epoll::Wait(epoll_event* events, int max_events, int timeout_ms) {
  int n = ::epoll_wait(fd_.get(), events, max_events, timeout_ms);
  return n < 0 ? 0 : n;  // EINTR: the caller loops anyway
}

absl::Status EnsurePrivateDir(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat("run directory '", path, "' is not an absolute path"));
  }
  // Create each missing component; only the last gets 0700 semantics
  // enforced, parents are created 0700 too (they did not exist before).
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot create run directory ", prefix));
    }
  }
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot stat run directory ", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(absl::StrCat("run directory ", path, " exists but is not a directory; set run_dir elsewhere"));
  }
  if (st.st_uid != ::geteuid()) {
    return absl::PermissionDeniedError(absl::StrCat("run directory ", path, " belongs to uid ", st.st_uid, ", not us (uid ", ::geteuid(), "); set run_dir to a directory of your own"));
  }
  if ((st.st_mode & 077) != 0 && ::chmod(path.c_str(), 0700) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot make run directory ", path, " private (chmod 0700)"));
  }
  return absl::OkStatus();
}

bool ProcessAlive(pid_t pid) {
  if (pid <= 0) return false;
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

void NameThisThread(const char* name) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%s", name);
  (void)::pthread_setname_np(::pthread_self(), buf);
}

void RemoveFile(const std::string& path) {
  if (!path.empty()) (void)::unlink(path.c_str());
}

}  // namespace mesh
