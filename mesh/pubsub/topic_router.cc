#include "mesh/pubsub/topic_router.h"

#include <set>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mesh/pubsub/topic_name.h"

namespace mesh {
namespace pubsub {
namespace {

// A counter with one writer (the receive thread): a relaxed load and store
// instead of a locked read-modify-write. Readers only want a recent value.
void BumpBy(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace

TopicRouter::TopicRouter(const SubscriptionSource* subscriptions, const Logger* log)
    : subscriptions_(subscriptions), log_(log) {}

void TopicRouter::Drop(const Transport& link, std::atomic<uint64_t>* counter, absl::string_view why) {
  // relaxed: statistics.
  counter->fetch_add(1, std::memory_order_relaxed);
  uint64_t left_out = 0;
  if (drop_log_.Allow(absl::Now(), &left_out)) {
    log_->Warning("dropped a topic frame from %s: %s%s", link.peer_name(), why,
                  LogLimiter::LeftOut(left_out, "dropped topic frames"));
  }
}

bool TopicRouter::OnFrame(const Transport& link, const FrameHeader& header, absl::string_view payload,
                          const std::shared_ptr<const SharedPayload>& pooled) {
  // The hot path: the same link and topic id as the frame before.
  if (header.flags == 0 && &link == last_link_ && header.channel == last_id_ && last_channel_ != nullptr) {
    return Deliver(link, last_channel_, payload, pooled);
  }
  auto found = links_.find(&link);  // receive thread: the maps' only writer
  if (header.flags & kFrameFlagDeclare) {
    last_channel_ = nullptr;  // the maps change
    if (payload.empty()) {  // the publisher is gone: retire its id
      if (found == links_.end()) return true;
      auto c = found->second.channels.find(header.channel);
      if (c == found->second.channels.end()) return true;
      absl::MutexLock lock(&mu_);
      Retire(found->second.peer, *c->second);
      found->second.channels.erase(c);
      return true;
    }
    if (absl::Status valid = ValidateTopicName(payload); !valid.ok()) {
      Drop(link, &bad_declaration_, absl::StrCat("a bad topic declaration: ", valid.message()));
      return true;
    }
    bool too_many = false;
    {
      absl::MutexLock lock(&mu_);
      LinkTopics& topics = links_[&link];
      topics.peer = link.peer_name();
      auto slot = topics.channels.find(header.channel);
      if (slot == topics.channels.end() && topics.channels.size() >= kMaxTopicIdsPerLink) {
        too_many = true;
      } else {
        if (slot != topics.channels.end()) Retire(topics.peer, *slot->second);
        auto fresh = std::make_unique<Channel>();
        fresh->topic = std::string(payload);  // matched at its first publication (generation 0)
        topics.channels[header.channel] = std::move(fresh);
      }
    }
    if (too_many) Drop(link, &too_many_ids_, absl::StrCat("more than ", kMaxTopicIdsPerLink, " topic ids declared"));
    return true;
  }
  Channel* channel = nullptr;
  if (found != links_.end()) {
    auto c = found->second.channels.find(header.channel);
    if (c != found->second.channels.end()) channel = c->second.get();
  }
  if (channel == nullptr) {
    Drop(link, &unknown_id_, absl::StrCat("topic id ", header.channel, " was never declared on this link"));
    return true;
  }
  last_link_ = &link;
  last_id_ = header.channel;
  last_channel_ = channel;
  return Deliver(link, channel, payload, pooled);
}

bool TopicRouter::OnSharedFrame(const Transport& link, uint32_t channel, absl::string_view topic,
                                absl::string_view payload) {
  // The hot path: the same ring as the publication before (a new offer on
  // that channel may carry another topic: compared too).
  if (&link == last_shared_link_ && channel == last_shared_id_ && last_shared_channel_ != nullptr &&
      last_shared_channel_->topic == topic) {
    return Deliver(link, last_shared_channel_, payload, nullptr);
  }
  auto found = links_.find(&link);  // receive thread: the maps' only writer
  if (found != links_.end()) {
    auto c = found->second.shared.find(channel);
    if (c != found->second.shared.end() && c->second->topic == topic) {
      last_shared_link_ = &link;
      last_shared_id_ = channel;
      last_shared_channel_ = c->second.get();
      return Deliver(link, c->second.get(), payload, nullptr);
    }
  }
  Channel* made = nullptr;
  {
    absl::MutexLock lock(&mu_);
    LinkTopics& topics = links_[&link];
    topics.peer = link.peer_name();
    std::unique_ptr<Channel>& slot = topics.shared[channel];
    if (slot != nullptr) Retire(topics.peer, *slot);  // a new offer on that channel, another topic
    slot = std::make_unique<Channel>();
    slot->topic = std::string(topic);  // matched at its first publication (generation 0)
    made = slot.get();
  }
  last_channel_ = nullptr;  // the maps changed
  last_shared_link_ = &link;
  last_shared_id_ = channel;
  last_shared_channel_ = made;
  return Deliver(link, made, payload, nullptr);
}

bool TopicRouter::Deliver(const Transport& link, Channel* channel, absl::string_view payload,
                          const std::shared_ptr<const SharedPayload>& pooled) {
  const uint64_t generation = subscriptions_->generation();
  if (channel->generation != generation) {
    channel->subs = subscriptions_->Matching(channel->topic);
    channel->generation = generation;
  }
  bool any = false;
  for (const auto& sub : channel->subs) {
    if (sub->closed()) continue;
    if (!sub->HasRoom()) return false;  // before delivering to any: no duplicates on the retry
    any = true;
  }
  if (!any) {
    // relaxed: statistics. Not a warning: an unsubscribe races the
    // publisher learning of it.
    no_subscriber_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  // Statistics, one writer (this thread). Counted before the handlers run,
  // so anyone who has seen a message delivered (through the handler's own
  // synchronisation) also sees it counted in the topology.
  BumpBy(channel->messages, 1);
  BumpBy(channel->bytes, payload.size());
  const MessageView view{link.peer_name(), payload, channel->topic};
  for (const auto& sub : channel->subs) sub->Deliver(view, pooled);
  return true;
}

void TopicRouter::Retire(const std::string& peer, const Channel& c) {
  const uint64_t messages = c.messages.load(std::memory_order_relaxed);
  if (messages == 0) return;
  TopicCount& total = retired_[c.topic];
  total.messages += messages;
  total.bytes += c.bytes.load(std::memory_order_relaxed);
  total.peers.insert(peer);
}

void TopicRouter::LinksChanged(absl::Span<const std::shared_ptr<Transport>> active) {
  last_channel_ = nullptr;  // the maps change (and a link's address may be reused)
  last_shared_channel_ = nullptr;
  std::set<const Transport*> live;
  for (const auto& link : active) live.insert(link.get());
  absl::MutexLock lock(&mu_);
  for (auto it = links_.begin(); it != links_.end();) {
    if (live.count(it->first) != 0) {
      ++it;
      continue;
    }
    for (const auto& [id, c] : it->second.channels) Retire(it->second.peer, *c);
    for (const auto& [id, c] : it->second.shared) Retire(it->second.peer, *c);
    it = links_.erase(it);
  }
}

TopicRouter::Counters TopicRouter::counters() const {
  // relaxed: statistics.
  Counters c;
  c.unknown_id = unknown_id_.load(std::memory_order_relaxed);
  c.bad_declaration = bad_declaration_.load(std::memory_order_relaxed);
  c.too_many_ids = too_many_ids_.load(std::memory_order_relaxed);
  c.no_subscriber = no_subscriber_.load(std::memory_order_relaxed);
  return c;
}

std::map<std::string, TopicRouter::TopicCount> TopicRouter::Received() const {
  absl::MutexLock lock(&mu_);
  std::map<std::string, TopicCount> out = retired_;
  for (const auto& [link, topics] : links_) {
    for (const auto* channels : {&topics.channels, &topics.shared}) {
      for (const auto& [id, c] : *channels) {
        const uint64_t messages = c->messages.load(std::memory_order_relaxed);
        if (messages == 0) continue;
        TopicCount& total = out[c->topic];
        total.messages += messages;
        total.bytes += c->bytes.load(std::memory_order_relaxed);
        total.peers.insert(topics.peer);
      }
    }
  }
  return out;
}

}  // namespace pubsub
}  // namespace mesh
