#include "testing/fd_count.h"

#include <dirent.h>

#include <cstring>
#include <limits>

namespace shmesh {
namespace testing {

size_t CountOpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");  // glibc opens it O_CLOEXEC.
  if (dir == nullptr) return std::numeric_limits<size_t>::max();
  size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strcmp(entry->d_name, ".") == 0 || std::strcmp(entry->d_name, "..") == 0) {
      continue;
    }
    ++count;
  }
  ::closedir(dir);
  // The directory stream's own descriptor was listed too.
  return count == 0 ? 0 : count - 1;
}

}  // namespace testing
}  // namespace shmesh
