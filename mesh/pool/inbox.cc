#include "mesh/pool/inbox.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mesh/dataplane/envelope.h"

namespace mesh {
namespace pool {
namespace {

// Set by the receive thread for itself (SetDeferReleasesOnThisThread).
thread_local bool tls_defer_releases = false;

}  // namespace

void SetDeferReleasesOnThisThread(bool defer) { tls_defer_releases = defer; }

PooledPayload::~PooledPayload() { inbox_->Release(token_); }

Inbox::Inbox(std::shared_ptr<Transport> link, Inboxes* owner, uint32_t max_segments)
    : link_(std::move(link)), owner_(owner), max_segments_(max_segments) {}

absl::Status Inbox::AddSegment(const mesh::v1::LinkControl::PoolSegment& msg, std::vector<base::UniqueFd> fds) {
  if (fds.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PoolSegment ", msg.id(), " came with ", fds.size(), " descriptors; it must carry exactly 1"));
  }
  if (msg.id() == 0) return absl::InvalidArgumentError("PoolSegment with id 0 (ids are nonzero)");
  if (segments_.count(msg.id()) > 0) {
    return absl::InvalidArgumentError(absl::StrCat("PoolSegment ", msg.id(), " was handed over twice"));
  }
  if (segments_.size() >= max_segments_) {
    return absl::ResourceExhaustedError(absl::StrCat("peer handed over more than ", max_segments_,
                                                     " pool segments (pool.max_peer_segments)"));
  }
  absl::StatusOr<ringbuf::SharedRegion> region = ringbuf::SharedRegion::MapReadOnly(std::move(fds[0]), msg.size());
  if (!region.ok()) {
    return absl::Status(region.status().code(),
                        absl::StrCat("PoolSegment ", msg.id(), " refused: ", region.status().message()));
  }
  mapped_bytes_ += region->size();
  owner_->mapped_segments_.fetch_add(1, std::memory_order_relaxed);
  owner_->mapped_bytes_.fetch_add(region->size(), std::memory_order_relaxed);
  segments_.emplace(msg.id(), std::make_shared<const ringbuf::SharedRegion>(std::move(*region)));
  return absl::OkStatus();
}

void Inbox::RetireSegment(uint32_t id) {
  auto it = segments_.find(id);
  if (it == segments_.end()) return;
  mapped_bytes_ -= it->second->size();
  owner_->mapped_segments_.fetch_sub(1, std::memory_order_relaxed);
  owner_->mapped_bytes_.fetch_sub(it->second->size(), std::memory_order_relaxed);
  segments_.erase(it);  // unmapped once no payload of it is held
}

RefError Inbox::Resolve(absl::string_view ref_payload, uint64_t max_message_bytes,
                        std::shared_ptr<const PooledPayload>* out) {
  PoolRef ref;
  RefError e = ParsePoolRef(ref_payload, &ref);
  if (e != RefError::kNone) return e;
  auto it = segments_.find(ref.segment);
  if (it == segments_.end()) return RefError::kUnknownSegment;
  if ((e = CheckRefBounds(ref, it->second->size())) != RefError::kNone) return e;
  if (ref.length > max_message_bytes) return RefError::kTooLong;
  const absl::string_view bytes(reinterpret_cast<const char*>(it->second->data()) + ref.offset, ref.length);
  *out = std::make_shared<const PooledPayload>(it->second, bytes, ref.token, shared_from_this());
  return RefError::kNone;
}

void Inbox::Release(uint64_t token) {
  bool flush_now = false;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;  // the peer is gone, or this node stopped
    if (pending_.empty()) owner_->pending_.fetch_add(1, std::memory_order_acq_rel);
    pending_.push_back(token);
    flush_now = !tls_defer_releases;
  }
  if (flush_now && !Flush()) {
    // The ring is full: the receive thread tries again.
    absl::MutexLock lock(&mu_);
    if (!closed_ && owner_->options_.wake) owner_->options_.wake();
  }
}

bool Inbox::Flush() {
  absl::MutexLock lock(&mu_);
  if (closed_ || pending_.empty()) return true;
  char prefix[kFrameBaseBytes];
  FrameHeader h;
  h.kind = static_cast<uint8_t>(FrameKind::kPoolRelease);
  EncodeFrameHeader(h, prefix);
  while (!pending_.empty()) {
    const size_t n = std::min(pending_.size(), kMaxReleasesPerFrame);
    char body[kMaxReleasesPerFrame * kReleaseTokenBytes];
    for (size_t i = 0; i < n; ++i) {
      const uint64_t wire = ref_internal::Wire64(pending_[pending_.size() - n + i]);
      std::memcpy(body + i * kReleaseTokenBytes, &wire, kReleaseTokenBytes);
    }
    const absl::Status s = link_->SendFrame(absl::string_view(prefix, kFrameBaseBytes),
                                            absl::string_view(body, n * kReleaseTokenBytes), absl::InfinitePast());
    if (!s.ok()) {
      if (absl::IsResourceExhausted(s)) return false;  // full: later
      // The link is down or broken: the peer learns it anyway.
      pending_.clear();
      break;
    }
    pending_.resize(pending_.size() - n);
  }
  if (pending_.empty()) owner_->pending_.fetch_sub(1, std::memory_order_acq_rel);
  return true;
}

void Inbox::Close() {
  absl::MutexLock lock(&mu_);
  if (closed_) return;
  closed_ = true;
  if (!pending_.empty()) owner_->pending_.fetch_sub(1, std::memory_order_acq_rel);
  pending_.clear();
  owner_->mapped_segments_.fetch_sub(static_cast<uint32_t>(segments_.size()), std::memory_order_relaxed);
  owner_->mapped_bytes_.fetch_sub(mapped_bytes_, std::memory_order_relaxed);
  segments_.clear();  // payloads still held keep their mappings
  mapped_bytes_ = 0;
}

Inboxes::~Inboxes() {
  for (auto& [key, inbox] : inboxes_) inbox->Close();
}

Inbox* Inboxes::Get(const std::shared_ptr<Transport>& link) {
  std::shared_ptr<Inbox>& slot = inboxes_[link.get()];
  if (slot == nullptr) slot = std::make_shared<Inbox>(link, this, options_.max_segments_per_peer);
  return slot.get();
}

void Inboxes::LinksChanged(absl::Span<const std::shared_ptr<Transport>> active) {
  std::map<const Transport*, std::shared_ptr<Inbox>> kept;
  for (const auto& link : active) {
    auto it = inboxes_.find(link.get());
    if (it != inboxes_.end() && it->second->link() == link) kept.insert(*it);
  }
  for (auto& [key, inbox] : inboxes_) {
    if (kept.count(key) == 0) inbox->Close();
  }
  inboxes_.swap(kept);
}

bool Inboxes::FlushAll() {
  bool all = true;
  for (auto& [key, inbox] : inboxes_) {
    if (!inbox->Flush()) all = false;
  }
  return all;
}

Inboxes::Stats Inboxes::stats() const {
  Stats s;
  s.mapped_segments = mapped_segments_.load(std::memory_order_relaxed);
  s.mapped_bytes = mapped_bytes_.load(std::memory_order_relaxed);
  s.dropped_bad_refs = bad_refs_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace pool
}  // namespace mesh
