#include "mesh/base/os.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace mesh {

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
