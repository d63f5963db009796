// SubscriptionCore: one Subscription (mesh/topic.h): its pattern and where
// its messages go (the handler, or a bounded queue for Receive).
//
// Thread contract: thread-safe. HasRoom and Deliver are for the receive
// thread. Close() (unsubscribe) returns only when the handler is not
// running and will not run again, except when called from inside the
// handler itself (then it returns at once; the handler is not called
// again).
#ifndef SHMESH_MESH_PUBSUB_SUBSCRIPTION_CORE_H_
#define SHMESH_MESH_PUBSUB_SUBSCRIPTION_CORE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mesh/base/handler_gate.h"
#include "mesh/dataplane/receive_queue.h"
#include "mesh/message.h"

namespace mesh {
namespace pubsub {

class SubscriptionCore {
 public:
  // The handler form (`handler` set) or the pull form (`queue` set).
  // `on_close` runs once, on the first Close(), outside any lock of ours.
  SubscriptionCore(std::string pattern, std::function<void(const MessageView&)> handler,
                   std::unique_ptr<ReceiveQueue> queue, std::function<void()> on_close);
  ~SubscriptionCore();

  const std::string& pattern() const { return pattern_; }
  // Receive thread: false while the pull queue is full (the frame waits in
  // its ring: backpressure). The handler form always has room.
  bool HasRoom() const { return queue_ == nullptr || !queue_->full(); }
  // Receive thread: delivers `m` (nothing once closed).
  // `pooled`, when set, holds m.payload (a pooled publication): the pull
  // form keeps it instead of copying the bytes.
  void Deliver(const MessageView& m, const std::shared_ptr<const SharedPayload>& pooled = nullptr);

  absl::StatusOr<Message> Receive(absl::Time deadline);
  int ready_fd() const { return queue_ == nullptr ? -1 : queue_->ready_fd(); }
  // The receiver's wake-up, rung when a full queue makes room. REQUIRES:
  // before the node starts (before any delivery).
  void set_resume_fd(int fd) {
    if (queue_ != nullptr) queue_->set_resume_fd(fd);
  }
  uint64_t received() const { return received_.load(std::memory_order_relaxed); }
  uint64_t received_bytes() const { return received_bytes_.load(std::memory_order_relaxed); }
  bool closed() const { return gate_.closed(); }

  void Close() { gate_.Close(); }
  // The node is going: no on_close call any more; Receive ends (CANCELLED).
  void Detach() {
    gate_.Detach();
    if (queue_ != nullptr) queue_->Close();
  }

 private:
  const std::string pattern_;
  const std::function<void(const MessageView&)> handler_;
  const std::unique_ptr<ReceiveQueue> queue_;
  // Around each delivery; closing it unsubscribes (its action closes the
  // queue, then runs the owner's on_close).
  HandlerGate gate_;

  // Statistics (relaxed).
  std::atomic<uint64_t> received_{0}, received_bytes_{0};
};

}  // namespace pubsub
}  // namespace mesh

#endif  // SHMESH_MESH_PUBSUB_SUBSCRIPTION_CORE_H_
