#include "mesh/base/log.h"

#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mesh {

void Logger::Log(mesh::v1::LogLevel level, absl::string_view message) const {
  const char* tag = "INFO";
  switch (level) {
    case mesh::v1::DEBUG: tag = "DEBUG"; break;
    case mesh::v1::WARNING: tag = "WARNING"; break;
    case mesh::v1::ERROR: tag = "ERROR"; break;
    default: break;
  }
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      " shmesh[", node_name_, "] ", tag, " ", message, "\n");
  // One write(2) per line keeps lines whole when threads log at once. A
  // short or failed write to stderr is not worth failing anything over.
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

std::string LogLimiter::LeftOut(uint64_t n, absl::string_view what) {
  if (n == 0) return std::string();
  return absl::StrCat(" (", n, " more", what.empty() ? "" : " ", what, " since the last such line)");
}

}  // namespace mesh
