#include "mesh/events/event_queue.h"

#include <pthread.h>

#include <cstdio>
#include <cstdlib>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mesh {
namespace events {
namespace {

// The queue whose closure runs on this thread, if any (set by Run).
thread_local const EventQueue* current_queue = nullptr;

}  // namespace

EventQueue::EventQueue(std::string thread_name) : thread_name_(std::move(thread_name)) {}

EventQueue::~EventQueue() {
  if (InQueueThread()) {
    // Run() would touch the freed queue after the closure returns.
    std::fprintf(stderr, "EventQueue %s destroyed from inside one of its closures\n", thread_name_.c_str());
    std::abort();
  }
  Stop();
}

absl::Status EventQueue::Start() {
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) {
    return absl::FailedPreconditionError(
        absl::StrCat("event queue ", thread_name_, " was already ", stopping_ ? "stopped" : "started"));
  }
  absl::MutexLock join_lock(&join_mu_);
  try {
    // The thread blocks on mu_ (held here) before it runs anything.
    thread_ = std::thread([this] { Run(); });
  } catch (const std::system_error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot start the thread of event queue ", thread_name_, ": ", e.what()));
  }
  started_ = true;
  return absl::OkStatus();
}

bool EventQueue::Post(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(std::move(fn));
      ++posted_;
      const size_t pending = queue_.size() + (running_ ? 1 : 0);
      if (pending > high_water_) high_water_ = pending;
      return true;
    }
    ++rejected_;
  }
  // `fn` is destroyed here, outside the lock: its captures may Post().
  return false;
}

void EventQueue::Stop() {
  std::deque<std::function<void()>> discarded;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (!started_) {
      done_ += queue_.size();
      discarded.swap(queue_);
    }
  }
  discarded.clear();  // outside the lock: see Post
  if (InQueueThread()) return;  // cannot join ourselves; Run() ends by itself
  absl::MutexLock join_lock(&join_mu_);
  if (thread_.joinable()) thread_.join();
}

void EventQueue::Run() {
  {
    char name[16];
    std::snprintf(name, sizeof(name), "%s", thread_name_.c_str());
    (void)::pthread_setname_np(::pthread_self(), name);
  }
  current_queue = this;
  absl::MutexLock lock(&mu_);
  for (;;) {
    mu_.Await(absl::Condition(
        +[](EventQueue* q) ABSL_EXCLUSIVE_LOCKS_REQUIRED(q->mu_) { return !q->queue_.empty() || q->stopping_; },
        this));
    // Stop() refuses posts once stopping_ is set, so an empty queue here
    // stays empty: everything posted before Stop() has run.
    if (queue_.empty()) break;
    std::function<void()> fn = std::move(queue_.front());
    queue_.pop_front();
    running_ = true;
    mu_.Unlock();
    // No lock of ours is held while user code runs, nor while its captures
    // are destroyed.
    fn();
    fn = nullptr;
    mu_.Lock();
    running_ = false;
    ++done_;
  }
  current_queue = nullptr;
}

bool EventQueue::IdleLocked() const { return queue_.empty() && !running_; }

absl::Status EventQueue::Flush(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (InQueueThread()) {
    return absl::FailedPreconditionError(
        absl::StrCat("Flush called from inside a closure of event queue ", thread_name_));
  }
  if (!started_ && !queue_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("event queue ", thread_name_, " is not started: its ", queue_.size(), " closure(s) cannot run"));
  }
  const uint64_t target = posted_;
  auto flushed = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= target; };
  if (!mu_.AwaitWithDeadline(absl::Condition(&flushed), deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("event queue ", thread_name_, ": ", target - done_,
                                                    " closure(s) posted before Flush still pending"));
  }
  return absl::OkStatus();
}

absl::Status EventQueue::WaitIdle(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  if (InQueueThread()) {
    return absl::FailedPreconditionError(
        absl::StrCat("WaitIdle called from inside a closure of event queue ", thread_name_));
  }
  if (!started_ && !queue_.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("event queue ", thread_name_, " is not started: its ", queue_.size(), " closure(s) cannot run"));
  }
  if (!mu_.AwaitWithDeadline(absl::Condition(this, &EventQueue::IdleLocked), deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("event queue ", thread_name_, " not idle: ",
                                                    queue_.size() + (running_ ? 1 : 0), " closure(s) pending"));
  }
  return absl::OkStatus();
}

bool EventQueue::InQueueThread() const { return current_queue == this; }

EventQueueStats EventQueue::stats() const {
  absl::MutexLock lock(&mu_);
  EventQueueStats s;
  s.posted = posted_;
  s.done = done_;
  s.rejected = rejected_;
  s.pending = static_cast<size_t>(posted_ - done_);
  s.high_water = high_water_;
  return s;
}

}  // namespace events
}  // namespace mesh
