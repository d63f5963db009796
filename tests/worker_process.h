// worker_process: the harness side of tests/mesh_worker.cc, shared by the
// multi-process integration suite (mesh_integration_test.cc) and the soak
// driver (soak/soak.cc). A Worker is one mesh_worker child process: fork+exec,
// a reader thread that collects its stdout protocol lines, its stdin for
// commands, signals and reaping. Line helpers parse the protocol's
// `word word key=value` lines and its SENT/RESULT counters.
//
// The library does not depend on GoogleTest: a check that fails inside it
// (a malformed line, a worker that never printed STARTED) goes to the
// failure handler, which a test points at ADD_FAILURE and the soak driver
// at its own verdict. Test-only.
#ifndef SHMESH_TESTS_WORKER_PROCESS_H_
#define SHMESH_TESTS_WORKER_PROCESS_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshtest {

// How long Worker::WaitReady/WaitStarted wait by default: set-up can be slow
// on shared 2-core machines, under ASAN most of all.
inline constexpr absl::Duration kWorkerSetupTimeout = absl::Seconds(60);

// Where failed checks inside this library go. The default handler prints
// the message to stderr. Set it once, before any other call; the handler
// may be called from any thread and must be thread-safe.
void SetFailureHandler(std::function<void(const std::string&)> handler);
// Calls the failure handler with `what`.
void ReportFailure(const std::string& what);

// Open descriptors of process `pid` (entries of /proc/<pid>/fd), or -1 if
// the process is gone.
int CountFds(pid_t pid);

// CLOCK_MONOTONIC in nanoseconds: the clock mesh_worker stamps its PEER_UP
// and PEER_DOWN lines with (comparable between processes on one host).
int64_t MonotonicNs();

// A protocol line split into positional words and key=value words.
struct Fields {
  std::vector<std::string> words;
  std::map<std::string, std::string> kv;

  // The decimal value of `key=`; 0 and a reported failure if there is none.
  uint64_t U64(const std::string& key) const;
  // The hex node id of `id=`; 0 and a reported failure if there is none.
  uint64_t Id() const;
};

Fields Parse(const std::string& line);

bool StartsWith(const std::string& line, const std::string& prefix);

// One mesh_worker process: its pid, its stdin (commands) and its stdout lines.
// Thread contract: thread-compatible, used from one thread (the one that
// launched it); the reader thread only appends to `lines_` under `mu_`.
class Worker {
 public:
  struct Options {
    // Echo every stdout line to our stderr as `[name] line`.
    bool echo_lines = true;
    // Where the child's stderr goes (created or truncated); empty: ours.
    std::string stderr_path;
  };

  // Fork+execs `binary` with `args`; nullptr (with a reported failure) if
  // that fails. Must be called from the thread that owns the workers (a
  // test's main thread): the child dies with it (PR_SET_PDEATHSIG fires
  // when the forking thread exits). The child inherits our environment.
  static std::unique_ptr<Worker> Launch(const std::string& binary, const std::string& name,
                                        const std::vector<std::string>& args);
  static std::unique_ptr<Worker> Launch(const std::string& binary, const std::string& name,
                                        const std::vector<std::string>& args, const Options& options);

  // Kills (SIGKILL) and reaps the worker if it still runs, joins the reader.
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  // Node id from the STARTED line (0 before WaitReady/WaitStarted saw it).
  uint64_t id() const { return id_; }
  bool running() const { return !exited_; }

  // Waits for the first line at index >= `from` that `pred` accepts; returns
  // its index, or nullopt at the deadline or once stdout closed.
  std::optional<size_t> WaitFor(const std::function<bool(const std::string&)>& pred, absl::Duration timeout,
                                size_t from = 0);
  std::optional<std::string> WaitForPrefix(const std::string& prefix, absl::Duration timeout, size_t from = 0);
  // STARTED, then READY; records the node id. False (with a reported
  // failure) if not.
  bool WaitReady(absl::Duration timeout = kWorkerSetupTimeout);
  // STARTED; records the node id. False (with a reported failure) if not.
  bool WaitStarted(absl::Duration timeout = kWorkerSetupTimeout);

  std::string Line(size_t i) const;
  size_t LineCount() const;
  std::vector<std::string> Lines(size_t from = 0, size_t to = SIZE_MAX) const;
  std::vector<std::string> LinesWithPrefix(const std::string& prefix) const;
  // Every line so far, newline-separated.
  std::string Dump() const;

  // Writes `cmd` and a newline to the worker's stdin; false if that failed
  // (e.g. the worker exited).
  bool Command(const std::string& cmd);
  // Sends `sig`, unless the worker was reaped already (its pid may be reused).
  void Kill(int sig);
  // Reaps the worker; its raw wait status, or nullopt if it is still
  // running at the deadline (zero timeout: just check).
  std::optional<int> WaitExit(absl::Duration timeout);

 private:
  Worker(std::string name, pid_t pid, int stdin_fd, int stdout_fd, bool echo_lines);

  void ReadLoop();

  const std::string name_;
  const pid_t pid_;
  const int stdin_fd_;
  const int stdout_fd_;
  const bool echo_lines_;
  uint64_t id_ = 0;
  bool exited_ = false;
  int status_ = 0;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

// What one worker reported sending (SENT) or receiving (RESULT), keyed by
// (peer name, peer node id).
struct Counts {
  uint64_t n = 0;  // sent or received
  uint64_t failed_or_errors = 0;
  uint64_t bytes = 0;
};
using PeerKey = std::pair<std::string, uint64_t>;
using CountMap = std::map<PeerKey, Counts>;

// The `prefix` ("SENT " or "RESULT ") lines of `lines` as counters; a later
// line for the same peer replaces an earlier one.
CountMap ParseCounts(const std::vector<std::string>& lines, const std::string& prefix);

// Path of tests/mesh_worker: in the test's runfiles (TEST_SRCDIR) under
// `bazel test`, else in the runfiles tree beside this binary.
std::string WorkerBinary();

}  // namespace meshtest

#endif  // SHMESH_TESTS_WORKER_PROCESS_H_
