// The few syscalls only the mesh layer makes, beyond //base (UniqueFd,
// eventfd, epoll), fdpass and ringbuf: the run directory, a liveness probe,
// thread names. Each wrapper captures errno at once and returns a Status
// naming the object. Thread-safe free functions.
#ifndef SHMESH_MESH_BASE_OS_H_
#define SHMESH_MESH_BASE_OS_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"

namespace mesh {

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
