#include "mesh/pubsub/shared_fanout.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace mesh {
namespace pubsub {

absl::StatusOr<std::unique_ptr<SharedFanout>> SharedFanout::Create(const std::string& topic, uint32_t channel,
                                                                   size_t capacity, size_t history) {
  ringbuf::BroadcastOptions options;
  options.capacity = capacity;
  options.history_frames = history;
  // One consumer per linked node: a mesh's size.
  options.max_consumers = 4096;
  absl::StatusOr<ringbuf::BroadcastProducer> producer =
      ringbuf::BroadcastProducer::Create(absl::StrCat("shmesh-topic-", channel), options);
  if (!producer.ok()) return producer.status();
  return std::unique_ptr<SharedFanout>(new SharedFanout(topic, channel, std::move(*producer)));
}

void SharedFanout::Offer(Subscriber* s) {
  if (s->link->down()) {
    s->why_not = absl::UnavailableError(absl::StrCat("the link to ", s->link->peer_name(), " is down"));
    return;
  }
  if (s->link->unresponsive()) {
    s->why_not = absl::UnavailableError(
        absl::StrCat("subscriber ", s->link->peer_name(), " is unresponsive (its process does not run)"));
    return;
  }
  const uint64_t start = s->offered ? producer_.tail() : producer_.history_start();
  absl::StatusOr<ringbuf::BroadcastProducer::NewConsumer> added = producer_.AddConsumer(start);
  if (!added.ok()) {
    s->why_not = added.status();
    return;
  }
  mesh::v1::LinkControl offer;
  mesh::v1::LinkControl::SharedRing* ring = offer.mutable_shared_ring();
  ring->set_channel(channel_);
  ring->set_topic(topic_);
  ring->set_capacity(producer_.capacity());
  ring->set_start(start);
  // The peer gets duplicates; ours of its page and doorbell end close here.
  const int fds[3] = {producer_.region_fd(), added->cursor_fd.get(), added->doorbell_fd.get()};
  absl::Status sent = s->link->SendControl(offer, absl::MakeConstSpan(fds));
  if (!sent.ok()) {
    producer_.Detach(added->id);
    s->why_not = absl::Status(sent.code(), absl::StrCat("could not offer the shared ring to ", s->link->peer_name(),
                                                        ": ", sent.message()));
    return;
  }
  s->id = added->id;
  s->offered = true;
  s->why_not = absl::OkStatus();
}

void SharedFanout::End(Subscriber* s) {
  if (s->id == 0) return;
  producer_.Detach(s->id);
  s->id = 0;
  mesh::v1::LinkControl end;
  end.mutable_shared_ring_end()->set_channel(channel_);
  // Best effort: a peer that does not read its socket finds its ring
  // evicted or closed anyway.
  (void)s->link->SendControl(end);
}

void SharedFanout::Sync(const std::vector<std::shared_ptr<Transport>>& matched) {
  for (auto it = subscribers_.begin(); it != subscribers_.end();) {
    if (std::find(matched.begin(), matched.end(), it->link) != matched.end()) {
      ++it;
      continue;
    }
    End(&*it);
    it = subscribers_.erase(it);
  }
  for (const auto& link : matched) {
    auto it = std::find_if(subscribers_.begin(), subscribers_.end(),
                           [&](const Subscriber& s) { return s.link == link; });
    if (it == subscribers_.end()) {
      subscribers_.push_back(Subscriber{link});
      it = subscribers_.end() - 1;
    }
    if (it->id == 0) Offer(&*it);
  }
  any_without_ring_ = false;
  for (const Subscriber& s : subscribers_) any_without_ring_ = any_without_ring_ || s.id == 0;
}

void SharedFanout::Publish(absl::string_view payload, absl::Time deadline, PublishResult* result) {
  std::vector<ringbuf::BroadcastEviction> evicted;
  // A frame over MaxPayload() is refused by the caller first.
  // A subscriber whose link went down or whose process stopped running is
  // not waited for.
  const auto gone = [this](uint32_t id) {
    for (const Subscriber& s : subscribers_) {
      if (s.id == id) return s.link->down() || s.link->unresponsive();
    }
    return false;
  };
  (void)producer_.Write("", payload, deadline, &evicted, gone);
  for (const ringbuf::BroadcastEviction& e : evicted) {
    auto it = std::find_if(subscribers_.begin(), subscribers_.end(),
                           [&](const Subscriber& s) { return s.id == e.id; });
    if (it == subscribers_.end()) continue;
    it->id = 0;
    mesh::v1::LinkControl end;
    end.mutable_shared_ring_end()->set_channel(channel_);
    (void)it->link->SendControl(end);
    it->why_not = absl::DeadlineExceededError(
        absl::StrCat("subscriber ", it->link->peer_name(), " was evicted from the shared ring of ", topic_, ": ",
                     e.why, "; it gets the ring again from the next publication"));
  }
  any_without_ring_ = false;
  for (const Subscriber& s : subscribers_) {
    if (s.id != 0) {
      ++result->delivered;
    } else {
      any_without_ring_ = true;
      result->not_reached.emplace_back(s.link->peer_name(), s.why_not);
    }
  }
}

void SharedFanout::Close() {
  for (Subscriber& s : subscribers_) End(&s);
  subscribers_.clear();
  any_without_ring_ = false;
}

}  // namespace pubsub
}  // namespace mesh
