// Executor: a fixed set of worker threads, started once, that run tasks
// handed to them, at once (Schedule) or at a given time (RunAt). The
// control-plane services use it for whatever may wait (a Messaging.Send
// waiting for ring room, a whole-mesh gathering) and for watch streams'
// timers, so that no gRPC callback thread blocks and no thread is started
// per call.
//
// Bounds: at most `max_queued` tasks wait to start at once; Schedule fails
// beyond that with RESOURCE_EXHAUSTED naming the limit. Delayed tasks
// (RunAt) are not counted: their callers bound them (one per watch stream).
//
// Thread contract: thread-safe. Tasks run on the workers, never inline in
// Schedule or RunAt, in order of their start time (FIFO for ties), and must
// not throw. The destructor must not run on a worker.
#ifndef SHMESH_MESH_CONTROL_EXECUTOR_H_
#define SHMESH_MESH_CONTROL_EXECUTOR_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mesh {
namespace control {

class Executor {
 public:
  struct Options {
    // Thread name (at most 15 characters) and what errors call it.
    std::string name = "mesh-exec";
    // Worker threads, started by the constructor. REQUIRES: >= 1.
    int threads = 4;
    // Tasks that may wait to start at once. REQUIRES: >= 1.
    int max_queued = 64;
  };

  explicit Executor(Options options);
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;
  // Lets running tasks finish, destroys the waiting and delayed ones
  // without running them (their captures are released on this thread),
  // and joins the workers. REQUIRES: not called from a task.
  ~Executor();

  // Runs `task` on a worker as soon as one is free. RESOURCE_EXHAUSTED if
  // max_queued tasks already wait (the message names the limit); then
  // `task` is destroyed without running.
  absl::Status Schedule(std::function<void()> task);

  // Runs `task` on a worker at `when` (at once if it has passed), or never
  // if the executor is destroyed first. Never fails.
  void RunAt(absl::Time when, std::function<void()> task);

  int threads() const { return static_cast<int>(workers_.size()); }
  int max_queued() const { return options_.max_queued; }

 private:
  void Work();

  const Options options_;
  absl::Mutex mu_;
  absl::CondVar wake_;  // signalled on new work and on stop
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void()>> ready_ ABSL_GUARDED_BY(mu_);
  // Delayed tasks by (start time, sequence number): FIFO among equal times.
  std::map<std::pair<absl::Time, uint64_t>, std::function<void()>> delayed_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::thread> workers_;  // written by the constructor only
};

}  // namespace control
}  // namespace mesh

#endif  // SHMESH_MESH_CONTROL_EXECUTOR_H_
