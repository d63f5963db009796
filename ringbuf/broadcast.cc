#include "ringbuf/broadcast.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "ringbuf/internal/os.h"
#include "ringbuf/wait.h"

namespace ringbuf {
namespace {

// How a producer waits for room: pauses for kPauseNs, then yields until
// kYieldNs, then naps kNap at a time (a consumer that is this slow is
// asleep or stopped; the deadline decides).
constexpr absl::Duration kPause = absl::Microseconds(5);
constexpr absl::Duration kYield = absl::Microseconds(50);
constexpr absl::Duration kNap = absl::Microseconds(50);

absl::Status CheckCapacity(size_t capacity, absl::string_view what) {
  if (!IsValidRingCapacity(capacity)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": capacity ", capacity, " is not a power of two from ",
                                                   kMinRingCapacity, " to ", kMaxRingCapacity));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BroadcastProducer> BroadcastProducer::Create(absl::string_view debug_name,
                                                            const BroadcastOptions& options) {
  SHMESH_RETURN_IF_ERROR(CheckCapacity(options.capacity, "BroadcastProducer::Create"));
  if (options.max_consumers == 0) return absl::InvalidArgumentError("BroadcastProducer::Create: max_consumers is 0");
  SHMESH_ASSIGN_OR_RETURN(SharedRegion region,
                          SharedRegion::CreateWriterOnly(std::string_view(debug_name.data(), debug_name.size()),
                                                                       kBroadcastHeaderSize + options.capacity));
  // The memfd is zero-filled; the header object is made once, here.
  auto* h = new (region.data()) BroadcastHeader;
  h->magic = kBroadcastMagic;
  h->version = kBroadcastVersion;
  h->header_size = kBroadcastHeaderSize;
  h->capacity = options.capacity;
  return BroadcastProducer(std::move(region), options);
}

BroadcastProducer::BroadcastProducer(SharedRegion region, const BroadcastOptions& options)
    : region_(std::move(region)),
      capacity_(options.capacity),
      max_consumers_(options.max_consumers),
      history_frames_(options.history_frames) {}

BroadcastProducer::BroadcastProducer(BroadcastProducer&& other) noexcept
    : region_(std::move(other.region_)),
      capacity_(other.capacity_),
      max_consumers_(other.max_consumers_),
      history_frames_(other.history_frames_),
      tail_(other.tail_),
      floor_(other.floor_),
      history_(std::move(other.history_)),
      consumers_(std::move(other.consumers_)),
      next_id_(other.next_id_) {
  other.consumers_.clear();
}

BroadcastProducer::~BroadcastProducer() {
  if (region_.data() == nullptr) return;  // moved from
  // release: a consumer that sees `closed` sees every frame published
  // before it (the tail stores came first).
  header()->closed.store(1, std::memory_order_release);
  for (Consumer& c : consumers_) (void)os_internal::DoorbellRing(c.doorbell.get());
}

uint64_t BroadcastProducer::history_start() const { return history_.empty() ? tail_ : history_.front(); }

absl::StatusOr<BroadcastProducer::NewConsumer> BroadcastProducer::AddConsumer(uint64_t start) {
  if (consumers_.size() >= max_consumers_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("broadcast ring: ", max_consumers_, " consumers attached already (max_consumers)"));
  }
  const bool at_tail = start == tail_;
  if (!at_tail && std::find(history_.begin(), history_.end(), start) == history_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("broadcast ring: start ", start,
                                                   " is neither the tail (", tail_,
                                                   ") nor the start of a frame of the history"));
  }
  SHMESH_ASSIGN_OR_RETURN(SharedRegion page, SharedRegion::Create("shmesh-broadcast-cursor", kBroadcastCursorBytes));
  // The memfd is zero-filled; the cursor object is made once, here, before
  // the consumer has the page.
  auto* cursor = new (page.data()) BroadcastCursor;
  cursor->head.store(start, std::memory_order_relaxed);
  SHMESH_ASSIGN_OR_RETURN(os_internal::DoorbellPair doorbell, os_internal::DoorbellPairCreate());
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd page_fd, os_internal::Dup(page.fd()));
  const uint32_t id = next_id_++;
  consumers_.push_back(Consumer{id, std::move(page), cursor, std::move(doorbell.producer_end), start});
  floor_ = std::min(floor_, start);
  return NewConsumer{id, start, std::move(page_fd), std::move(doorbell.consumer_end)};
}

void BroadcastProducer::Detach(uint32_t id) {
  auto it = std::find_if(consumers_.begin(), consumers_.end(), [id](const Consumer& c) { return c.id == id; });
  if (it != consumers_.end()) consumers_.erase(it);
}

void BroadcastProducer::Evict(size_t index, std::string why, std::vector<BroadcastEviction>* evicted) {
  Consumer& c = consumers_[index];
  // release: the consumer that sees the flag sees nothing else of ours it
  // needs; it is the order of this store before the doorbell that matters
  // (a sleeping consumer wakes and looks).
  c.cursor->evicted.store(1, std::memory_order_release);
  (void)os_internal::DoorbellRing(c.doorbell.get());
  if (evicted != nullptr) evicted->push_back(BroadcastEviction{c.id, std::move(why)});
  consumers_.erase(consumers_.begin() + static_cast<std::ptrdiff_t>(index));
}

uint64_t BroadcastProducer::RefreshFloor(std::vector<BroadcastEviction>* evicted) {
  uint64_t low = tail_;
  for (size_t i = 0; i < consumers_.size();) {
    Consumer& c = consumers_[i];
    // acquire: pairs with the consumer's release store of its head: it has
    // finished reading everything below it, so we may overwrite it.
    const uint64_t head = c.cursor->head.load(std::memory_order_acquire);
    if (head % kFrameAlignment != 0 || head < c.head || head > tail_) {
      Evict(i,
            absl::StrCat("its cursor page says it read up to byte ", head, ", impossible after ", c.head,
                         " with ", tail_, " published"),
            evicted);
      continue;
    }
    c.head = head;
    low = std::min(low, head);
    ++i;
  }
  floor_ = low;
  return low;
}

absl::Status BroadcastProducer::Write(absl::string_view prefix, absl::string_view payload, absl::Time deadline,
                                      std::vector<BroadcastEviction>* evicted,
                                      const std::function<bool(uint32_t id)>& give_up) {
  const size_t length = prefix.size() + payload.size();
  if (length > MaxFrameSize()) {
    return absl::InvalidArgumentError(
        absl::StrCat("broadcast frame of ", length, " bytes exceeds the maximum of ", MaxFrameSize()));
  }
  const uint64_t bytes = FrameBytes(length);
  const uint64_t offset = tail_ & (capacity_ - 1);
  const uint64_t padding = capacity_ - offset < bytes ? capacity_ - offset : 0;
  const uint64_t start = tail_ + padding;
  const uint64_t end = start + bytes;
  if (end - floor_ > capacity_) {
    uint64_t floor = RefreshFloor(evicted);
    const absl::Time waited_from = absl::Now();
    while (end - floor > capacity_) {
      const absl::Time now = absl::Now();
      if (now >= deadline) {
        for (size_t i = 0; i < consumers_.size();) {
          if (end - consumers_[i].head > capacity_) {
            Evict(i,
                  absl::StrCat("it held the ring's room past the write's deadline (it had read ",
                               consumers_[i].head, " of ", tail_, " bytes published)"),
                  evicted);
          } else {
            ++i;
          }
        }
        floor = RefreshFloor(evicted);
        break;
      }
      if (now - waited_from < kPause) {
        CpuRelax();
      } else if (now - waited_from < kYield) {
        std::this_thread::yield();
      } else {
        if (give_up) {
          for (size_t i = 0; i < consumers_.size();) {
            if (end - consumers_[i].head > capacity_ && give_up(consumers_[i].id)) {
              Evict(i, "its owner gave up on it while it held the room", evicted);
            } else {
              ++i;
            }
          }
        }
        absl::SleepFor(std::min(kNap, deadline - now));
      }
      floor = RefreshFloor(evicted);
    }
  }
  // The history keeps only frames this write leaves intact.
  while (!history_.empty() && history_.front() + capacity_ < end) history_.pop_front();
  uint8_t* d = data();
  // Announce the bytes we are about to overwrite before touching them:
  // relaxed store, then a release fence, orders it before the data stores
  // below; a consumer reads the frame, then (acquire fence) this, and so
  // sees it if it saw any byte we wrote (the seqlock pattern).
  header()->reserved_end.store(end, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  if (padding != 0) {
    const uint64_t word = (padding - kFrameHeaderSize) | (uint64_t{kFrameTypePadding} << 32);
    std::memcpy(d + offset, &word, sizeof(word));
  }
  uint8_t* frame = d + (start & (capacity_ - 1));
  const uint64_t word = length | (uint64_t{kFrameTypeData} << 32);
  std::memcpy(frame, &word, sizeof(word));
  if (!prefix.empty()) std::memcpy(frame + kFrameHeaderSize, prefix.data(), prefix.size());
  if (!payload.empty()) std::memcpy(frame + kFrameHeaderSize + prefix.size(), payload.data(), payload.size());
  if (history_frames_ > 0) {
    history_.push_back(start);
    if (history_.size() > history_frames_) history_.pop_front();
  }
  tail_ = end;
  // seq_cst: the producer half of the Dekker pair with each consumer's
  // PrepareToSleep (tail store, then load its waiting flag; see ring.h).
  // It also releases the frame to consumers' acquire load of the tail.
  header()->tail.store(end, std::memory_order_seq_cst);
  for (Consumer& c : consumers_) {
    if (c.cursor->waiting.load(std::memory_order_seq_cst) == 0) continue;
    // relaxed: decides only who rings for this sleep; carries no data.
    if (c.cursor->waiting.exchange(0, std::memory_order_relaxed) != 0) (void)os_internal::DoorbellRing(c.doorbell.get());
  }
  return absl::OkStatus();
}

absl::StatusOr<BroadcastConsumer> BroadcastConsumer::Open(base::UniqueFd region_fd, base::UniqueFd cursor_fd,
                                                          base::UniqueFd doorbell_fd, size_t capacity, uint64_t start) {
  SHMESH_RETURN_IF_ERROR(CheckCapacity(capacity, "BroadcastConsumer::Open"));
  if (start % kFrameAlignment != 0) {
    return absl::InvalidArgumentError(absl::StrCat("BroadcastConsumer::Open: start ", start, " is not 8-aligned"));
  }
  SHMESH_ASSIGN_OR_RETURN(SharedRegion region,
                          SharedRegion::MapWriterOnly(std::move(region_fd), kBroadcastHeaderSize + capacity));
  const auto* h = reinterpret_cast<const BroadcastHeader*>(region.data());
  // Read once; the producer wrote them before it handed the fd over.
  const uint64_t magic = h->magic;
  const uint32_t version = h->version;
  const uint32_t header_size = h->header_size;
  const uint64_t claimed = h->capacity;
  if (magic != kBroadcastMagic || version != kBroadcastVersion || header_size != kBroadcastHeaderSize ||
      claimed != capacity) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BroadcastConsumer::Open: not a broadcast ring of ", capacity, " bytes (magic ", absl::Hex(magic),
        ", version ", version, ", header ", header_size, " bytes, capacity ", claimed, ")"));
  }
  SHMESH_RETURN_IF_ERROR(os_internal::CheckDoorbell(doorbell_fd.get()));
  SHMESH_ASSIGN_OR_RETURN(SharedRegion page, SharedRegion::Map(std::move(cursor_fd), kBroadcastCursorBytes));
  return BroadcastConsumer(std::move(region), std::move(page), std::move(doorbell_fd), capacity, start);
}

BroadcastConsumer::BroadcastConsumer(SharedRegion region, SharedRegion page, base::UniqueFd doorbell,
                                     size_t capacity, uint64_t start)
    : region_(std::move(region)),
      page_(std::move(page)),
      doorbell_(std::move(doorbell)),
      capacity_(capacity),
      head_(start),
      frame_(MaxFrameSizeForCapacity(capacity)) {}

absl::Status BroadcastConsumer::Fail(absl::Status status) {
  status_ = std::move(status);
  return status_;
}

bool BroadcastConsumer::Lapped() const {
  // acquire fence: orders our reads of the frame before the load below; if
  // they saw any byte of a later write, this sees its reserved_end.
  std::atomic_thread_fence(std::memory_order_acquire);
  return header()->reserved_end.load(std::memory_order_relaxed) > head_ + capacity_;
}

absl::StatusOr<size_t> BroadcastConsumer::Drain(size_t max_frames,
                                                absl::FunctionRef<bool(absl::Span<const uint8_t>)> fn) {
  if (!status_.ok()) return status_;
  const auto lost = [this](absl::string_view what) {
    return Fail(absl::DataLossError(absl::StrCat("broadcast ring: ", what, "; frames from byte ", head_,
                                                 " on are lost to this consumer")));
  };
  // acquire: pairs with the producer's release store of the flag.
  if (cursor()->evicted.load(std::memory_order_acquire) != 0) {
    return lost("the producer evicted this consumer (it held the room past a write's deadline)");
  }
  const auto corrupt = [&](absl::string_view what) {
    if (Lapped()) return lost("the producer overwrote frames this consumer had not read");
    return Fail(absl::DataLossError(absl::StrCat("broadcast ring is corrupt: ", what, " at byte ", head_)));
  };
  // acquire: pairs with the producer's tail store; frames below it are whole.
  const uint64_t tail = header()->tail.load(std::memory_order_acquire);
  if (tail < head_ || tail - head_ > capacity_ || tail % kFrameAlignment != 0) {
    return corrupt(absl::StrCat("tail ", tail));
  }
  const uint8_t* d = data();
  const uint64_t start_head = head_;
  size_t n = 0;
  while (n < max_frames && head_ < tail) {
    const uint64_t offset = head_ & (capacity_ - 1);
    uint64_t word = 0;
    std::memcpy(&word, d + offset, sizeof(word));
    const uint32_t length = static_cast<uint32_t>(word);
    const uint32_t type = static_cast<uint32_t>(word >> 32);
    if (type == kFrameTypePadding) {
      if (length != capacity_ - offset - kFrameHeaderSize || head_ + (capacity_ - offset) > tail) {
        return corrupt(absl::StrCat("a padding frame of ", length, " bytes"));
      }
      if (Lapped()) return lost("the producer overwrote frames this consumer had not read");
      head_ += capacity_ - offset;
      continue;
    }
    const uint64_t bytes = FrameBytes(length);
    if (type != kFrameTypeData || length > MaxFrameSizeForCapacity(capacity_) || offset + bytes > capacity_ ||
        head_ + bytes > tail) {
      return corrupt(absl::StrCat("a frame of type ", absl::Hex(type), " and ", length, " bytes"));
    }
    std::memcpy(frame_.data(), d + offset + kFrameHeaderSize, length);
    if (Lapped()) return lost("the producer overwrote frames this consumer had not read");
    if (!fn(absl::MakeConstSpan(frame_.data(), length))) break;
    head_ += bytes;
    ++n;
  }
  // release: the producer may overwrite what is below it once it sees it.
  if (head_ != start_head) cursor()->head.store(head_, std::memory_order_release);
  // acquire: the producer's last tail store came before its closed store.
  if (n == 0 && head_ == tail && header()->closed.load(std::memory_order_acquire) != 0 &&
      header()->tail.load(std::memory_order_acquire) == head_) {
    return absl::OutOfRangeError("broadcast ring: the producer is gone and every frame was read");
  }
  return n;
}

bool BroadcastConsumer::PrepareToSleep() {
  // seq_cst: the consumer half of the Dekker pair (flag store, then tail
  // load), as RingConsumer::PrepareToSleep.
  cursor()->waiting.store(1, std::memory_order_seq_cst);
  const uint64_t tail = header()->tail.load(std::memory_order_seq_cst);
  // acquire: as in Drain.
  if (tail != head_ || cursor()->evicted.load(std::memory_order_acquire) != 0 ||
      header()->closed.load(std::memory_order_acquire) != 0 || !status_.ok()) {
    // relaxed: only withdraws the request; a spurious ring costs a wake-up.
    cursor()->waiting.store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

absl::Status BroadcastConsumer::ClearDoorbell() { return os_internal::DoorbellDrain(doorbell_.get()); }

}  // namespace ringbuf
