#include "base/unique_fd.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace base {

void UniqueFd::reset(int fd) {
  if (fd >= 0 && fd == fd_) {
    std::fprintf(stderr, "base::UniqueFd::reset(%d): already owns this fd\n", fd);
    std::abort();
  }
  int old = fd_;
  fd_ = fd;
  if (old >= 0) {
    // The result is deliberately ignored: after close() returns, even with
    // EINTR or EIO, Linux has released the descriptor (see close(2)).
    (void)::close(old);
  }
}

}  // namespace base
