#include "ringbuf/internal/test_util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <utility>

#include "testing/fd_count.h"

namespace ringbuf {
namespace testing_internal {

int CountOpenFds() {
  const size_t count = shmesh::testing::CountOpenFds();
  if (count == std::numeric_limits<size_t>::max()) {
    std::fprintf(stderr, "cannot read /proc/self/fd\n");
    std::abort();
  }
  return static_cast<int>(count);
}

base::UniqueFd DupOrDie(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    std::perror("fcntl(F_DUPFD_CLOEXEC)");
    std::abort();
  }
  return base::UniqueFd(copy);
}

absl::StatusOr<Ring> AttachSecondMapping(const Ring& ring, RingEnd end, const WaitOptions& options) {
  absl::StatusOr<SharedRegion> region =
      SharedRegion::Map(DupOrDie(ring.region_fd()), ring.region_size());
  if (!region.ok()) return region.status();
  const int doorbell =
      end == RingEnd::kProducer ? ring.producer_doorbell_fd() : ring.consumer_doorbell_fd();
  return Ring::Attach(std::move(*region), DupOrDie(doorbell), end, options);
}

SharedRegion MapRawOrDie(const Ring& ring) {
  absl::StatusOr<SharedRegion> region =
      SharedRegion::Map(DupOrDie(ring.region_fd()), ring.region_size());
  if (!region.ok()) {
    std::fprintf(stderr, "MapRawOrDie: %s\n", region.status().ToString().c_str());
    std::abort();
  }
  return std::move(*region);
}

pid_t ForkChild(const std::function<int()>& body) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    std::abort();
  }
  if (pid == 0) {
    const int code = body();
    std::fflush(nullptr);
    ::_exit(code);
  }
  return pid;
}

int WaitChild(pid_t pid) {
  int status = 0;
  pid_t r;
  do {
    r = ::waitpid(pid, &status, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int RunInChild(const std::function<int()>& body) { return WaitChild(ForkChild(body)); }

uint64_t Fnv1a(const uint8_t* data, size_t len, uint64_t hash) {
  for (size_t i = 0; i < len; ++i) {
    hash ^= data[i];
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

}  // namespace testing_internal
}  // namespace ringbuf
