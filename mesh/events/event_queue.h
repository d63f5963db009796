// EventQueue: runs posted closures one at a time, in the order posted, on a
// thread of its own, with no lock of the queue held while one runs.
//
// It exists so that the node can run user code (the peer up/down/
// unresponsive handlers) without holding any internal lock: the threads that
// notice an event Post() a closure that calls the handler, and the queue's
// thread runs it. Because one thread runs the closures in posting order, any
// order the posters establish is kept: a peer's "up", posted while the link
// is installed, runs before its "down", posted later when it is retired.
//
// Bound: the queue is unbounded and never drops an event that was accepted;
// a handler that blocks makes events pile up (memory grows, Post() stays
// non-blocking). stats().high_water records the deepest the queue has been,
// so a test or a status page can see it, without logging.
//
// Thread contract: thread-safe. Post(), Flush(), WaitIdle() and stats() may
// be called from any thread, including from inside a running closure
// (Flush/WaitIdle there fail instead of waiting for themselves). Start() and
// Stop() may be called from any thread; Stop() from inside a closure does not
// wait (see Stop). The destructor must not run on the queue's own thread.
#ifndef SHMESH_MESH_EVENTS_EVENT_QUEUE_H_
#define SHMESH_MESH_EVENTS_EVENT_QUEUE_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace mesh {
namespace events {

struct EventQueueStats {
  uint64_t posted = 0;     // accepted by Post()
  uint64_t done = 0;       // finished running (or discarded, see Stop)
  uint64_t rejected = 0;   // refused by Post() because Stop() had begun
  size_t pending = 0;      // accepted but not finished: queued + running
  size_t high_water = 0;   // the largest `pending` ever seen
};

class EventQueue {
 public:
  // `thread_name` names the queue's thread (truncated to 15 bytes, the
  // kernel's limit), e.g. "mesh-events".
  explicit EventQueue(std::string thread_name);
  EventQueue(const EventQueue&) = delete;
  EventQueue& operator=(const EventQueue&) = delete;
  // Stop()s the queue (running what was posted). REQUIRES: not called on the
  // queue's own thread (that is, not from inside one of its closures).
  ~EventQueue();

  // Starts the queue's thread; closures posted before Start() then run
  // first. FAILED_PRECONDITION if already started or stopped,
  // RESOURCE_EXHAUSTED if the thread cannot be created.
  absl::Status Start();

  // Queues `fn` to run after everything posted before it. Never waits for a
  // running closure; fine from inside one. Returns false, and destroys `fn`
  // without running it, once Stop() has begun (then stats().rejected
  // counts it). May be called before Start().
  bool Post(std::function<void()> fn);

  // Refuses further posts, lets the running closure finish and runs every
  // closure posted before this call, then joins the thread. Idempotent and
  // safe from several threads at once. Called from inside a closure, it
  // cannot join its own thread: it returns at once, and the thread ends by
  // itself after running what was posted before; the destructor (or a later
  // Stop() from another thread) joins it. If the queue was never started,
  // the closures posted so far are destroyed without running (counted as
  // done).
  void Stop();

  // Waits until every closure posted before this call has finished.
  // OK, DEADLINE_EXCEEDED at `deadline`, FAILED_PRECONDITION if called on
  // the queue's own thread or if the queue was never started and has
  // closures that would never run.
  absl::Status Flush(absl::Time deadline);
  // Waits until the queue is empty and nothing runs, closures posted
  // meanwhile included. Errors as Flush.
  absl::Status WaitIdle(absl::Time deadline);

  // True on the queue's thread (inside one of its closures).
  bool InQueueThread() const;

  EventQueueStats stats() const;

 private:
  void Run();
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string thread_name_;

  mutable absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;  // a closure runs now
  uint64_t posted_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  size_t high_water_ ABSL_GUARDED_BY(mu_) = 0;

  // Serializes joining `thread_` (Stop from several threads at once).
  absl::Mutex join_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace events
}  // namespace mesh

#endif  // SHMESH_MESH_EVENTS_EVENT_QUEUE_H_
