#include "mesh/pubsub/publisher_core.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace mesh {
namespace pubsub {
namespace {

void EncodeBase(FrameHeader h, char out[kFrameBaseBytes]) {
  char buf[kMaxFrameHeaderBytes];
  EncodeFrameHeader(h, buf);
  std::copy(buf, buf + kFrameBaseBytes, out);
}

std::string DeclarePrefix(uint32_t channel) {
  FrameHeader h;
  h.kind = static_cast<uint8_t>(FrameKind::kTopic);
  h.flags = kFrameFlagDeclare;
  h.channel = channel;
  char out[kFrameBaseBytes];
  EncodeBase(h, out);
  return std::string(out, kFrameBaseBytes);
}

}  // namespace

PublisherCore::PublisherCore(PublisherContext context, std::string topic, uint32_t channel, PublisherOptions options)
    : topic_(std::move(topic)), channel_(channel), options_(std::move(options)), context_(std::move(context)) {
  FrameHeader h;
  h.kind = static_cast<uint8_t>(FrameKind::kTopic);
  h.channel = channel_;
  EncodeBase(h, prefix_);
}

PublisherCore::~PublisherCore() { Detach(); }

absl::Status PublisherCore::EnableSharedRing() {
  std::unique_lock<std::mutex> lock(mu_);
  absl::StatusOr<std::unique_ptr<SharedFanout>> made =
      SharedFanout::Create(topic_, channel_, context_.shared_ring_bytes, options_.history);
  if (!made.ok()) {
    return absl::Status(made.status().code(),
                        absl::StrCat("cannot make the shared ring of topic ", topic_, ": ", made.status().message()));
  }
  shared_ = std::move(*made);
  return absl::OkStatus();
}

std::vector<std::shared_ptr<Transport>> PublisherCore::MatchedLinksLocked() const {
  std::vector<std::shared_ptr<Transport>> links;
  links.reserve(peers_.size());
  for (const Peer& p : peers_) links.push_back(p.link);
  return links;
}

PublishResult PublisherCore::PublishSharedLocked(absl::string_view payload, absl::Time deadline) {
  if (shared_synced_ != peers_generation_ || shared_->any_without_ring()) {
    shared_->Sync(MatchedLinksLocked());
    shared_synced_ = peers_generation_;
  }
  PublishResult result;
  const bool reliable = options_.reliability == PublisherOptions::Reliability::kReliable;
  shared_->Publish(payload, reliable ? deadline : absl::InfinitePast(), &result);
  return result;
}

void PublisherCore::RematchLocked(bool force) {
  const bool links_changed = context_.links->CopyIfChanged(&seen_links_, &live_);
  const uint64_t interest = context_.interest->generation();
  if (!force && !links_changed && interest == seen_interest_) return;
  seen_interest_ = interest;
  std::vector<Peer> next;
  // A newly matched peer starts at the oldest message kept (its history
  // first), or at the next one without history.
  const uint64_t start = next_seq_ - history_.size();
  for (const auto& link : live_) {
    if (link->down() || !context_.interest->PeerMatches(link.get(), topic_)) continue;
    auto old = std::find_if(peers_.begin(), peers_.end(), [&](const Peer& p) { return p.link == link; });
    next.push_back(old != peers_.end() ? std::move(*old) : Peer{link, false, start});
  }
  peers_.swap(next);
  ++peers_generation_;
  matched_cv_.notify_all();  // WaitForSubscribers
  // relaxed: a statistic for matched() (see there).
  matched_count_.store(peers_.size(), std::memory_order_relaxed);
  {
    std::vector<std::string> names;
    for (const Peer& p : peers_) names.push_back(p.link->peer_name());
    std::sort(names.begin(), names.end());
    absl::MutexLock lock(&names_mu_);
    matched_names_.swap(names);
  }
  NotifyMatchedLocked();
}

void PublisherCore::NotifyMatchedLocked() {
  if (peers_.size() == notified_matched_) return;
  notified_matched_ = peers_.size();
  if (options_.on_matched && context_.post_event) {
    context_.post_event([cb = options_.on_matched, n = notified_matched_] { cb(n); });
  }
}

absl::Status PublisherCore::CatchUpLocked(Peer* peer, uint64_t upto, absl::Time deadline) {
  Transport& link = *peer->link;
  if (!peer->declared) {
    static_assert(kFrameBaseBytes == sizeof(prefix_), "one base header");
    absl::Status s = link.SendFrame(DeclarePrefix(channel_), topic_, deadline);
    if (!s.ok()) return s;
    peer->declared = true;
  }
  if (history_.empty()) {
    peer->next_seq = std::max(peer->next_seq, upto);
    return absl::OkStatus();
  }
  const uint64_t oldest = next_seq_ - history_.size();
  // What fell out of the history cannot be sent any more.
  if (peer->next_seq < oldest) peer->next_seq = oldest;
  while (peer->next_seq < upto) {
    const Entry& e = history_[peer->next_seq - oldest];
    absl::Status s = WriteLocked(peer, e.block ? Outgoing{{}, &e.block} : Outgoing{e.bytes, nullptr}, deadline);
    if (!s.ok()) return s;
    ++peer->next_seq;
  }
  return absl::OkStatus();
}

absl::Status PublisherCore::WriteLocked(Peer* peer, const Outgoing& out, absl::Time deadline) {
  if (out.block != nullptr) return context_.pool->SendRef(peer->link, *out.block, channel_, deadline);
  return peer->link->SendFrame(absl::string_view(prefix_, kFrameBaseBytes), out.bytes, deadline);
}

absl::Status PublisherCore::SendOneLocked(Peer* peer, uint64_t seq, const Outgoing& out, absl::Time deadline) {
  if (absl::Status s = CatchUpLocked(peer, seq, deadline); !s.ok()) return s;
  absl::Status s = WriteLocked(peer, out, deadline);
  if (s.ok()) peer->next_seq = seq + 1;
  return s;
}

void PublisherCore::NoteFailure(const std::shared_ptr<Transport>& link, const absl::Status& s) {
  if ((absl::IsDataLoss(s) || absl::IsUnavailable(s)) && context_.link_failed) {
    context_.link_failed(link, absl::StrCat("publishing to it failed: ", s.message()));
  }
}

absl::StatusOr<PublishResult> PublisherCore::Publish(absl::string_view payload, absl::Time deadline) {
  if (!options_.shared_ring && context_.pool != nullptr && payload.size() > context_.pool_threshold &&
      payload.size() <= context_.max_message_bytes) {
    // One copy into the pool; every subscriber gets a reference to it.
    absl::StatusOr<pool::BlockHandle> block = AllocateBlock(payload.size(), deadline, /*copy=*/true);
    if (!block.ok()) return block.status();
    std::memcpy(block->data(), payload.data(), payload.size());
    return PublishBlock(*block, deadline);
  }
  return PublishOutside(Outgoing{payload, nullptr}, deadline);
}

absl::StatusOr<PublishResult> PublisherCore::PublishBlock(const pool::BlockHandle& block, absl::Time deadline) {
  return PublishOutside(Outgoing{{}, &block}, deadline);
}

absl::StatusOr<pool::BlockHandle> PublisherCore::AllocateBlock(size_t bytes, absl::Time deadline, bool copy) {
  std::shared_ptr<pool::SendPool> pool;
  {
    std::unique_lock<std::mutex> lock(mu_);
    if (!detached_) pool = context_.pool;
  }
  RematchIfWanted();
  if (pool == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("the publisher of topic ", topic_, " outlived its node; advertise again on a running node"));
  }
  if (options_.shared_ring) {
    return absl::InvalidArgumentError(
        absl::StrCat("the publisher of topic ", topic_, " has a shared ring, which takes no loans; publish bytes"));
  }
  // Outside mu_: waiting for pool memory must not hold up Rematch.
  return pool->Allocate(bytes, deadline, copy);
}

absl::StatusOr<PublishResult> PublisherCore::PublishOutside(const Outgoing& out, absl::Time deadline) {
  absl::StatusOr<PublishResult> result;
  {
    std::unique_lock<std::mutex> lock(mu_);
    result = PublishLocked(out, deadline);
  }
  RematchIfWanted();
  return result;
}

absl::StatusOr<PublishResult> PublisherCore::PublishLocked(const Outgoing& out, absl::Time deadline) {
  const size_t payload_size = out.size();
  if (detached_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the publisher of topic ", topic_, " outlived its node; advertise again on a running node"));
  }
  if (absl::Status running = context_.check_running("Publish()"); !running.ok()) return running;
  if (payload_size > context_.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", payload_size, " bytes to topic ", topic_,
                                                   " exceeds max_message_bytes (", context_.max_message_bytes,
                                                   "); split it or raise max_message_bytes in the config"));
  }
  RematchLocked(false);
  if (shared_ != nullptr) {
    if (out.block != nullptr || payload_size > shared_->MaxPayload()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "message of ", payload_size, " bytes to topic ", topic_, " does not fit its shared ring (at most ",
          shared_->MaxPayload(), " bytes, half of ring_capacity_bytes; loans are not taken)"));
    }
    PublishResult shared = PublishSharedLocked(out.bytes, deadline);
    messages_.store(messages_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    bytes_.store(bytes_.load(std::memory_order_relaxed) + payload_size, std::memory_order_relaxed);
    if (shared.delivered == 0 && !shared.not_reached.empty()) {
      std::vector<std::string> why;
      for (const auto& [name, st] : shared.not_reached) why.push_back(absl::StrCat(name, ": ", st.message()));
      return absl::Status(shared.not_reached.front().second.code(),
                          absl::StrCat("no subscriber of ", topic_, " could be reached (", absl::StrJoin(why, "; "),
                                       ")"));
    }
    return shared;
  }
  const uint64_t seq = next_seq_++;
  if (options_.history > 0) {
    history_.push_back(out.block != nullptr ? Entry{std::string(), *out.block} : Entry{std::string(out.bytes), {}});
    if (history_.size() > options_.history) history_.pop_front();
  }
  PublishResult result;
  std::vector<Peer*> full;
  const bool reliable = options_.reliability == PublisherOptions::Reliability::kReliable;
  for (Peer& peer : peers_) {
    // A past deadline: never waits; a full ring says RESOURCE_EXHAUSTED.
    absl::Status s = SendOneLocked(&peer, seq, out, absl::InfinitePast());
    if (s.ok()) {
      ++result.delivered;
    } else if (absl::IsResourceExhausted(s) && reliable && peer.link->unresponsive()) {
      result.not_reached.emplace_back(
          peer.link->peer_name(),
          absl::UnavailableError(absl::StrCat("subscriber ", peer.link->peer_name(),
                                              " is unresponsive (its process does not run) and its ring is full")));
    } else if (absl::IsResourceExhausted(s) && reliable) {
      full.push_back(&peer);
    } else {
      NoteFailure(peer.link, s);
      result.not_reached.emplace_back(peer.link->peer_name(), s);
    }
  }
  // The full ones in turn, each until the deadline: the others got it first.
  for (Peer* peer : full) {
    absl::Status s = SendOneLocked(peer, seq, out, deadline);
    if (s.ok()) {
      ++result.delivered;
    } else {
      NoteFailure(peer->link, s);
      result.not_reached.emplace_back(peer->link->peer_name(), s);
    }
  }
  // Statistics, written under mu_ only (a relaxed load and store, no
  // locked read-modify-write). Every accepted publication counts (also one
  // that reaches its subscribers later, from the history).
  messages_.store(messages_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  bytes_.store(bytes_.load(std::memory_order_relaxed) + payload_size, std::memory_order_relaxed);
  // A re-match the events thread could not do while we held the lock:
  // new subscribers get their history now, not at some later Publish.
  // relaxed: the flag publishes nothing (the work is done under mu_,
  // which we hold). A plain load first: the exchange (a locked
  // read-modify-write) only when it is set.
  if (rematch_wanted_.load(std::memory_order_relaxed) &&
      rematch_wanted_.exchange(false, std::memory_order_relaxed)) {
    RematchAndCatchUpLocked(absl::Now() + kRematchPatienceInPublish);
  }
  if (result.delivered == 0 && !result.not_reached.empty()) {
    std::vector<std::string> why;
    for (const auto& [name, s] : result.not_reached) why.push_back(absl::StrCat(name, ": ", s.message()));
    return absl::Status(result.not_reached.front().second.code(),
                        absl::StrCat("no subscriber of ", topic_, " could be reached (", absl::StrJoin(why, "; "),
                                     ")"));
  }
  return result;
}

void PublisherCore::Rematch(absl::Duration patience) {
  for (;;) {
    // A Publish in progress (maybe waiting for a full ring until its
    // deadline) must not hold the events thread: whoever holds mu_ is
    // asked to do this itself, after it unlocks ([RematchWanted]).
    if (!mu_.try_lock()) {
      rematch_wanted_.store(true, std::memory_order_relaxed);
      // seq_cst fence: the other half of the pair in RematchIfWanted.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (!mu_.try_lock()) return;  // its holder will see the flag
    }
    // relaxed: we hold mu_, and do what was wanted.
    rematch_wanted_.store(false, std::memory_order_relaxed);
    if (!detached_) RematchAndCatchUpLocked(absl::Now() + patience);
    mu_.unlock();
    // Asked again while we held mu_ (a holder relaying the request found
    // it taken by us): go round once more.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (!rematch_wanted_.load(std::memory_order_relaxed)) return;
  }
}

void PublisherCore::RematchIfWanted() {
  // [RematchWanted] A full barrier between our unlock and the flag's load;
  // Rematch has a seq_cst fence between its store and its second try_lock.
  // So either we see the flag, or its try_lock sees our unlock (and takes
  // mu_, or a later holder that comes here after its own unlock does).
  // On x86 the unlock is that barrier already: a futex mutex's unlock is a
  // locked read-modify-write (it must learn whether anyone waits), and a
  // fence here would cost every Publish about 25 ns (topic_spin 64 B p50,
  // ~493 -> ~518 ns in pairs run back to back). Elsewhere, the fence.
#if !(defined(__x86_64__) || defined(__i386__))
  std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
  if (rematch_wanted_.load(std::memory_order_relaxed)) Rematch(kRematchPatienceInPublish);
}

void PublisherCore::RematchAndCatchUpLocked(absl::Time deadline) {
  RematchLocked(true);
  if (shared_ != nullptr) {
    shared_->Sync(MatchedLinksLocked());
    shared_synced_ = peers_generation_;
    return;
  }
  for (Peer& peer : peers_) {
    if (peer.declared && peer.next_seq >= next_seq_) continue;
    absl::Status s = CatchUpLocked(&peer, next_seq_, deadline);
    // A full ring: the rest goes with the next Publish (or Rematch).
    if (!s.ok() && !absl::IsResourceExhausted(s) && !absl::IsDeadlineExceeded(s)) NoteFailure(peer.link, s);
  }
}

size_t PublisherCore::matched() {
  // Never waits behind a Publish blocked on a full ring: then the count as
  // of the last match.
  if (!mu_.try_lock()) return matched_count_.load(std::memory_order_relaxed);
  size_t n = 0;
  if (!detached_) {
    RematchLocked(false);
    n = peers_.size();
  }
  mu_.unlock();
  RematchIfWanted();
  return n;
}

std::vector<std::string> PublisherCore::subscribers() {
  // As matched(): the last match while a Publish holds mu_.
  if (mu_.try_lock()) {
    if (!detached_) RematchLocked(false);
    mu_.unlock();
    RematchIfWanted();
  }
  absl::MutexLock lock(&names_mu_);
  return matched_names_;
}

absl::Status PublisherCore::WaitForSubscribers(size_t n, absl::Time deadline) {
  absl::Status waited = WaitForSubscribersUnlocked(n, deadline);
  RematchIfWanted();
  return waited;
}

absl::Status PublisherCore::WaitForSubscribersUnlocked(size_t n, absl::Time deadline) {
  std::unique_lock<std::mutex> lock(mu_);
  // Rematch() (the events thread, after every link or interest change)
  // updates peers_ under mu_, which re-evaluates the condition; the slices
  // also catch a change that has no rematch queued yet.
  for (;;) {
    if (detached_) return absl::FailedPreconditionError(absl::StrCat("the node of publisher ", topic_, " is gone"));
    RematchLocked(false);
    if (peers_.size() >= n) return absl::OkStatus();
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("topic ", topic_, " has ", peers_.size(),
                                                      " subscriber(s), wanted ", n,
                                                      "; are the subscribers running and linked with this node?"));
    }
    (void)matched_cv_.wait_until(lock, absl::ToChronoTime(std::min(deadline, now + absl::Milliseconds(20))));
  }
}

void PublisherCore::Detach() {
  std::unique_lock<std::mutex> lock(mu_);
  if (detached_) return;
  detached_ = true;
  history_.clear();  // its pool blocks go back
  if (shared_ != nullptr) {
    shared_->Close();
    shared_.reset();
  }
  // Frees the id on the subscribers' side (best effort: a full ring keeps
  // it until the link goes, which is bounded per link).
  for (Peer& peer : peers_) {
    if (peer.declared && !peer.link->down()) (void)peer.link->SendFrame(DeclarePrefix(channel_), "", absl::InfinitePast());
  }
  peers_.clear();
  live_.clear();
  matched_cv_.notify_all();
  matched_count_.store(0, std::memory_order_relaxed);
  {
    absl::MutexLock names_lock(&names_mu_);
    matched_names_.clear();
  }
  context_ = PublisherContext{};
}

}  // namespace pubsub
}  // namespace mesh
