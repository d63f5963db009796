#include "mesh/dataplane/shared_rings.h"

#include <sys/epoll.h>

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"

namespace mesh {

absl::StatusOr<SharedRings> SharedRings::Create(std::function<absl::Status(absl::string_view)> valid_topic) {
  absl::StatusOr<base::Epoll> epoll = base::Epoll::Create();
  if (!epoll.ok()) return epoll.status();
  return SharedRings(std::move(*epoll), std::move(valid_topic));
}

absl::Status SharedRings::Add(const std::shared_ptr<Transport>& link, const mesh::v1::LinkControl::SharedRing& offer,
                              std::vector<base::UniqueFd> fds) {
  const auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("shared ring offer ", offer.channel(), ": ", what));
  };
  if (offer.channel() == 0) return bad("channel 0");
  if (fds.size() != 3) return bad(absl::StrCat(fds.size(), " descriptors, expected 3"));
  if (absl::Status valid = valid_topic_(offer.topic()); !valid.ok()) {
    return bad(absl::StrCat("bad topic: ", valid.message()));
  }
  const auto key = std::make_pair(link.get(), offer.channel());
  if (auto old = rings_.find(key); old != rings_.end()) {
    Erase(old);
  } else {
    size_t on_link = 0;
    for (const auto& [k, r] : rings_) on_link += k.first == link.get();
    if (on_link >= kMaxSharedRingsPerLink) {
      return absl::ResourceExhaustedError(
          absl::StrCat("more than ", kMaxSharedRingsPerLink, " shared rings offered on one link"));
    }
  }
  absl::StatusOr<ringbuf::BroadcastConsumer> consumer = ringbuf::BroadcastConsumer::Open(
      std::move(fds[0]), std::move(fds[1]), std::move(fds[2]), offer.capacity(), offer.start());
  if (!consumer.ok()) return bad(consumer.status().message());
  const uint64_t tag = next_tag_++;
  if (absl::Status added = epoll_.Add(consumer->doorbell_fd(), EPOLLIN, tag); !added.ok()) return added;
  rings_.emplace(key, Ring{link, offer.channel(), offer.topic(), std::move(*consumer), false, tag});
  return absl::OkStatus();
}

void SharedRings::Erase(std::map<std::pair<const Transport*, uint32_t>, Ring>::iterator it) {
  epoll_.Remove(it->second.consumer.doorbell_fd());
  rings_.erase(it);
}

void SharedRings::Remove(const Transport* link, uint32_t channel) {
  auto it = rings_.find(std::make_pair(link, channel));
  if (it != rings_.end()) Erase(it);
}

void SharedRings::KeepOnly(absl::Span<const std::shared_ptr<Transport>> active) {
  std::set<const Transport*> live;
  for (const auto& link : active) live.insert(link.get());
  for (auto it = rings_.begin(); it != rings_.end();) {
    if (live.count(it->first.first) != 0) {
      ++it;
      continue;
    }
    auto gone = it++;
    Erase(gone);
  }
}

bool SharedRings::Drain(size_t batch, Deliver deliver, Dropped dropped) {
  bool any = false;
  for (auto it = rings_.begin(); it != rings_.end();) {
    Ring& r = it->second;
    if (r.held || r.link->down()) {
      ++it;
      continue;
    }
    absl::StatusOr<size_t> n = r.consumer.Drain(batch, [&](absl::Span<const uint8_t> frame) {
      if (deliver(r.link, r.channel, r.topic,
                  absl::string_view(reinterpret_cast<const char*>(frame.data()), frame.size()))) {
        return true;
      }
      r.held = true;
      return false;
    });
    if (!n.ok()) {
      dropped(*r.link, r.topic, n.status());
      auto gone = it++;
      Erase(gone);
      continue;
    }
    any = any || *n > 0;
    ++it;
  }
  return any;
}

void SharedRings::Unhold() {
  for (auto& [key, r] : rings_) r.held = false;
}

bool SharedRings::PrepareToSleep(bool* any_held) {
  bool sleep = true;
  for (auto& [key, r] : rings_) {
    if (r.held) {
      *any_held = true;
      continue;
    }
    if (!r.consumer.PrepareToSleep()) sleep = false;
  }
  return sleep;
}

void SharedRings::ClearDoorbells() {
  epoll_event events[64];
  const int n = epoll_.Wait(events, 64, 0);
  for (int i = 0; i < n; ++i) {
    for (auto& [key, r] : rings_) {
      if (r.tag != events[i].data.u64) continue;
      // UNAVAILABLE: the publisher's end is closed (its process is gone,
      // or it dropped the ring): stop watching; the next Drain ends it.
      if (!r.consumer.ClearDoorbell().ok()) epoll_.Remove(r.consumer.doorbell_fd());
      break;
    }
  }
}

}  // namespace mesh
