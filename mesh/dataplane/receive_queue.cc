#include "mesh/dataplane/receive_queue.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "base/eventfd.h"

namespace mesh {

absl::StatusOr<std::unique_ptr<ReceiveQueue>> ReceiveQueue::Create(std::string owner, Limits limits) {
  absl::StatusOr<base::UniqueFd> ready = base::MakeEventFd();
  if (!ready.ok()) return ready.status();
  return std::unique_ptr<ReceiveQueue>(new ReceiveQueue(std::move(owner), limits, std::move(*ready)));
}

ReceiveQueue::ReceiveQueue(std::string owner, Limits limits, base::UniqueFd ready)
    : owner_(std::move(owner)), limits_(limits), ready_(std::move(ready)) {}

void ReceiveQueue::UpdateFullLocked() {
  // [QueueFull] release: pairs with the acquire load in full().
  full_.store(queue_.size() >= limits_.max_messages || bytes_ >= limits_.max_bytes, std::memory_order_release);
}

bool ReceiveQueue::full() const {
  // [QueueFull] acquire: pairs with the release store in UpdateFullLocked.
  return full_.load(std::memory_order_acquire);
}

void ReceiveQueue::PushBatch(std::vector<Message>* batch) {
  if (batch->empty()) return;
  absl::MutexLock lock(&mu_);
  if (closed_) {
    batch->clear();
    return;
  }
  if (queue_.empty()) (void)base::SignalEventFd(ready_.get());
  for (Message& m : *batch) {
    bytes_ += m.payload.size();
    queue_.push_back(std::move(m));
  }
  UpdateFullLocked();
  batch->clear();
}

absl::StatusOr<Message> ReceiveQueue::Receive(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty() || closed_; };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (queue_.empty()) {
    if (closed_) return absl::CancelledError(absl::StrCat("node ", owner_, " is stopped"));
    return absl::DeadlineExceededError(absl::StrCat("no message for ", owner_, " before the deadline"));
  }
  // relaxed: we hold mu_, under which every store to it is made.
  const bool was_full = full_.load(std::memory_order_relaxed);
  Message m = std::move(queue_.front());
  queue_.pop_front();
  bytes_ -= m.payload.size();
  UpdateFullLocked();
  if (queue_.empty()) (void)base::DrainEventFd(ready_.get());
  if (was_full && resume_fd_ >= 0) (void)base::SignalEventFd(resume_fd_);  // the receiver paused; resume it
  return m;
}

void ReceiveQueue::Close() {
  absl::MutexLock lock(&mu_);
  closed_ = true;
  queue_.clear();
  bytes_ = 0;
  (void)base::DrainEventFd(ready_.get());
  UpdateFullLocked();
}

size_t ReceiveQueue::size() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

}  // namespace mesh
