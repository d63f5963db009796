#include "mesh/pool/send_pool.h"

#include <algorithm>
#include <utility>

#include "absl/base/optimization.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "mesh/pool/pool_ref.h"

namespace mesh {
namespace pool {

// One segment: its memfd and read-write mapping, and its blocks (all of
// one size class). Owned by SendPool::segments_; blocks are never moved.
struct Segment {
  explicit Segment(ringbuf::SharedRegion r) : region(std::move(r)) {}
  uint32_t id = 0;
  int size_class = 0;
  ringbuf::SharedRegion region;
  std::unique_ptr<Block[]> blocks;
  uint32_t block_count = 0;
  uint32_t free_count = 0;
};

// What one peer (link) has of the pool.
struct SendPool::Peer {
  std::shared_ptr<Transport> link;  // keeps the key's object (and address) alive
  absl::flat_hash_set<uint32_t> segments;  // handed over on this link
  absl::flat_hash_set<uint64_t> held;      // tokens it holds
  uint64_t held_bytes = 0;
};

namespace {

constexpr int kMinClass = 12;  // 4 KiB
constexpr int kMaxClass = 40;  // 1 TiB: far above any limit

// Growth patience. A class whose blocks are all in use waits up to
// GrowPatience for one to be released before it adds a segment, once it
// has its working set: kWarmClassBlocks blocks and kWarmClassBytes, or
// kMaxWarmClassBytes whatever the count (so 8 MiB blocks stop at 32, a
// 1 GiB block at 1). A stream of sends then cycles through memory that is
// already resident and mapped by its receivers (warm pages, no new memfd,
// no page faults), instead of growing the pool while releases are on their
// way; and the working set is deep enough that a sender which gets its
// releases only in bursts (its receive thread shares its CPU) keeps going.
// Free segments beyond pool.retain_bytes are dropped only while their
// class keeps more than its working set free (blocks over
// kMaxWarmClassBytes: always), so a stream never drops a segment it is
// about to make again.
constexpr uint64_t kWarmClassBytes = uint64_t{32} << 20;
constexpr uint64_t kWarmClassBlocks = 64;
constexpr uint64_t kMaxWarmClassBytes = uint64_t{256} << 20;

// Copies (Allocate's `copy`) write every byte, so new memory costs them a
// full write (page allocation and zeroing): their working set is
// kCopyWorkingBytes (at least 2 blocks: 8 of 8 MiB), grown only when no
// release came within the patience. (16 MiB measured 0.73x iceoryx's
// copying rate at 1 MiB and 8 MiB; 64 MiB, 0.82x and 0.92x.)
constexpr uint64_t kCopyWorkingBytes = uint64_t{64} << 20;

// The working set of a class of `block_bytes` blocks, in blocks (see above).
uint64_t WarmBlocks(uint64_t block_bytes) {
  const uint64_t by_bytes = (kWarmClassBytes + block_bytes - 1) / block_bytes;
  const uint64_t cap = std::max<uint64_t>(1, kMaxWarmClassBytes / block_bytes);
  return std::min(std::max(kWarmClassBlocks, by_bytes), cap);
}
// At least 2 ms, and long enough for a receiver to copy a block out at
// 0.5 GB/s (16 ms for 8 MiB).
absl::Duration GrowPatience(size_t block_bytes) {
  return std::max(absl::Milliseconds(2), absl::Nanoseconds(2 * static_cast<int64_t>(block_bytes)));
}

int SizeClass(size_t bytes) {
  int c = kMinClass;
  while ((size_t{1} << c) < bytes) ++c;
  return c;
}

uint64_t Token(uint32_t segment, uint32_t index) { return uint64_t{segment} << 32 | index; }

}  // namespace

// --- BlockHandle ---

BlockHandle::BlockHandle(const BlockHandle& other) : pool_(other.pool_), block_(other.block_) {
  // relaxed: `other` keeps the block alive while we add ours.
  if (block_ != nullptr) block_->local_refs.fetch_add(1, std::memory_order_relaxed);
}

BlockHandle& BlockHandle::operator=(const BlockHandle& other) {
  if (this != &other) {
    BlockHandle copy(other);
    *this = std::move(copy);
  }
  return *this;
}

BlockHandle::BlockHandle(BlockHandle&& other) noexcept
    : pool_(std::move(other.pool_)), block_(std::exchange(other.block_, nullptr)) {}

BlockHandle& BlockHandle::operator=(BlockHandle&& other) noexcept {
  if (this != &other) {
    Reset();
    pool_ = std::move(other.pool_);
    block_ = std::exchange(other.block_, nullptr);
  }
  return *this;
}

BlockHandle::~BlockHandle() { Reset(); }

void BlockHandle::Reset() {
  if (block_ == nullptr) return;
  Block* block = std::exchange(block_, nullptr);
  // acq_rel: the last handle's LocalDone happens after every other
  // handle's writes to the block (release by each, acquire by the last).
  if (block->local_refs.fetch_sub(1, std::memory_order_acq_rel) == 1) pool_->LocalDone(block);
  pool_.reset();
}

uint8_t* BlockHandle::data() const { return block_ == nullptr ? nullptr : block_->data; }
size_t BlockHandle::capacity() const { return block_ == nullptr ? 0 : block_->capacity; }
size_t BlockHandle::size() const { return block_ == nullptr ? 0 : block_->size; }
void BlockHandle::set_size(size_t n) {
  if (block_ != nullptr) block_->size = std::min(n, block_->capacity);
}

// --- SendPool ---

std::shared_ptr<SendPool> SendPool::Create(PoolOptions options) {
  return std::shared_ptr<SendPool>(new SendPool(std::move(options)));
}

SendPool::SendPool(PoolOptions options) : options_(std::move(options)) {
  absl::MutexLock lock(&mu_);
  free_.resize(kMaxClass + 1);
  class_blocks_.assign(kMaxClass + 1, 0);
}

SendPool::~SendPool() = default;

absl::StatusOr<Segment*> SendPool::AddSegmentLocked(int size_class) {
  const size_t block = size_t{1} << size_class;
  const size_t count = std::max<size_t>(1, kSegmentTargetBytes / block);
  const size_t bytes = block * count;
  SHMESH_ASSIGN_OR_RETURN(ringbuf::SharedRegion region,
                          // Populated: a block is made to be written (a large copy, or a
                          // loan), and faulting 4 KiB at a time while writing is several
                          // times slower than allocating the segment's pages at once.
                          ringbuf::SharedRegion::Create(absl::StrCat("shmesh-pool-", options_.node_name), bytes,
                                                        /*populate=*/true));
  auto segment = std::make_unique<Segment>(std::move(region));
  segment->id = next_segment_id_++;
  if (next_segment_id_ == 0) next_segment_id_ = 1;  // ids are nonzero
  segment->size_class = size_class;
  segment->blocks = std::make_unique<Block[]>(count);
  segment->block_count = static_cast<uint32_t>(count);
  segment->free_count = static_cast<uint32_t>(count);
  for (size_t i = 0; i < count; ++i) {
    Block& b = segment->blocks[i];
    b.segment = segment.get();
    b.index = static_cast<uint32_t>(i);
    b.offset = i * block;
    b.capacity = block;
    b.data = segment->region.data() + b.offset;
  }
  // Hand out low offsets first (pop_back).
  for (size_t i = count; i-- > 0;) free_[size_class].push_back(&segment->blocks[i]);
  total_bytes_ += bytes;
  class_blocks_[size_class] += count;
  ++segments_created_;
  Segment* raw = segment.get();
  segments_.emplace(raw->id, std::move(segment));
  return raw;
}

void SendPool::RetireLocked(Segment* segment) {
  std::vector<Block*>& list = free_[segment->size_class];
  list.erase(std::remove_if(list.begin(), list.end(), [&](Block* b) { return b->segment == segment; }), list.end());
  mesh::v1::LinkControl retire;
  retire.mutable_pool_retire()->set_id(segment->id);
  for (auto& [key, peer] : peers_) {
    if (peer->segments.erase(segment->id) > 0 && !peer->link->down()) {
      // Best effort: a peer that misses it keeps a mapping until its link
      // goes (bounded by max_peer_segments on its side).
      (void)peer->link->SendControl(retire);
    }
  }
  total_bytes_ -= segment->region.size();
  class_blocks_[segment->size_class] -= segment->block_count;
  ++segments_retired_;
  segments_.erase(segment->id);  // unmaps and closes
}

bool SendPool::TrimLocked(uint64_t keep) {
  bool any = false;
  for (auto it = segments_.begin(); it != segments_.end() && total_bytes_ > keep;) {
    Segment* s = (it++)->second.get();
    if (s->free_count == s->block_count) {
      RetireLocked(s);
      any = true;
    }
  }
  return any;
}

std::string SendPool::HoldersLocked() const {
  std::vector<std::string> parts;
  for (const auto& [key, peer] : peers_) {
    if (peer->held_bytes > 0) parts.push_back(absl::StrCat(peer->link->peer_name(), " ", peer->held_bytes));
  }
  return absl::StrCat(bytes_in_use_, " bytes in use; held by peers: ",
                      parts.empty() ? "none" : absl::StrJoin(parts, ", "),
                      "; the rest by loans, sends in flight and publisher histories");
}

absl::StatusOr<BlockHandle> SendPool::Allocate(size_t bytes, absl::Time deadline, bool copy) {
  const int size_class = SizeClass(std::max(bytes, kMinBlockBytes));
  const size_t block_bytes = size_t{1} << size_class;
  const size_t segment_bytes = block_bytes * std::max<size_t>(1, kSegmentTargetBytes / block_bytes);
  if (bytes > options_.limit_bytes || segment_bytes > options_.limit_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("a block of ", bytes, " bytes exceeds node ", options_.node_name,
                                                   "'s pool limit (pool.limit_bytes = ", options_.limit_bytes,
                                                   "); raise the limit or send less"));
  }
  absl::MutexLock lock(&mu_);
  bool trimmed_for_room = false;
  bool waited_to_grow = false;
  while (true) {
    std::vector<Block*>& list = free_[size_class];
    const uint64_t working_set =
        copy ? std::max<uint64_t>(2, kCopyWorkingBytes / block_bytes) : WarmBlocks(block_bytes);
    if (list.empty() && !waited_to_grow && class_blocks_[size_class] >= working_set) {
      // Growth patience (above): a release is likely on its way.
      waited_to_grow = true;
      freed_.WaitWithDeadline(&mu_, std::min(deadline, absl::Now() + GrowPatience(block_bytes)));
      continue;
    }
    if (!list.empty()) {
      Block* b = list.back();
      list.pop_back();
      --b->segment->free_count;
      b->in_use = true;
      b->local = true;
      b->holders = 0;
      b->size = bytes;
      // relaxed: published to other threads only through the handle's
      // owner (the handle itself is not shared without synchronization).
      b->local_refs.store(1, std::memory_order_relaxed);
      ++blocks_in_use_;
      bytes_in_use_ += b->capacity;
      return BlockHandle(shared_from_this(), b);
    }
    if (total_bytes_ + segment_bytes <= options_.limit_bytes) {
      SHMESH_RETURN_IF_ERROR(AddSegmentLocked(size_class).status());
      continue;
    }
    // Room held by free segments of other sizes: give it back first.
    if (!trimmed_for_room && TrimLocked(options_.limit_bytes - segment_bytes)) {
      trimmed_for_room = true;
      continue;
    }
    trimmed_for_room = false;
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      const bool waited = deadline != absl::InfinitePast();
      const std::string what = absl::StrCat("node ", options_.node_name, "'s pool is full (", total_bytes_, " of ",
                                            options_.limit_bytes, " bytes; ", HoldersLocked(), ")");
      return waited ? absl::DeadlineExceededError(absl::StrCat(what, " until the deadline"))
                    : absl::ResourceExhaustedError(
                          absl::StrCat(what, "; pass a deadline to wait, drop loans, or raise pool.limit_bytes"));
    }
    freed_.WaitWithDeadline(&mu_, deadline);
  }
}

void SendPool::LocalDone(Block* block) {
  absl::MutexLock lock(&mu_);
  block->local = false;
  MaybeFreeLocked(block);
}

void SendPool::MaybeFreeLocked(Block* block) {
  if (!block->in_use || block->local || block->holders > 0) return;
  block->in_use = false;
  --blocks_in_use_;
  bytes_in_use_ -= block->capacity;
  Segment* segment = block->segment;
  free_[segment->size_class].push_back(block);
  ++segment->free_count;
  freed_.SignalAll();
  // Past retain_bytes, a free segment goes, unless its class would keep no
  // more than its working set free: a stream of large messages must cycle
  // through warm segments, not create and drop one per message.
  if (segment->free_count == segment->block_count && total_bytes_ > options_.retain_bytes &&
      (block->capacity > kMaxWarmClassBytes || free_[segment->size_class].size() > WarmBlocks(block->capacity))) {
    RetireLocked(segment);
  }
}

absl::Status SendPool::SendRef(const std::shared_ptr<Transport>& link, const BlockHandle& handle, uint32_t channel,
                               absl::Time deadline) {
  Block* block = handle.block_;
  if (block == nullptr || handle.pool_.get() != this) {
    return absl::InvalidArgumentError("SendRef: the block is empty or of another pool");
  }
  const uint64_t token = Token(block->segment->id, block->index);
  {
    absl::MutexLock lock(&mu_);
    // Checked under mu_: LinkGone (after MarkDown) takes mu_ too, so a link
    // seen up here gets its holdings released by LinkGone later.
    Peer* peer = nullptr;
    while (true) {
      if (link->down()) return absl::UnavailableError(absl::StrCat("link to '", link->peer_name(), "' is down"));
      // Looked up again after every wait: LinkGone may have dropped it.
      std::unique_ptr<Peer>& slot = peers_[link.get()];
      if (slot == nullptr) {
        slot = std::make_unique<Peer>();
        slot->link = link;
      }
      peer = slot.get();
      if (peer->held_bytes + block->capacity <= options_.peer_quota_bytes) break;
      if (absl::Now() >= deadline) {
        const std::string what =
            absl::StrCat("peer '", link->peer_name(), "' holds ", peer->held_bytes, " bytes of node ",
                         options_.node_name, "'s pool (pool.peer_quota_bytes = ", options_.peer_quota_bytes,
                         ") and has not released them");
        return deadline == absl::InfinitePast()
                   ? absl::ResourceExhaustedError(absl::StrCat(what, "; retry later or pass a deadline to wait"))
                   : absl::DeadlineExceededError(absl::StrCat(what, " by the deadline"));
      }
      freed_.WaitWithDeadline(&mu_, deadline);
    }
    if (!peer->segments.contains(block->segment->id)) {
      // Under mu_, so no other sender can write a reference to this
      // segment on this link before the peer has it.
      mesh::v1::LinkControl msg;
      msg.mutable_pool_segment()->set_id(block->segment->id);
      msg.mutable_pool_segment()->set_size(block->segment->region.size());
      const int fd = block->segment->region.fd();
      SHMESH_RETURN_IF_ERROR(link->SendControl(msg, absl::MakeConstSpan(&fd, 1)));
      peer->segments.insert(block->segment->id);
    }
    if (!peer->held.insert(token).second) {
      return absl::FailedPreconditionError("this block was sent to that peer already and is not released yet");
    }
    peer->held_bytes += block->capacity;
    ++block->holders;
    // Counted now (taken back below if the ring refuses it): no second
    // lock on the path of a send that succeeds.
    ++sent_messages_;
    sent_bytes_ += block->size;
  }
  char prefix[kFrameBaseBytes];
  FrameHeader h;
  h.kind = static_cast<uint8_t>(FrameKind::kPoolRef);
  h.channel = channel;
  EncodeFrameHeader(h, prefix);
  char ref[kPoolRefBytes];
  EncodePoolRef(PoolRef{block->segment->id, block->offset, block->size, token}, ref);
  absl::Status s = link->SendFrame(absl::string_view(prefix, kFrameBaseBytes), absl::string_view(ref, kPoolRefBytes),
                                   deadline);
  if (ABSL_PREDICT_TRUE(s.ok())) return s;
  absl::MutexLock lock(&mu_);
  --sent_messages_;
  sent_bytes_ -= block->size;
  // Not sent: the peer holds nothing new (unless LinkGone took it all).
  auto it = peers_.find(link.get());
  if (it != peers_.end() && it->second->held.erase(token) > 0) {
    it->second->held_bytes -= block->capacity;
    --block->holders;
    MaybeFreeLocked(block);
  }
  return s;
}

void SendPool::OnRelease(const Transport* link, absl::string_view payload) {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(link);
  const size_t n = payload.size() / kReleaseTokenBytes;
  if (it == peers_.end()) {
    bad_releases_ += n;
    return;
  }
  Peer* peer = it->second.get();
  bool any = false;
  for (size_t i = 0; i < n; ++i) {
    const uint64_t token = ReleaseToken(payload, i);
    if (peer->held.erase(token) == 0) {
      ++bad_releases_;
      continue;
    }
    auto seg = segments_.find(static_cast<uint32_t>(token >> 32));
    // A held token's segment and block exist: a segment with a held
    // block is never retired.
    Block* block = &seg->second->blocks[static_cast<uint32_t>(token)];
    peer->held_bytes -= block->capacity;
    --block->holders;
    any = true;
    MaybeFreeLocked(block);
  }
  if (any) freed_.SignalAll();
}

void SendPool::LinkGone(const Transport* link) {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(link);
  if (it == peers_.end()) return;
  std::unique_ptr<Peer> peer = std::move(it->second);
  peers_.erase(it);
  for (uint64_t token : peer->held) {
    Block* block = &segments_.at(static_cast<uint32_t>(token >> 32))->blocks[static_cast<uint32_t>(token)];
    --block->holders;
    MaybeFreeLocked(block);
  }
  freed_.SignalAll();
}

void SendPool::AllLinksGone() {
  std::vector<const Transport*> links;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, peer] : peers_) links.push_back(key);
  }
  for (const Transport* link : links) LinkGone(link);
}

SendPool::Stats SendPool::stats() const {
  absl::MutexLock lock(&mu_);
  Stats s;
  s.segments = static_cast<uint32_t>(segments_.size());
  s.segment_bytes = total_bytes_;
  s.blocks_in_use = blocks_in_use_;
  s.bytes_in_use = bytes_in_use_;
  s.sent_messages = sent_messages_;
  s.sent_bytes = sent_bytes_;
  s.bad_releases = bad_releases_;
  s.segments_created = segments_created_;
  s.segments_retired = segments_retired_;
  for (const auto& [key, peer] : peers_) {
    if (peer->held.empty()) continue;
    s.held_by.push_back({peer->link->peer_name(), peer->held.size(), peer->held_bytes});
  }
  std::sort(s.held_by.begin(), s.held_by.end(), [](const auto& a, const auto& b) { return a.peer < b.peer; });
  return s;
}

}  // namespace pool
}  // namespace mesh
