#include "mesh/pubsub/subscription_core.h"

#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace mesh {
namespace pubsub {

SubscriptionCore::SubscriptionCore(std::string pattern, std::function<void(const MessageView&)> handler,
                                   std::unique_ptr<ReceiveQueue> queue, std::function<void()> on_close)
    : pattern_(std::move(pattern)),
      handler_(std::move(handler)),
      queue_(std::move(queue)),
      gate_([this, on_close = std::move(on_close)] {
        if (queue_ != nullptr) queue_->Close();
        if (on_close) on_close();
      }) {}

SubscriptionCore::~SubscriptionCore() { Close(); }

void SubscriptionCore::Deliver(const MessageView& m, const std::shared_ptr<const SharedPayload>& pooled) {
  gate_.Run([&] {
    // Statistics with one writer (the receive thread, inside the gate): a
    // relaxed load and store, no locked read-modify-write.
    received_.store(received_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    received_bytes_.store(received_bytes_.load(std::memory_order_relaxed) + m.payload.size(),
                          std::memory_order_relaxed);
    if (handler_) {
      handler_(m);
    } else {
      std::vector<Message> one;
      if (pooled != nullptr) {
        one.push_back(Message{std::string(m.from), std::string(), std::string(m.topic), pooled});
      } else {
        one.push_back(Message{std::string(m.from), std::string(m.payload), std::string(m.topic), nullptr});
      }
      queue_->PushBatch(&one);
    }
  });
}

absl::StatusOr<Message> SubscriptionCore::Receive(absl::Time deadline) {
  if (queue_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("Receive() on the subscription to ", pattern_, ", which has a handler; use one or the other"));
  }
  return queue_->Receive(deadline);
}

}  // namespace pubsub
}  // namespace mesh
