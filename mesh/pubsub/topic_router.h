// TopicRouter: the receiving side of topics, on the receive thread. Per
// link it keeps the topic ids the peer declared (kTopic frames with
// kFrameFlagDeclare: id -> topic name; an empty name retires the id) and,
// per id, the local subscriptions whose pattern matches (cached, refreshed
// when the subscriptions change). A publication goes to each of them; one
// with an unknown id, a declaration with a bad name, or an id past the
// per-link limit is counted and dropped, never delivered elsewhere.
//
// Thread contract: OnFrame and LinksChanged on the receive thread only;
// counters() and Received() from any thread.
#ifndef SHMESH_MESH_PUBSUB_TOPIC_ROUTER_H_
#define SHMESH_MESH_PUBSUB_TOPIC_ROUTER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "mesh/base/log.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/links/transport.h"
#include "mesh/pubsub/subscription_core.h"

namespace mesh {
namespace pubsub {

// Most topic ids one peer may have declared on one link at a time.
inline constexpr size_t kMaxTopicIdsPerLink = 65536;

// The node's subscriptions, as the router sees them.
class SubscriptionSource {
 public:
  virtual ~SubscriptionSource() = default;
  // Bumped (release) on every subscribe/unsubscribe.
  virtual uint64_t generation() const = 0;
  virtual std::vector<std::shared_ptr<SubscriptionCore>> Matching(absl::string_view topic) const = 0;
};

class TopicRouter {
 public:
  struct Counters {
    uint64_t unknown_id = 0;        // a publication on an id never declared (or retired)
    uint64_t bad_declaration = 0;   // a declaration with an invalid topic name
    uint64_t too_many_ids = 0;      // a declaration past kMaxTopicIdsPerLink
    uint64_t no_subscriber = 0;     // a publication nobody here subscribes to (any more)
  };
  struct TopicCount {
    uint64_t messages = 0, bytes = 0;
    std::set<std::string> peers;
  };

  // Borrowed; must outlive the router.
  TopicRouter(const SubscriptionSource* subscriptions, const Logger* log);

  // A valid kTopic frame from `link`. False: a pull subscription it goes to
  // is full; leave the frame in the ring and come back (nothing delivered).
  bool OnFrame(const Transport& link, const FrameHeader& header, absl::string_view payload,
               const std::shared_ptr<const SharedPayload>& pooled = nullptr);
  // A publication from `link`'s shared ring `channel` on `topic` (a valid
  // name, checked at the offer). Result as OnFrame.
  bool OnSharedFrame(const Transport& link, uint32_t channel, absl::string_view topic, absl::string_view payload);
  // The receive thread's links now: forget the others' ids.
  void LinksChanged(absl::Span<const std::shared_ptr<Transport>> active);

  Counters counters() const;
  // Publications received (delivered to at least one subscription), per
  // topic, with the peers that sent them; links gone included.
  std::map<std::string, TopicCount> Received() const;

 private:
  struct Channel {
    std::string topic;
    std::vector<std::shared_ptr<SubscriptionCore>> subs;
    uint64_t generation = 0;  // of the subscriptions when `subs` was made
    std::atomic<uint64_t> messages{0}, bytes{0};
  };
  struct LinkTopics {
    std::string peer;
    std::map<uint32_t, std::unique_ptr<Channel>> channels;
    std::map<uint32_t, std::unique_ptr<Channel>> shared;  // by shared ring channel
  };
  // Delivers to `channel`'s subscriptions (see OnFrame's result).
  bool Deliver(const Transport& link, Channel* channel, absl::string_view payload,
               const std::shared_ptr<const SharedPayload>& pooled);
  void Retire(const std::string& peer, const Channel& c) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Drop(const Transport& link, std::atomic<uint64_t>* counter, absl::string_view why);

  const SubscriptionSource* const subscriptions_;
  const Logger* const log_;
  LogLimiter drop_log_{absl::Seconds(1)};  // receive thread only
  // The channel of the last publication routed (receive thread only):
  // reset whenever the maps change, so it never outlives its entry.
  const Transport* last_link_ = nullptr;
  uint32_t last_id_ = 0;
  Channel* last_channel_ = nullptr;
  // The same for the last shared-ring publication (its ids are another
  // space: a publisher's shared ring and its declared id share a number).
  const Transport* last_shared_link_ = nullptr;
  uint32_t last_shared_id_ = 0;
  Channel* last_shared_channel_ = nullptr;

  // The receive thread changes the maps under mu_ (rare: declarations,
  // links going) and reads them without it (it is their only writer);
  // Received() reads them under mu_.
  mutable absl::Mutex mu_;
  std::map<const Transport*, LinkTopics> links_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, TopicCount> retired_ ABSL_GUARDED_BY(mu_);

  // Relaxed: statistics.
  std::atomic<uint64_t> unknown_id_{0}, bad_declaration_{0}, too_many_ids_{0}, no_subscriber_{0};
};

}  // namespace pubsub
}  // namespace mesh

#endif  // SHMESH_MESH_PUBSUB_TOPIC_ROUTER_H_
