#include "mesh/pubsub/subscription_core.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mesh {
namespace pubsub {

SubscriptionCore::SubscriptionCore(std::string pattern, std::function<void(const MessageView&)> handler,
                                   std::unique_ptr<ReceiveQueue> queue, std::function<void()> on_close)
    : pattern_(std::move(pattern)), handler_(std::move(handler)), queue_(std::move(queue)) {
  absl::MutexLock lock(&close_mu_);
  on_close_ = std::move(on_close);
}

SubscriptionCore::~SubscriptionCore() { Close(); }

void SubscriptionCore::Deliver(const MessageView& m) {
  absl::MutexLock lock(&call_mu_);
  // acquire: pairs with the release store in Close.
  if (closed_.load(std::memory_order_acquire)) return;
  // Statistics with one writer (the receive thread, under call_mu_): a
  // relaxed load and store, no locked read-modify-write.
  received_.store(received_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  received_bytes_.store(received_bytes_.load(std::memory_order_relaxed) + m.payload.size(),
                        std::memory_order_relaxed);
  if (handler_) {
    delivering_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    handler_(m);
    delivering_.store(std::thread::id(), std::memory_order_relaxed);
  } else {
    std::vector<Message> one;
    one.push_back(Message{std::string(m.from), std::string(m.payload), std::string(m.topic)});
    queue_->PushBatch(&one);
  }
}

absl::StatusOr<Message> SubscriptionCore::Receive(absl::Time deadline) {
  if (queue_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("Receive() on the subscription to ", pattern_, ", which has a handler; use one or the other"));
  }
  return queue_->Receive(deadline);
}

void SubscriptionCore::Close() {
  // release: pairs with the acquire load in Deliver.
  if (closed_.exchange(true, std::memory_order_acq_rel)) return;
  // relaxed: only this thread's own store matters (see delivering_).
  if (delivering_.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
    absl::MutexLock wait_for_delivery(&call_mu_);
  }
  if (queue_ != nullptr) queue_->Close();
  std::function<void()> on_close;
  {
    absl::MutexLock lock(&close_mu_);
    on_close.swap(on_close_);
  }
  if (on_close) on_close();
}

void SubscriptionCore::Detach() {
  {
    absl::MutexLock lock(&close_mu_);
    on_close_ = nullptr;
  }
  Close();
}

}  // namespace pubsub
}  // namespace mesh
