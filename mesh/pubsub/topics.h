// Topics: the node's publish/subscribe component. It owns the registry of
// this node's publishers and subscriptions, hands out topic ids, keeps the
// interest exchange told of the subscriptions, re-matches the publishers
// when links or interests change, and feeds the topology report. The
// receiving side is its TopicRouter (topic_router.h), which the node's
// receive thread calls.
//
// Thread contract: thread-safe. Detach() is called once by the node before
// the pieces it lends (link table, exchange) go away; publishers and
// subscriptions that outlive it then fail with FAILED_PRECONDITION.
#ifndef SHMESH_MESH_PUBSUB_TOPICS_H_
#define SHMESH_MESH_PUBSUB_TOPICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mesh/base/log.h"
#include "mesh/interest/interest.h"
#include "mesh/pubsub/publisher_core.h"
#include "mesh/pubsub/subscription_core.h"
#include "mesh/pubsub/topic_router.h"
#include "mesh/topic.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace pubsub {

// How long a re-match waits for ring room per new subscriber (on the
// events thread) before leaving the rest of its history to the next
// Publish.
inline constexpr absl::Duration kRematchPatience = absl::Milliseconds(50);

class Topics {
 public:
  // `context` is what every publisher gets; `exchange` and `log` are
  // borrowed until Detach(). `resume_fd` is rung when a full pull queue
  // makes room (the receiver's wake-up).
  Topics(PublisherContext context, interest::Exchange* exchange, const Logger* log, int resume_fd);
  ~Topics();

  absl::StatusOr<std::shared_ptr<PublisherCore>> Advertise(absl::string_view topic, PublisherOptions options);
  absl::StatusOr<std::shared_ptr<SubscriptionCore>> Subscribe(absl::string_view pattern,
                                                              std::function<void(const MessageView&)> handler,
                                                              SubscribeOptions options);
  // Re-matches every publisher (the events thread, after a link or an
  // interest change): new subscribers get declarations and history.
  void RematchAll();
  // The receiver's wake-up for full pull queues making room (the node
  // sets it at Start, when the receiver exists): for every subscription,
  // existing and later.
  void SetResumeFd(int fd);
  TopicRouter& router() { return router_; }
  // This node's topics for the topology.
  mesh::v1::NodeTopics Report(const std::string& node) const;
  void Detach();

 private:
  // Shared with the subscriptions' on_close, which may run after Topics
  // is gone (a Subscription outliving its node): the exchange is used only
  // under mu, and Detach() clears it.
  struct Registry final : SubscriptionSource {
    mutable absl::Mutex mu;
    interest::Exchange* exchange ABSL_GUARDED_BY(mu) = nullptr;
    std::vector<std::weak_ptr<PublisherCore>> publishers ABSL_GUARDED_BY(mu);
    std::map<uint64_t, std::shared_ptr<SubscriptionCore>> subscriptions ABSL_GUARDED_BY(mu);
    // [SubGen] release increments under mu after every change; acquire
    // loads by the router.
    std::atomic<uint64_t> gen{1};
    uint64_t generation() const override { return gen.load(std::memory_order_acquire); }
    std::vector<std::shared_ptr<SubscriptionCore>> Matching(absl::string_view topic) const override;
  };

  const PublisherContext context_;
  const Logger* const log_;
  std::atomic<int> resume_fd_;  // relaxed: set once at Start, before any delivery
  const std::shared_ptr<Registry> registry_;
  TopicRouter router_;
  std::atomic<uint32_t> next_channel_{1};
  std::atomic<uint64_t> next_subscription_{1};
};

}  // namespace pubsub
}  // namespace mesh

#endif  // SHMESH_MESH_PUBSUB_TOPICS_H_
