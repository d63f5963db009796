#include "mesh/interest/interest.h"

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "mesh/links/control_channel.h"
#include "mesh/pubsub/topic_name.h"

namespace mesh {
namespace interest {
namespace {

// Room left in a control message for one more name: the limit minus a
// margin for the field tags, lengths and the other fields.
constexpr size_t kChunkBytes = links::kMaxControlMessageBytes - 512;

}  // namespace

absl::Status ApplyInterest(const InterestMsg& msg, PeerInterest* into) {
  PeerInterest next = msg.reset() ? PeerInterest{} : *into;
  for (const std::string& p : msg.subscribe()) {
    if (absl::Status s = pubsub::ValidatePattern(p); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("Interest.subscribe: ", s.message()));
    }
    next.patterns.insert(p);
  }
  for (const std::string& p : msg.unsubscribe()) next.patterns.erase(p);
  for (const auto& svc : msg.serve()) {
    if (absl::Status s = pubsub::ValidateTopicName(svc.name(), "service"); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("Interest.serve: ", s.message()));
    }
    if (svc.id() == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("Interest.serve: service \"", absl::CHexEscape(svc.name()), "\" has id 0"));
    }
    next.services[svc.name()] = svc.id();
  }
  for (const std::string& name : msg.unserve()) next.services.erase(name);
  if (next.patterns.size() > kMaxPatternsPerPeer) {
    return absl::InvalidArgumentError(absl::StrCat("Interest: ", next.patterns.size(),
                                                   " subscription patterns; the limit is ", kMaxPatternsPerPeer));
  }
  if (next.services.size() > kMaxServicesPerPeer) {
    return absl::InvalidArgumentError(
        absl::StrCat("Interest: ", next.services.size(), " services; the limit is ", kMaxServicesPerPeer));
  }
  *into = std::move(next);
  return absl::OkStatus();
}

bool LocalInterest::AddPattern(const std::string& pattern) { return ++patterns_[pattern] == 1; }

bool LocalInterest::RemovePattern(const std::string& pattern) {
  auto it = patterns_.find(pattern);
  if (it == patterns_.end()) return false;
  if (--it->second > 0) return false;
  patterns_.erase(it);
  return true;
}

std::vector<InterestMsg> LocalInterest::Full() const {
  std::vector<InterestMsg> out(1);
  out[0].set_reset(true);
  size_t bytes = 0;
  auto room_for = [&](size_t n) {
    if (bytes + n + 8 > kChunkBytes) {
      out.emplace_back();
      bytes = 0;
    }
    bytes += n + 8;
  };
  for (const auto& [pattern, count] : patterns_) {
    room_for(pattern.size());
    out.back().add_subscribe(pattern);
  }
  for (const auto& [name, id] : services_) {
    room_for(name.size() + 8);
    auto* svc = out.back().add_serve();
    svc->set_name(name);
    svc->set_id(id);
  }
  return out;
}

std::vector<std::string> LocalInterest::Patterns() const {
  std::vector<std::string> out;
  for (const auto& [pattern, count] : patterns_) out.push_back(pattern);
  return out;
}

Exchange::Exchange(const LinkTable* links, const Logger* log) : links_(links), log_(log) {}

void Exchange::SendLocked(const std::shared_ptr<Transport>& link, const std::vector<InterestMsg>& msgs) {
  mesh::v1::LinkControl control;
  for (const InterestMsg& m : msgs) {
    *control.mutable_interest() = m;
    absl::Status sent = link->SendControl(control);
    if (sent.ok()) continue;
    if (absl::IsResourceExhausted(sent)) {
      // Not reading its socket now: all of it again later (RetryUnsent, or
      // the next change).
      if (unsent_.insert(link.get()).second) {
        log_->Warning("cannot tell %s of our subscriptions now (%s); will resend them", link->peer_name(),
                      sent.message());
      }
    }
    return;  // UNAVAILABLE: the link is going; its retirement follows
  }
  unsent_.erase(link.get());
}

void Exchange::BroadcastLocked(const InterestMsg& delta) {
  for (const auto& link : links_->Live()) {
    if (unsent_.count(link.get()) != 0) {
      SendLocked(link, local_.Full());
    } else {
      SendLocked(link, {delta});
    }
  }
}

void Exchange::Subscribe(const std::string& pattern) {
  absl::MutexLock lock(&mu_);
  if (!local_.AddPattern(pattern)) return;
  InterestMsg delta;
  delta.add_subscribe(pattern);
  BroadcastLocked(delta);
}

void Exchange::Unsubscribe(const std::string& pattern) {
  absl::MutexLock lock(&mu_);
  if (!local_.RemovePattern(pattern)) return;
  InterestMsg delta;
  delta.add_unsubscribe(pattern);
  BroadcastLocked(delta);
}

void Exchange::Serve(const std::string& name, uint32_t id) {
  absl::MutexLock lock(&mu_);
  local_.AddService(name, id);
  InterestMsg delta;
  auto* svc = delta.add_serve();
  svc->set_name(name);
  svc->set_id(id);
  BroadcastLocked(delta);
}

void Exchange::Unserve(const std::string& name) {
  absl::MutexLock lock(&mu_);
  local_.RemoveService(name);
  InterestMsg delta;
  delta.add_unserve(name);
  BroadcastLocked(delta);
}

void Exchange::LinkUp(const std::shared_ptr<Transport>& link) {
  absl::MutexLock lock(&mu_);
  SendLocked(link, local_.Full());
}

void Exchange::RetryUnsent() {
  absl::MutexLock lock(&mu_);
  if (unsent_.empty()) return;
  for (const auto& link : links_->Live()) {
    if (unsent_.count(link.get()) != 0) SendLocked(link, local_.Full());
  }
  // Links that went away meanwhile.
  std::set<const Transport*> live;
  for (const auto& link : links_->Live()) live.insert(link.get());
  for (auto it = unsent_.begin(); it != unsent_.end();) it = live.count(*it) ? std::next(it) : unsent_.erase(it);
}

absl::Status Exchange::Apply(const std::shared_ptr<Transport>& link, const InterestMsg& msg) {
  absl::MutexLock lock(&peers_mu_);
  Entry& e = peers_[link.get()];
  if (e.link.lock() != link) e = Entry{link, {}};
  absl::Status applied = ApplyInterest(msg, &e.interest);
  // [InterestGen] release: after the change, under peers_mu_.
  generation_.fetch_add(1, std::memory_order_release);
  return applied;
}

void Exchange::LinkGone(const Transport* link) {
  {
    absl::MutexLock lock(&peers_mu_);
    if (peers_.erase(link) == 0) return;
    // [InterestGen] release: as in Apply.
    generation_.fetch_add(1, std::memory_order_release);
  }
  absl::MutexLock lock(&mu_);
  unsent_.erase(link);
}

bool Exchange::PeerMatches(const Transport* link, absl::string_view topic) const {
  absl::MutexLock lock(&peers_mu_);
  auto it = peers_.find(link);
  if (it == peers_.end()) return false;
  for (const std::string& pattern : it->second.interest.patterns) {
    if (pubsub::PatternMatches(pattern, topic)) return true;
  }
  return false;
}

std::vector<std::pair<std::shared_ptr<Transport>, uint32_t>> Exchange::Servers(absl::string_view service) const {
  std::vector<std::pair<std::shared_ptr<Transport>, uint32_t>> out;
  {
    absl::MutexLock lock(&peers_mu_);
    for (const auto& [key, e] : peers_) {
      auto svc = e.interest.services.find(std::string(service));
      if (svc == e.interest.services.end()) continue;
      std::shared_ptr<Transport> link = e.link.lock();
      if (link != nullptr && !link->down()) out.emplace_back(std::move(link), svc->second);
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first->peer_name() < b.first->peer_name(); });
  return out;
}

std::vector<std::string> Exchange::LocalPatterns() const {
  absl::MutexLock lock(&mu_);
  return local_.Patterns();
}

}  // namespace interest
}  // namespace mesh
