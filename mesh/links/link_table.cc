#include "mesh/links/link_table.h"

#include <utility>

namespace mesh {
namespace {

// Source of LinkTable::uid_. relaxed: only uniqueness matters.
std::atomic<uint64_t> g_next_table_uid{1};

// Per-thread cache of Find's lookups: (table, peer) -> link, valid while
// the table's generation still has the value it had when the entry was
// filled ([LinkGen]). It holds weak_ptrs, so a cached link never outlives
// its table or keeps its descriptors and mappings open; a few entries, so a
// thread that alternates between some peers keeps hitting.
struct LinkCacheEntry {
  uint64_t table = 0;  // LinkTable::uid_; 0: empty
  uint64_t generation = 0;
  std::string peer;
  std::weak_ptr<Transport> link;
};
constexpr size_t kLinkCacheEntries = 8;
struct LinkCache {
  LinkCacheEntry entries[kLinkCacheEntries];
  size_t next = 0;      // round-robin replacement
  size_t last_hit = 0;  // checked first
};
thread_local LinkCache t_link_cache;

}  // namespace

// relaxed: a unique number is all that is needed.
LinkTable::LinkTable() : uid_(g_next_table_uid.fetch_add(1, std::memory_order_relaxed)) {}

void LinkTable::BumpLocked() {
  // [LinkGen] release: pairs with the acquire loads in Find and
  // CopyIfChanged (a read-modify-write, but off the data path).
  generation_.fetch_add(1, std::memory_order_release);
}

bool LinkTable::Install(std::shared_ptr<Transport> link) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return false;
  auto [it, inserted] = links_.emplace(link->peer_name(), std::move(link));
  if (inserted) {
    BumpLocked();
    grown_.notify_all();
  }
  return inserted;
}

bool LinkTable::Remove(const std::shared_ptr<Transport>& link) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = links_.find(link->peer_name());
  if (it == links_.end() || it->second != link) return false;
  links_.erase(it);
  BumpLocked();
  return true;
}

std::vector<std::shared_ptr<Transport>> LinkTable::Close() {
  std::vector<std::shared_ptr<Transport>> out;
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  for (auto& [name, link] : links_) out.push_back(std::move(link));
  links_.clear();
  BumpLocked();
  grown_.notify_all();
  return out;
}

std::shared_ptr<Transport> LinkTable::Find(absl::string_view peer) const {
  LinkCache& cache = t_link_cache;
  // [LinkGen] acquire: an entry cached at this generation was read from
  // links_ under mu_ when links_ was as it is now, so it is still the link
  // installed for `peer`. If its lock() fails the link is gone: look again.
  const uint64_t generation = generation_.load(std::memory_order_acquire);
  for (size_t i = 0; i < kLinkCacheEntries; ++i) {
    // The last hit first: a thread usually sends to one peer at a time.
    const size_t index = (cache.last_hit + i) % kLinkCacheEntries;
    LinkCacheEntry& e = cache.entries[index];
    if (e.table == uid_ && e.generation == generation && e.peer == peer) {
      cache.last_hit = index;
      if (std::shared_ptr<Transport> link = e.link.lock()) return link;
      break;
    }
  }
  std::shared_ptr<Transport> link;
  uint64_t cached_generation = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = links_.find(peer);
    if (it == links_.end()) return nullptr;
    link = it->second;
    // relaxed: every writer changes it under mu_, which we hold, so this is
    // the generation of the links_ we just read.
    cached_generation = generation_.load(std::memory_order_relaxed);
  }
  LinkCacheEntry* slot = nullptr;
  for (LinkCacheEntry& e : cache.entries) {
    if (e.table == uid_ && e.peer == peer) slot = &e;
  }
  if (slot == nullptr) {
    slot = &cache.entries[cache.next];
    cache.next = (cache.next + 1) % kLinkCacheEntries;
  }
  slot->table = uid_;
  slot->generation = cached_generation;
  slot->peer.assign(peer.data(), peer.size());
  slot->link = link;
  return link;
}

bool LinkTable::Contains(absl::string_view peer) const {
  std::lock_guard<std::mutex> lock(mu_);
  return links_.find(peer) != links_.end();
}

std::vector<std::shared_ptr<Transport>> LinkTable::Live() const {
  std::vector<std::shared_ptr<Transport>> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [n, link] : links_) {
    if (!link->down()) out.push_back(link);
  }
  return out;
}

std::vector<std::string> LinkTable::LiveNames() const {
  std::vector<std::string> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [n, link] : links_) {
    if (!link->down()) out.push_back(n);
  }
  return out;
}

size_t LinkTable::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return links_.size();
}

bool LinkTable::CopyIfChanged(uint64_t* seen, std::vector<std::shared_ptr<Transport>>* out) const {
  // [LinkGen] acquire: pairs with the release increments in BumpLocked;
  // the copy itself is taken under mu_.
  if (generation_.load(std::memory_order_acquire) == *seen) return false;
  out->clear();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [n, link] : links_) {
    if (!link->down()) out->push_back(link);
  }
  // relaxed: written only under mu_, which we hold.
  *seen = generation_.load(std::memory_order_relaxed);
  return true;
}

bool LinkTable::AwaitSize(size_t n, absl::Time deadline) const {
  std::unique_lock<std::mutex> lock(mu_);
  auto done = [&] { return links_.size() >= n || closed_ || interrupted_; };
  if (deadline == absl::InfiniteFuture()) {
    grown_.wait(lock, done);
  } else {
    (void)grown_.wait_until(lock, absl::ToChronoTime(deadline), done);
  }
  return links_.size() >= n;
}

void LinkTable::Interrupt() {
  std::lock_guard<std::mutex> lock(mu_);
  interrupted_ = true;
  grown_.notify_all();
}

}  // namespace mesh
