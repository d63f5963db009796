#include "mesh/pubsub/topics.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mesh/pubsub/topic_name.h"

namespace mesh {
namespace pubsub {

std::vector<std::shared_ptr<SubscriptionCore>> Topics::Registry::Matching(absl::string_view topic) const {
  std::vector<std::shared_ptr<SubscriptionCore>> out;
  absl::MutexLock lock(&mu);
  for (const auto& [id, sub] : subscriptions) {
    if (!sub->closed() && PatternMatches(sub->pattern(), topic)) out.push_back(sub);
  }
  return out;
}

Topics::Topics(PublisherContext context, interest::Exchange* exchange, const Logger* log, int resume_fd)
    : context_(std::move(context)),
      log_(log),
      resume_fd_(resume_fd),
      registry_(std::make_shared<Registry>()),
      router_(registry_.get(), log) {
  absl::MutexLock lock(&registry_->mu);
  registry_->exchange = exchange;
}

Topics::~Topics() { Detach(); }

absl::StatusOr<std::shared_ptr<PublisherCore>> Topics::Advertise(absl::string_view topic, PublisherOptions options) {
  if (absl::Status valid = ValidateTopicName(topic); !valid.ok()) return valid;
  if (options.history > kMaxHistory) {
    return absl::InvalidArgumentError(absl::StrCat("PublisherOptions.history is ", options.history,
                                                   " for topic ", topic, "; the limit is ", kMaxHistory));
  }
  // relaxed: a unique number, nothing else to order.
  const uint32_t channel = next_channel_.fetch_add(1, std::memory_order_relaxed);
  const bool shared_ring = options.shared_ring;
  auto core = std::make_shared<PublisherCore>(context_, std::string(topic), channel, std::move(options));
  if (shared_ring) {
    if (absl::Status made = core->EnableSharedRing(); !made.ok()) return made;
  }
  absl::MutexLock lock(&registry_->mu);
  if (registry_->exchange == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("cannot advertise ", topic, ": the node is gone"));
  }
  auto& pubs = registry_->publishers;
  pubs.erase(std::remove_if(pubs.begin(), pubs.end(), [](const auto& w) { return w.expired(); }), pubs.end());
  pubs.push_back(core);
  return core;
}

absl::StatusOr<std::shared_ptr<SubscriptionCore>> Topics::Subscribe(absl::string_view pattern,
                                                                    std::function<void(const MessageView&)> handler,
                                                                    SubscribeOptions options) {
  if (absl::Status valid = ValidatePattern(pattern); !valid.ok()) return valid;
  std::unique_ptr<ReceiveQueue> queue;
  if (!handler) {
    if (options.queue_depth < 1 || options.queue_depth > (1u << 20)) {
      return absl::InvalidArgumentError(absl::StrCat("SubscribeOptions.queue_depth is ", options.queue_depth,
                                                     " for ", pattern, "; use 1 to ", 1u << 20));
    }
    ReceiveQueue::Limits limits;
    limits.max_messages = options.queue_depth;
    absl::StatusOr<std::unique_ptr<ReceiveQueue>> made =
        ReceiveQueue::Create(absl::StrCat("subscription to ", pattern), limits);
    if (!made.ok()) return made.status();
    queue = std::move(*made);
    queue->set_resume_fd(resume_fd_.load(std::memory_order_relaxed));
  }
  const std::string p(pattern);
  std::weak_ptr<Registry> weak = registry_;
  // relaxed: a unique number.
  const uint64_t id = next_subscription_.fetch_add(1, std::memory_order_relaxed);
  // Unsubscribing: out of the registry, and the peers told (if this was
  // the last subscription with this pattern).
  auto on_close = [weak, id, p] {
    std::shared_ptr<Registry> r = weak.lock();
    if (r == nullptr) return;
    absl::MutexLock lock(&r->mu);
    if (r->subscriptions.erase(id) == 0) return;
    // [SubGen] release: after the change.
    r->gen.fetch_add(1, std::memory_order_release);
    if (r->exchange != nullptr) r->exchange->Unsubscribe(p);
  };
  auto core = std::make_shared<SubscriptionCore>(p, std::move(handler), std::move(queue), std::move(on_close));
  absl::MutexLock lock(&registry_->mu);
  if (registry_->exchange == nullptr) {
    core->Detach();
    return absl::FailedPreconditionError(absl::StrCat("cannot subscribe to ", pattern, ": the node is gone"));
  }
  registry_->subscriptions[id] = core;
  // [SubGen] release: after the change.
  registry_->gen.fetch_add(1, std::memory_order_release);
  // Peers hear of it before this returns (a control message each).
  registry_->exchange->Subscribe(p);
  return core;
}

void Topics::SetResumeFd(int fd) {
  resume_fd_.store(fd, std::memory_order_relaxed);
  absl::MutexLock lock(&registry_->mu);
  for (const auto& [id, s] : registry_->subscriptions) s->set_resume_fd(fd);
}

void Topics::RematchAll() {
  std::vector<std::shared_ptr<PublisherCore>> pubs;
  {
    absl::MutexLock lock(&registry_->mu);
    for (const auto& w : registry_->publishers) {
      if (auto p = w.lock()) pubs.push_back(std::move(p));
    }
  }
  for (const auto& p : pubs) p->Rematch(kRematchPatience);
}

mesh::v1::NodeTopics Topics::Report(const std::string& node) const {
  mesh::v1::NodeTopics out;
  out.set_node(node);
  std::map<std::string, mesh::v1::TopicTraffic> published, subscribed;
  std::vector<std::shared_ptr<PublisherCore>> pubs;
  std::vector<std::shared_ptr<SubscriptionCore>> subs;
  {
    absl::MutexLock lock(&registry_->mu);
    for (const auto& w : registry_->publishers) {
      if (auto p = w.lock()) pubs.push_back(std::move(p));
    }
    for (const auto& [id, s] : registry_->subscriptions) subs.push_back(s);
  }
  for (const auto& p : pubs) {
    mesh::v1::TopicTraffic& t = published[p->topic()];
    t.set_topic(p->topic());
    t.set_messages(t.messages() + p->published_messages());
    t.set_bytes(t.bytes() + p->published_bytes());
    t.set_peers(std::max<uint32_t>(t.peers(), static_cast<uint32_t>(p->matched())));
  }
  const std::map<std::string, TopicRouter::TopicCount> received = router_.Received();
  for (const auto& s : subs) {
    mesh::v1::TopicTraffic& t = subscribed[s->pattern()];
    t.set_topic(s->pattern());
    t.set_messages(t.messages() + s->received());
    t.set_bytes(t.bytes() + s->received_bytes());
  }
  // A pattern's peers: the nodes that published a topic it matches here.
  for (auto& [pattern, t] : subscribed) {
    std::set<std::string> peers;
    for (const auto& [topic, count] : received) {
      if (PatternMatches(pattern, topic)) peers.insert(count.peers.begin(), count.peers.end());
    }
    t.set_peers(static_cast<uint32_t>(peers.size()));
  }
  for (auto& [name, t] : published) *out.add_published() = std::move(t);
  for (auto& [name, t] : subscribed) *out.add_subscribed() = std::move(t);
  const TopicRouter::Counters drops = router_.counters();
  out.set_dropped_unknown_topic_ids(drops.unknown_id);
  out.set_dropped_bad_declarations(drops.bad_declaration + drops.too_many_ids);
  for (const auto& [topic, count] : received) {
    mesh::v1::TopicTraffic* t = out.add_received();
    t->set_topic(topic);
    t->set_messages(count.messages);
    t->set_bytes(count.bytes);
    t->set_peers(static_cast<uint32_t>(count.peers.size()));
  }
  return out;
}

void Topics::Detach() {
  std::vector<std::shared_ptr<PublisherCore>> pubs;
  std::vector<std::shared_ptr<SubscriptionCore>> subs;
  {
    absl::MutexLock lock(&registry_->mu);
    registry_->exchange = nullptr;
    for (const auto& w : registry_->publishers) {
      if (auto p = w.lock()) pubs.push_back(std::move(p));
    }
    registry_->publishers.clear();
    for (const auto& [id, s] : registry_->subscriptions) subs.push_back(s);
  }
  for (const auto& p : pubs) p->Detach();
  for (const auto& s : subs) s->Detach();
}

}  // namespace pubsub
}  // namespace mesh
