// Test helpers: run binaries (the tools, test helpers) as real child
// processes (fork + exec), feeding stdin and capturing stdout and stderr.
// Test-only. For a short directory for their sockets see temp_dir.h.
//
// Thread contract: thread-compatible; a Child belongs to one test thread.
#ifndef SHMESH_TESTING_SUBPROCESS_H_
#define SHMESH_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace shmesh {
namespace testing {

// Path of a binary of this workspace in the test's runfiles, e.g.
// RunfilePath("mesh/cmd/meshctl").
std::string RunfilePath(absl::string_view workspace_path);

struct ProcessResult {
  // Exit status, or -1 if the process was killed by a signal.
  int exit_code = -1;
  // The terminating signal, or 0.
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs `argv` to completion with `input` on stdin, capturing its output.
// Kills it with SIGKILL after `timeout` (then signal is SIGKILL).
ProcessResult RunProcess(const std::vector<std::string>& argv,
                         absl::string_view input = "",
                         absl::Duration timeout = absl::Seconds(30));

// A child running in the background with stdout and stderr going to files
// (read them with ReadFile while it runs) and stdin from a pipe.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& out_path,
        const std::string& err_path);
  // Kills (SIGKILL) and reaps the child if it is still running.
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // Writes to the child's stdin; CloseStdin sends EOF.
  void WriteStdin(absl::string_view data);
  void CloseStdin();
  void Signal(int sig);
  // Waits up to `timeout` for the child to exit: its exit code, -1 if it died
  // of a signal, -2 on timeout.
  int Wait(absl::Duration timeout = absl::Seconds(30));

 private:
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  bool reaped_ = false;
};

// The whole file, or "" if it cannot be read.
std::string ReadFile(const std::string& path);

// Polls `path` until it contains `needle` or `timeout` passes.
bool WaitForFileToContain(const std::string& path, absl::string_view needle,
                          absl::Duration timeout = absl::Seconds(20));

}  // namespace testing
}  // namespace shmesh

#endif  // SHMESH_TESTING_SUBPROCESS_H_
