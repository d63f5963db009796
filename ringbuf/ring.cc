#include "ringbuf/ring.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "ringbuf/internal/os.h"

// Atomic pair labels used in the comments below:
//   [Data]       producer's tail store (Publish)  -> consumer's tail load
//                (RefreshTail). Release/acquire: frame bytes written before
//                the store are visible after the load.
//   [Space]      consumer's head store (Publish)  -> producer's head load
//                (HasSpace). Release/acquire: the consumer's reads of a frame
//                finish before the producer overwrites its bytes.
//   [DataSleep]  Dekker pair: consumer stores consumer_waiting=1, then loads
//                tail; producer stores tail, then loads consumer_waiting.
//   [SpaceSleep] Dekker pair: producer stores producer_waiting=1, then loads
//                head; consumer stores head, then loads producer_waiting.
//   [Close]      closer's fetch_or on `closed` (after its last index store)
//                -> peer's load of `closed`, then a reload of the index.
// The Dekker pairs need seq_cst on all four operations: with release stores
// and acquire loads, each side's load may be satisfied before its own store
// is visible to the other (store-load reordering, e.g. the x86 store
// buffer), both sides miss each other, and a wake-up is lost forever.

namespace ringbuf {
namespace {

constexpr uint64_t kAlignMask = kFrameAlignment - 1;
constexpr uint32_t kKnownClosedBits = kRingProducerClosed | kRingConsumerClosed;

// Copies `n` <= 16 bytes with fixed-size moves (two overlapping ones for
// 8..16 bytes) instead of a memcpy call, whose dispatch costs more than the
// copy at this size: the prefixes written in front of each frame (the mesh's
// 8- or 16-byte envelope header) are this small.
inline void CopyUpTo16(uint8_t* dst, const char* src, size_t n) {
  if (n == 8) {
    std::memcpy(dst, src, 8);  // one 8-byte move: a plain message's envelope
  } else if (n == 16) {
    std::memcpy(dst, src, 16);  // one 16-byte move
  } else if (n >= 8) {
    uint64_t head, tail;
    std::memcpy(&head, src, 8);
    std::memcpy(&tail, src + n - 8, 8);
    std::memcpy(dst, &head, 8);
    std::memcpy(dst + n - 8, &tail, 8);
  } else if (n >= 4) {
    uint32_t head, tail;
    std::memcpy(&head, src, 4);
    std::memcpy(&tail, src + n - 4, 4);
    std::memcpy(dst, &head, 4);
    std::memcpy(dst + n - 4, &tail, 4);
  } else if (n > 0) {
    dst[0] = static_cast<uint8_t>(src[0]);
    dst[n / 2] = static_cast<uint8_t>(src[n / 2]);
    dst[n - 1] = static_cast<uint8_t>(src[n - 1]);
  }
}

// Copies a frame's bytes, `prefix` then `payload`, to `dst` (room for both).
// Plain copies into shared memory: published by the later tail store [Data].
inline void CopyFrame(uint8_t* dst, absl::string_view prefix, absl::string_view payload) {
  if (prefix.size() <= 16) {
    CopyUpTo16(dst, prefix.data(), prefix.size());
  } else {
    std::memcpy(dst, prefix.data(), prefix.size());
  }
  if (!payload.empty()) std::memcpy(dst + prefix.size(), payload.data(), payload.size());
}

// Reads a frame header word exactly once. Relaxed: the peer may rewrite it at
// any moment, so it must be a single load into a local (never re-read); its
// visibility is ordered by the acquire load of tail ([Data]) that made the
// frame available.
uint64_t LoadFrameWord(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_RELAXED);
}

// Relaxed: published by the following tail store ([Data], release).
void StoreFrameWord(uint8_t* p, uint64_t len, uint32_t type) {
  __atomic_store_n(reinterpret_cast<uint64_t*>(p), len | (uint64_t{type} << 32), __ATOMIC_RELAXED);
}

// Reads a plain header field exactly once (the peer may be writing it).
// Relaxed: the fields were written before the region was passed to us, and
// the fd passing syscalls order them; we only need a single untorn read.
template <typename T>
T LoadOnce(const T* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
}

// What a publish found of its peer's sleep: nothing to do, a doorbell to
// ring, or garbage in the waiting flag (the peer corrupted it).
struct PeerWaiter {
  bool ring = false;
  uint32_t garbage = 0;  // the bad flag value; 0 if the flag was valid
};

// The publishing half of both Dekker pairs, shared by the producer (its tail,
// the consumer's flag: [Data] + [DataSleep], P1/P2) and the consumer (its
// head, the producer's flag: [Space] + [SpaceSleep]):
//  1. `index` = value, seq_cst. The release half publishes every byte written
//     (or read, for the consumer) before it. seq_cst, not release: with the
//     load in 2 it is this side's half of the Dekker pair, and a release
//     store may be reordered after a later load.
//  2. load `waiting`, seq_cst: ordered after 1 in the single total order, so
//     if the peer's index check (C2) missed 1, this sees its flag (C1).
//  3. if set, exchange it to 0, relaxed: it only decides which publish rings
//     for this sleep (at most one); it carries no data.
PeerWaiter PublishAndClaimWaiter(std::atomic<uint64_t>& index, uint64_t value,
                                 std::atomic<uint32_t>& waiting) {
  index.store(value, std::memory_order_seq_cst);
  if (waiting.load(std::memory_order_seq_cst) == 0) return {};
  const uint32_t previous = waiting.exchange(0, std::memory_order_relaxed);
  if (previous == 0) return {};
  if (previous != 1) return {false, previous};
  return {true, 0};
}

// Sets `bit` in the shared closed word and wakes the peer through our
// doorbell end `doorbell_fd`.
void MarkClosed(RingHeader* header, uint32_t bit, int doorbell_fd) {
  // [Close] release: the closer's last index store (made before this call)
  // is visible to a peer whose acquire load of `closed` sees the bit.
  header->closed.fetch_or(bit, std::memory_order_release);
  // Always ring (closing is rare): the peer may be asleep, and its sleep
  // protocol does not look at `closed` under the Dekker pair. Best effort:
  // a failure here leaves nothing to undo.
  (void)os_internal::DoorbellRing(doorbell_fd);
}

// True if spinning is pointless because the peer last published from the
// CPU we run on: while we spin there, it cannot run to make progress, so we
// go to sleep at once (and do not let this wait adapt the spin budget).
// Busy-poll was asked for explicitly and is honored regardless.
bool PeerOnMyCpu(const std::atomic<uint32_t>& peer_cpu, const AdaptiveSpin& spin) {
  if (spin.busy_poll() || spin.budget() <= absl::ZeroDuration()) return false;
  // Relaxed: a hint (any value is harmless); see the layout comment.
  const uint32_t peer = peer_cpu.load(std::memory_order_relaxed);
  return peer != 0 && peer == os_internal::CpuHint();
}

}  // namespace

namespace ring_internal {
RingStats StatCounters::Snapshot() const {
  RingStats s;
  // Relaxed: independent counters; a snapshot need not be atomic as a whole.
  s.frames = frames.load(std::memory_order_relaxed);
  s.bytes = bytes.load(std::memory_order_relaxed);
  s.full_events = full_events.load(std::memory_order_relaxed);
  s.sleeps = sleeps.load(std::memory_order_relaxed);
  s.doorbells_rung = doorbells_rung.load(std::memory_order_relaxed);
  return s;
}
}  // namespace ring_internal

using ring_internal::StatCounters;

// ---------------------------------------------------------------- producer

RingProducer::RingProducer(RingHeader* header, uint8_t* data, size_t capacity, int doorbell_fd,
                           const WaitOptions& options)
    : header_(header),
      data_(data),
      capacity_(capacity),
      mask_(capacity - 1),
      max_frame_(MaxFrameSizeForCapacity(capacity)),
      doorbell_fd_(doorbell_fd),
      spin_(options) {
  // Relaxed: our own index, read once at start. Only the producer end writes
  // it, and the previous writer (if any) is ordered before us by the fd
  // passing syscalls. Never re-read: the peer could have changed it.
  const uint64_t tail = header_->tail.load(std::memory_order_relaxed);
  tail_ = published_tail_ = tail;
  // Assume the ring is full until head is read (and validated) for real.
  cached_head_ = tail >= capacity_ ? tail - capacity_ : 0;
  if ((tail & kAlignMask) != 0) {
    status_ = absl::DataLossError(absl::StrCat("ring producer: initial tail ", tail, " is not ",
                                               kFrameAlignment, "-aligned"));
  }
}

void RingProducer::Fail(std::string message) {
  if (absl::IsDataLoss(status_)) return;
  status_ = absl::DataLossError(absl::StrCat("ring producer: ", message));
  reserved_ = false;
  MarkClosed(header_, kRingProducerClosed, doorbell_fd_);
}

bool RingProducer::CheckPeerOpen() {
  // Relaxed: the consumer's bit is only a stop signal; no data is published
  // with it, so there is nothing to acquire.
  const uint32_t closed = header_->closed.load(std::memory_order_relaxed);
  if ((closed & ~kKnownClosedBits) != 0) {
    Fail(absl::StrCat("closed word holds garbage 0x", absl::Hex(closed)));
    return false;
  }
  if ((closed & kRingConsumerClosed) != 0) {
    if (status_.ok()) status_ = absl::FailedPreconditionError("ring closed by the consumer");
    return false;
  }
  return true;
}

uint64_t RingProducer::SpaceNeeded(size_t len) const {
  const uint64_t total = FrameBytes(len);
  const uint64_t contiguous = capacity_ - (tail_ & mask_);
  return contiguous >= total ? total : contiguous + total;
}

bool RingProducer::HasSpace(uint64_t need, std::memory_order order) {
  if (capacity_ - (tail_ - cached_head_) >= need) return true;
  // [Space] acquire (seq_cst when called for [SpaceSleep]): pairs with the
  // consumer's head store in RingConsumer::PublishInternal. Once we see a
  // head, the consumer is done with every byte before it and we may reuse
  // them. Read once, validated before use.
  const uint64_t head = header_->head.load(order);
  if ((head & kAlignMask) != 0) {
    Fail(absl::StrCat("head ", head, " is not ", kFrameAlignment, "-aligned"));
    return false;
  }
  if (head < cached_head_) {
    Fail(absl::StrCat("head moved backwards from ", cached_head_, " to ", head));
    return false;
  }
  if (head > published_tail_) {
    Fail(absl::StrCat("head ", head, " is beyond the published tail ", published_tail_));
    return false;
  }
  cached_head_ = head;
  return capacity_ - (tail_ - cached_head_) >= need;
}

absl::StatusOr<absl::Span<uint8_t>> RingProducer::Reserve(size_t len, absl::Time deadline) {
  if (!status_.ok()) return status_;
  if (len > max_frame_) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame of ", len, " bytes exceeds the ring's ", max_frame_, "-byte maximum"));
  }
  if (!CheckPeerOpen()) return status_;
  reserved_ = false;
  const uint64_t need = SpaceNeeded(len);
  if (!HasSpace(need, std::memory_order_acquire)) {
    if (!status_.ok()) return status_;
    StatCounters::Add(stats_.full_events, 1);
    // The consumer can only free space taken by frames it can see.
    SHMESH_RETURN_IF_ERROR(PublishInternal());
    SHMESH_RETURN_IF_ERROR(WaitForSpaceInternal(need, deadline));
  }
  uint64_t position = tail_;
  const uint64_t contiguous = capacity_ - (tail_ & mask_);
  if (contiguous < FrameBytes(len)) position += contiguous;  // after a padding frame
  reserved_ = true;
  reserved_len_ = len;
  return absl::Span<uint8_t>(data_ + (position & mask_) + kFrameHeaderSize, len);
}

absl::Status RingProducer::CommitInternal(size_t len) {
  if (!status_.ok()) return status_;
  if (!reserved_) return absl::FailedPreconditionError("Commit() without a Reserve()");
  if (len > reserved_len_) {
    return absl::InvalidArgumentError(
        absl::StrCat("Commit(", len, ") exceeds the reserved ", reserved_len_, " bytes"));
  }
  // Same padding decision as Reserve() made for the reserved length.
  const uint64_t contiguous = capacity_ - (tail_ & mask_);
  if (contiguous < FrameBytes(reserved_len_)) {
    StoreFrameWord(data_ + (tail_ & mask_), contiguous - kFrameHeaderSize, kFrameTypePadding);
    tail_ += contiguous;
  }
  StoreFrameWord(data_ + (tail_ & mask_), len, kFrameTypeData);
  tail_ += FrameBytes(len);
  reserved_ = false;
  StatCounters::Add(stats_.frames, 1);
  StatCounters::Add(stats_.bytes, len);
  return absl::OkStatus();
}

absl::Status RingProducer::Commit(size_t len) {
  SHMESH_RETURN_IF_ERROR(CommitInternal(len));
  return PublishInternal();
}

absl::Status RingProducer::CommitNoPublish(size_t len) { return CommitInternal(len); }

absl::Status RingProducer::Publish() {
  if (!status_.ok()) return status_;
  return PublishInternal();
}

absl::Status RingProducer::PublishInternal() {
  if (tail_ == published_tail_) return absl::OkStatus();
  // Relaxed: a scheduling hint for the consumer's spin decision, on the line
  // we are about to write anyway; nothing depends on its ordering.
  header_->producer_cpu.store(os_internal::CpuHint(), std::memory_order_relaxed);
  // [Data] + [DataSleep] (P1, P2): see PublishAndClaimWaiter.
  const PeerWaiter waiter = PublishAndClaimWaiter(header_->tail, tail_, header_->consumer_waiting);
  published_tail_ = tail_;
  if (waiter.garbage != 0) {
    Fail(absl::StrCat("consumer_waiting holds garbage ", waiter.garbage));
    return status_;
  }
  if (!waiter.ring) return absl::OkStatus();
  StatCounters::Add(stats_.doorbells_rung, 1);
  return os_internal::DoorbellRing(doorbell_fd_);
}

absl::Status RingProducer::Write(absl::string_view frame, absl::Time deadline) {
  return WriteInternal(absl::string_view(), frame, deadline);
}

absl::Status RingProducer::Write(absl::string_view prefix, absl::string_view payload,
                                 absl::Time deadline) {
  return WriteInternal(prefix, payload, deadline);
}

absl::Status RingProducer::WriteBatch(absl::Span<const absl::string_view> frames,
                                      absl::Time deadline, size_t* written) {
  return WriteBatchInternal(absl::string_view(), frames, deadline, written);
}

absl::Status RingProducer::WriteBatch(absl::string_view prefix,
                                      absl::Span<const absl::string_view> payloads,
                                      absl::Time deadline, size_t* written) {
  return WriteBatchInternal(prefix, payloads, deadline, written);
}

absl::Status RingProducer::WriteInternal(absl::string_view prefix, absl::string_view payload,
                                         absl::Time deadline) {
  // Both sizes describe memory that exists, so the sum cannot wrap.
  const size_t len = prefix.size() + payload.size();
  SHMESH_ASSIGN_OR_RETURN(absl::Span<uint8_t> span, Reserve(len, deadline));
  CopyFrame(span.data(), prefix, payload);
  return Commit(len);
}

absl::Status RingProducer::WriteBatchInternal(absl::string_view prefix,
                                              absl::Span<const absl::string_view> payloads,
                                              absl::Time deadline, size_t* written) {
  if (written != nullptr) *written = 0;
  // Sticky failure first: an empty batch must not report OK on a failed ring.
  if (!status_.ok()) return status_;
  size_t done = 0;
  absl::Status status;
  // Fast path: the frames that fit now, with the checks Reserve() and
  // Commit() make per frame hoisted out of the loop (status, peer open) or
  // inlined (size, room), and the counters added once. It stops at the
  // first frame that is too large or does not fit (or at a bad head, which
  // fails the endpoint in HasSpace); the loop below then reports or waits
  // exactly as Write() would.
  if (CheckPeerOpen()) {
    reserved_ = false;  // as Reserve(): a batch replaces an uncommitted reservation
    uint64_t bytes = 0;
    for (; done < payloads.size(); ++done) {
      const size_t len = prefix.size() + payloads[done].size();
      if (len > max_frame_) break;
      const uint64_t total = FrameBytes(len);
      const uint64_t contiguous = capacity_ - (tail_ & mask_);
      // As SpaceNeeded(): a padding frame first if this one would wrap.
      const uint64_t need = contiguous >= total ? total : contiguous + total;
      if (!HasSpace(need, std::memory_order_acquire)) break;
      if (contiguous < total) {
        StoreFrameWord(data_ + (tail_ & mask_), contiguous - kFrameHeaderSize, kFrameTypePadding);
        tail_ += contiguous;
      }
      uint8_t* const frame = data_ + (tail_ & mask_);
      CopyFrame(frame + kFrameHeaderSize, prefix, payloads[done]);
      StoreFrameWord(frame, len, kFrameTypeData);
      tail_ += total;
      bytes += len;
    }
    StatCounters::Add(stats_.frames, done);
    StatCounters::Add(stats_.bytes, bytes);
  }
  for (; done < payloads.size() && status_.ok(); ++done) {
    const size_t len = prefix.size() + payloads[done].size();
    absl::StatusOr<absl::Span<uint8_t>> span = Reserve(len, deadline);
    if (!span.ok()) {
      status = span.status();
      break;
    }
    CopyFrame(span->data(), prefix, payloads[done]);
    status = CommitInternal(len);
    if (!status.ok()) break;
  }
  if (status.ok() && !status_.ok()) status = status_;
  absl::Status published = PublishInternal();
  if (status.ok()) status = published;
  if (written != nullptr) *written = done;
  return status;
}

absl::Status RingProducer::WaitForSpace(size_t len, absl::Time deadline) {
  if (!status_.ok()) return status_;
  if (len > max_frame_) {
    return absl::InvalidArgumentError(
        absl::StrCat("frame of ", len, " bytes exceeds the ring's ", max_frame_, "-byte maximum"));
  }
  if (!CheckPeerOpen()) return status_;
  const uint64_t need = SpaceNeeded(len);
  if (HasSpace(need, std::memory_order_acquire) || !status_.ok()) return status_;
  SHMESH_RETURN_IF_ERROR(PublishInternal());
  return WaitForSpaceInternal(need, deadline);
}

absl::Status RingProducer::WaitForSpaceInternal(uint64_t need, absl::Time deadline) {
  auto ready = [this, need] {
    return HasSpace(need, std::memory_order_acquire) || !status_.ok() || !CheckPeerOpen();
  };
  const absl::Time start = absl::Now();
  auto full_error = [&] {
    return absl::ResourceExhaustedError(absl::StrCat("ring full: ", need, " bytes needed, ",
                                                     capacity_ - (tail_ - cached_head_), " free",
                                                     deadline > start ? " at the deadline" : ""));
  };
  if (deadline <= start) return full_error();
  const bool spin = !PeerOnMyCpu(header_->consumer_cpu, spin_);
  if (spin && SpinUntil(ready, spin_.budget(), deadline)) return status_;
  bool slept = false;
  for (;;) {
    if (!PrepareToSleepForSpace(need)) {
      if (slept && spin) spin_.OnSlept(absl::Now() - start, true);
      return status_;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      // Relaxed: withdrawing the request for a doorbell; a late clear only
      // costs one spurious wake-up later, which waiters tolerate.
      header_->producer_waiting.store(0, std::memory_order_relaxed);
      if (slept && spin) spin_.OnSlept(now - start, false);
      return full_error();
    }
    StatCounters::Add(stats_.sleeps, 1);
    absl::StatusOr<bool> readable = os_internal::WaitReadable(doorbell_fd_, deadline - now);
    // Relaxed: as above.
    header_->producer_waiting.store(0, std::memory_order_relaxed);
    slept = true;
    if (!readable.ok()) return readable.status();
    const absl::Status drained = *readable ? os_internal::DoorbellDrain(doorbell_fd_) : absl::OkStatus();
    if (ready()) {
      if (spin) spin_.OnSlept(absl::Now() - start, true);
      return status_;
    }
    // The consumer's end is gone: nobody will make room or ring again, and
    // our end stays readable, so sleeping on it again would spin.
    if (!drained.ok()) return drained;
  }
}

bool RingProducer::PrepareToSleep(size_t len) {
  if (!status_.ok() || len > max_frame_) return false;
  return PrepareToSleepForSpace(SpaceNeeded(len));
}

bool RingProducer::PrepareToSleepForSpace(uint64_t need) {
  if (!status_.ok() || !CheckPeerOpen()) return false;
  if (capacity_ - (tail_ - cached_head_) >= need) return false;
  // [SpaceSleep] seq_cst store, then (in HasSpace) a seq_cst load of head:
  // the producer half of the Dekker pair with the consumer's head store and
  // producer_waiting load in RingConsumer::PublishInternal.
  header_->producer_waiting.store(1, std::memory_order_seq_cst);
  if (HasSpace(need, std::memory_order_seq_cst) || !status_.ok()) {
    // Relaxed: withdrawing the request; see WaitForSpaceInternal.
    header_->producer_waiting.store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

absl::Status RingProducer::DrainDoorbell() { return os_internal::DoorbellDrain(doorbell_fd_); }

void RingProducer::Close() {
  if (closed_) return;
  closed_ = true;
  if (absl::IsDataLoss(status_)) return;  // Fail() already marked and rang.
  reserved_ = false;
  (void)PublishInternal();
  MarkClosed(header_, kRingProducerClosed, doorbell_fd_);
  if (!absl::IsDataLoss(status_)) {
    status_ = absl::FailedPreconditionError("ring producer closed");
  }
}

// ---------------------------------------------------------------- consumer

RingConsumer::RingConsumer(RingHeader* header, uint8_t* data, size_t capacity, int doorbell_fd,
                           const WaitOptions& options)
    : header_(header),
      data_(data),
      capacity_(capacity),
      mask_(capacity - 1),
      max_frame_(MaxFrameSizeForCapacity(capacity)),
      doorbell_fd_(doorbell_fd),
      spin_(options) {
  // Relaxed: our own index, read once at start (see RingProducer's
  // constructor); never re-read.
  const uint64_t head = header_->head.load(std::memory_order_relaxed);
  head_ = published_head_ = cached_tail_ = head;
  if ((head & kAlignMask) != 0) {
    status_ = absl::DataLossError(absl::StrCat("ring consumer: initial head ", head, " is not ",
                                               kFrameAlignment, "-aligned"));
  }
}

void RingConsumer::Fail(std::string message) {
  if (absl::IsDataLoss(status_)) return;
  status_ = absl::DataLossError(absl::StrCat("ring consumer: ", message));
  peeked_ = false;
  MarkClosed(header_, kRingConsumerClosed, doorbell_fd_);
}

bool RingConsumer::RefreshTail(std::memory_order order) {
  // [Data] acquire (seq_cst when called for [DataSleep] C2): pairs with the
  // producer's tail store in RingProducer::PublishInternal; every frame
  // before the loaded tail is then visible. Read once, validated before use.
  const uint64_t tail = header_->tail.load(order);
  if (tail == cached_tail_) return true;
  if ((tail & kAlignMask) != 0) {
    Fail(absl::StrCat("tail ", tail, " is not ", kFrameAlignment, "-aligned"));
    return false;
  }
  if (tail < cached_tail_) {
    Fail(absl::StrCat("tail moved backwards from ", cached_tail_, " to ", tail));
    return false;
  }
  if (tail - head_ > capacity_) {
    Fail(absl::StrCat("tail ", tail, " is more than the capacity ", capacity_, " ahead of head ",
                      head_));
    return false;
  }
  cached_tail_ = tail;
  return true;
}

bool RingConsumer::CheckProducerClosed() {
  // [Close] acquire: pairs with the producer's release fetch_or in
  // MarkClosed, so the reload of tail below sees its final tail.
  const uint32_t closed = header_->closed.load(std::memory_order_acquire);
  if ((closed & ~kKnownClosedBits) != 0) {
    Fail(absl::StrCat("closed word holds garbage 0x", absl::Hex(closed)));
    return true;
  }
  if ((closed & kRingProducerClosed) == 0) return false;
  if (!RefreshTail(std::memory_order_acquire)) return true;
  if (head_ != cached_tail_) return false;  // frames left to read first
  if (status_.ok()) status_ = absl::OutOfRangeError("ring closed by the producer: end of stream");
  return true;
}

bool RingConsumer::Ready(std::memory_order order) {
  if (!status_.ok() || peeked_ || head_ != cached_tail_) return true;
  if (!RefreshTail(order)) return true;
  if (head_ != cached_tail_) return true;
  return CheckProducerClosed();
}

absl::StatusOr<std::optional<absl::Span<const uint8_t>>> RingConsumer::Peek() {
  if (!status_.ok()) return status_;
  if (!peeked_) {
    switch (PeekInternal()) {
      case PeekResult::kFrame:
        break;
      case PeekResult::kEmpty:
        return std::optional<absl::Span<const uint8_t>>();
      case PeekResult::kFailed:
        return status_;
    }
  }
  return absl::Span<const uint8_t>(data_ + peek_offset_, peek_len_);
}

RingConsumer::PeekResult RingConsumer::PeekInternal() {
  // Each pass either returns or skips one padding frame, which consumes at
  // least 8 of the (at most capacity) available bytes: the loop is bounded.
  for (;;) {
    if (head_ == cached_tail_) {
      if (!RefreshTail(std::memory_order_acquire)) return PeekResult::kFailed;
      if (head_ == cached_tail_) {
        if (!CheckProducerClosed()) {
          if (head_ == cached_tail_) return PeekResult::kEmpty;
          continue;  // closed, but frames are left
        }
        return PeekResult::kFailed;
      }
    }
    const uint64_t available = cached_tail_ - head_;  // in (0, capacity], 8-aligned
    const uint64_t offset = head_ & mask_;
    const uint64_t contiguous = capacity_ - offset;  // >= 8
    const uint64_t word = LoadFrameWord(data_ + offset);
    const uint64_t len = word & 0xffffffffu;
    const uint32_t type = static_cast<uint32_t>(word >> 32);
    if (type == kFrameTypePadding) {
      if (len != contiguous - kFrameHeaderSize) {
        Fail(absl::StrCat("padding frame at ", head_, " has length ", len, ", expected ",
                          contiguous - kFrameHeaderSize));
        return PeekResult::kFailed;
      }
      if (contiguous > available) {
        Fail(absl::StrCat("padding frame at ", head_, " runs past tail ", cached_tail_));
        return PeekResult::kFailed;
      }
      head_ += contiguous;
      continue;
    }
    if (type != kFrameTypeData) {
      Fail(absl::StrCat("unknown frame type 0x", absl::Hex(type), " at ", head_));
      return PeekResult::kFailed;
    }
    if (len > max_frame_) {
      Fail(absl::StrCat("frame at ", head_, " claims ", len, " bytes, over the ", max_frame_,
                        "-byte maximum"));
      return PeekResult::kFailed;
    }
    const uint64_t total = FrameBytes(len);
    if (total > available) {
      Fail(absl::StrCat("frame of ", len, " bytes at ", head_, " runs past tail ", cached_tail_));
      return PeekResult::kFailed;
    }
    if (total > contiguous) {
      Fail(absl::StrCat("frame of ", len, " bytes at ", head_, " crosses the end of the buffer"));
      return PeekResult::kFailed;
    }
    peeked_ = true;
    peek_offset_ = offset + kFrameHeaderSize;
    peek_len_ = len;
    peek_total_ = total;
    return PeekResult::kFrame;
  }
}

absl::Status RingConsumer::ReleaseNoPublish() {
  if (!status_.ok()) return status_;
  if (!peeked_) return absl::FailedPreconditionError("Release() without a peeked frame");
  head_ += peek_total_;
  peeked_ = false;
  StatCounters::Add(stats_.frames, 1);
  StatCounters::Add(stats_.bytes, peek_len_);
  return absl::OkStatus();
}

absl::Status RingConsumer::Release() {
  SHMESH_RETURN_IF_ERROR(ReleaseNoPublish());
  return PublishInternal();
}

absl::Status RingConsumer::Publish() {
  if (!status_.ok()) return status_;
  return PublishInternal();
}

absl::Status RingConsumer::PublishInternal() {
  if (head_ == published_head_) return absl::OkStatus();
  // Relaxed: a scheduling hint for the producer's spin decision; see
  // RingProducer::PublishInternal.
  header_->consumer_cpu.store(os_internal::CpuHint(), std::memory_order_relaxed);
  // [Space] + [SpaceSleep]: the consumer half of the Dekker pair with
  // RingProducer::PrepareToSleepForSpace; see PublishAndClaimWaiter.
  const PeerWaiter waiter = PublishAndClaimWaiter(header_->head, head_, header_->producer_waiting);
  published_head_ = head_;
  if (waiter.garbage != 0) {
    Fail(absl::StrCat("producer_waiting holds garbage ", waiter.garbage));
    return status_;
  }
  if (!waiter.ring) return absl::OkStatus();
  StatCounters::Add(stats_.doorbells_rung, 1);
  return os_internal::DoorbellRing(doorbell_fd_);
}

absl::StatusOr<std::optional<std::string>> RingConsumer::TryRead() {
  SHMESH_ASSIGN_OR_RETURN(std::optional<absl::Span<const uint8_t>> frame, Peek());
  if (!frame.has_value()) return std::optional<std::string>();
  std::string out(reinterpret_cast<const char*>(frame->data()), frame->size());
  SHMESH_RETURN_IF_ERROR(Release());
  return std::optional<std::string>(std::move(out));
}

absl::StatusOr<std::string> RingConsumer::Read(absl::Time deadline) {
  for (;;) {
    SHMESH_RETURN_IF_ERROR(Wait(deadline));
    SHMESH_ASSIGN_OR_RETURN(std::optional<std::string> frame, TryRead());
    if (frame.has_value()) return std::move(*frame);
    // Only padding was available; wait again (bounded by the deadline).
  }
}

absl::StatusOr<size_t> RingConsumer::Drain(size_t max_frames,
                                           absl::FunctionRef<void(absl::Span<const uint8_t>)> fn) {
  return DrainWhile(max_frames, [&](absl::Span<const uint8_t> frame) {
    fn(frame);
    return true;
  });
}

absl::StatusOr<size_t> RingConsumer::DrainWhile(size_t max_frames,
                                                absl::FunctionRef<bool(absl::Span<const uint8_t>)> fn) {
  // Sticky failure first: Drain(0, ...) must not report OK on a failed ring.
  if (!status_.ok()) return status_;
  size_t n = 0;
  uint64_t bytes = 0;
  while (n < max_frames) {
    // A frame peeked earlier (Peek() without Release()) comes first.
    if (!peeked_) {
      const PeekResult next = PeekInternal();
      if (next == PeekResult::kEmpty) break;
      if (next == PeekResult::kFailed) {
        if (n == 0) return status_;
        break;  // the sticky error comes with the next call
      }
    }
    // Refused: the frame stays peeked (consumed by a later call).
    if (!fn(absl::Span<const uint8_t>(data_ + peek_offset_, peek_len_))) break;
    head_ += peek_total_;
    peeked_ = false;
    bytes += peek_len_;
    ++n;
  }
  // Once per batch: the counters have one writer (this thread).
  StatCounters::Add(stats_.frames, n);
  StatCounters::Add(stats_.bytes, bytes);
  absl::Status published = PublishInternal();
  if (!published.ok() && n == 0) return published;
  return n;
}

absl::Status RingConsumer::Wait(absl::Time deadline) {
  if (Ready(std::memory_order_acquire)) return status_;
  const absl::Time start = absl::Now();
  const bool spin = !PeerOnMyCpu(header_->producer_cpu, spin_);
  if (spin &&
      SpinUntil([this] { return Ready(std::memory_order_acquire); }, spin_.budget(), deadline)) {
    return status_;
  }
  bool slept = false;
  for (;;) {
    if (!PrepareToSleep()) {
      if (slept && spin) spin_.OnSlept(absl::Now() - start, true);
      return status_;
    }
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      // Relaxed: withdrawing the request for a doorbell; a late clear only
      // costs one spurious wake-up later, which waiters tolerate.
      header_->consumer_waiting.store(0, std::memory_order_relaxed);
      if (slept && spin) spin_.OnSlept(now - start, false);
      return absl::DeadlineExceededError("no frame arrived before the deadline");
    }
    StatCounters::Add(stats_.sleeps, 1);
    absl::StatusOr<bool> readable = os_internal::WaitReadable(doorbell_fd_, deadline - now);
    // Relaxed: as above.
    header_->consumer_waiting.store(0, std::memory_order_relaxed);
    slept = true;
    if (!readable.ok()) return readable.status();
    const absl::Status drained = *readable ? os_internal::DoorbellDrain(doorbell_fd_) : absl::OkStatus();
    // A doorbell without data (spam, or a stale ring) just loops back to
    // sleep: no spinning, no busy loop.
    if (Ready(std::memory_order_acquire)) {
      if (spin) spin_.OnSlept(absl::Now() - start, true);
      return status_;
    }
    // The producer's end is gone (its process exited without closing the
    // ring): nothing more will come, and our end stays readable.
    if (!drained.ok()) return drained;
  }
}

bool RingConsumer::PrepareToSleep() {
  if (Ready(std::memory_order_acquire)) return false;
  // [DataSleep] C1 seq_cst store, then C2 a seq_cst reload of tail (in
  // Ready -> RefreshTail): the consumer half of the Dekker pair with the
  // producer's tail store and consumer_waiting load in PublishInternal.
  header_->consumer_waiting.store(1, std::memory_order_seq_cst);
  if (Ready(std::memory_order_seq_cst)) {
    // Relaxed: withdrawing the request; see Wait.
    header_->consumer_waiting.store(0, std::memory_order_relaxed);
    return false;
  }
  return true;
}

void RingConsumer::CancelSleep() {
  // Relaxed: withdrawing the request for a doorbell, as in Wait; a producer
  // that already claimed it rings once more, which sleepers tolerate.
  header_->consumer_waiting.store(0, std::memory_order_relaxed);
}

absl::Status RingConsumer::DrainDoorbell() { return os_internal::DoorbellDrain(doorbell_fd_); }

void RingConsumer::Close() {
  if (closed_) return;
  closed_ = true;
  if (absl::IsDataLoss(status_)) return;  // Fail() already marked and rang.
  peeked_ = false;
  (void)PublishInternal();
  MarkClosed(header_, kRingConsumerClosed, doorbell_fd_);
  if (!absl::IsDataLoss(status_)) status_ = absl::FailedPreconditionError("ring consumer closed");
}

// -------------------------------------------------------------------- ring

Ring::Ring(SharedRegion region, base::UniqueFd producer_doorbell,
           base::UniqueFd consumer_doorbell, size_t capacity, const WaitOptions& options)
    : region_(std::move(region)),
      producer_doorbell_(std::move(producer_doorbell)),
      consumer_doorbell_(std::move(consumer_doorbell)),
      capacity_(capacity) {
  auto* header = reinterpret_cast<RingHeader*>(region_.data());
  uint8_t* data = region_.data() + kRingHeaderSize;
  producer_.reset(new RingProducer(header, data, capacity_, producer_doorbell_.get(), options));
  consumer_.reset(new RingConsumer(header, data, capacity_, consumer_doorbell_.get(), options));
}

void Ring::DropConsumerDoorbell() {
  consumer_->doorbell_fd_ = -1;
  consumer_doorbell_.reset();
}

uint64_t Ring::QueuedBytes() const {
  const auto* header = reinterpret_cast<const RingHeader*>(region_.data());
  // relaxed: a statistic. The two loads are not a consistent snapshot, and
  // need not be: the result only feeds topology reports, and is clamped.
  const uint64_t tail = header->tail.load(std::memory_order_relaxed);
  const uint64_t head = header->head.load(std::memory_order_relaxed);
  if (tail <= head) return 0;
  return std::min<uint64_t>(tail - head, capacity_);
}

void Ring::BeatConsumerHeartbeat() {
  auto* header = reinterpret_cast<RingHeader*>(region_.data());
  // relaxed: the counter publishes no other memory; the reader only asks
  // whether it changed. One writer (the consumer's process), so a load +
  // store is enough and avoids a locked read-modify-write.
  header->consumer_heartbeat.store(header->consumer_heartbeat.load(std::memory_order_relaxed) + 1,
                                   std::memory_order_relaxed);
}

uint32_t Ring::ConsumerHeartbeat() const {
  const auto* header = reinterpret_cast<const RingHeader*>(region_.data());
  // relaxed: see BeatConsumerHeartbeat.
  return header->consumer_heartbeat.load(std::memory_order_relaxed);
}

Ring::Ring(Ring&&) noexcept = default;
Ring& Ring::operator=(Ring&&) noexcept = default;
Ring::~Ring() = default;

absl::StatusOr<Ring> Ring::Create(size_t capacity, const WaitOptions& options) {
  if (!IsValidRingCapacity(capacity)) {
    return absl::InvalidArgumentError(absl::StrCat("ring capacity ", capacity,
                                                   " is not a power of two in [", kMinRingCapacity,
                                                   ", ", kMaxRingCapacity, "]"));
  }
  SHMESH_ASSIGN_OR_RETURN(SharedRegion region,
                          SharedRegion::Create("shmesh-ring", RingRegionSize(capacity)));
  // The memfd is zero-filled; construct the header in place (no other
  // process can see the region yet).
  auto* header = new (region.data()) RingHeader();
  header->magic = kRingMagic;
  header->version = kRingVersion;
  header->header_size = kRingHeaderSize;
  header->capacity = capacity;
  SHMESH_ASSIGN_OR_RETURN(os_internal::DoorbellPair doorbell, os_internal::DoorbellPairCreate());
  return Ring(std::move(region), std::move(doorbell.producer_end), std::move(doorbell.consumer_end),
              capacity, options);
}

absl::StatusOr<Ring> Ring::Attach(SharedRegion region, base::UniqueFd doorbell, RingEnd end,
                                  const WaitOptions& options) {
  if (region.size() < kRingHeaderSize + kMinRingCapacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("ring region of ", region.size(), " bytes is too small for a ring"));
  }
  const auto* header = reinterpret_cast<const RingHeader*>(region.data());
  const uint64_t magic = LoadOnce(&header->magic);
  const uint32_t version = LoadOnce(&header->version);
  const uint32_t header_size = LoadOnce(&header->header_size);
  const uint64_t capacity = LoadOnce(&header->capacity);
  if (magic != kRingMagic) {
    return absl::InvalidArgumentError(absl::StrCat("ring header has magic 0x", absl::Hex(magic),
                                                   ", expected 0x", absl::Hex(kRingMagic)));
  }
  if (version != kRingVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("ring header has version ", version, ", expected ", kRingVersion));
  }
  if (header_size != kRingHeaderSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("ring header size is ", header_size, ", expected ", kRingHeaderSize));
  }
  if (!IsValidRingCapacity(capacity)) {
    return absl::InvalidArgumentError(absl::StrCat("ring header capacity ", capacity,
                                                   " is not a power of two in [", kMinRingCapacity,
                                                   ", ", kMaxRingCapacity, "]"));
  }
  if (RingRegionSize(capacity) != region.size()) {
    return absl::InvalidArgumentError(absl::StrCat("ring header capacity ", capacity, " needs ",
                                                   RingRegionSize(capacity),
                                                   " bytes, the region has ", region.size()));
  }
  if (!doorbell.valid()) return absl::InvalidArgumentError("ring doorbell fd missing");
  SHMESH_RETURN_IF_ERROR(os_internal::CheckDoorbell(doorbell.get()));
  if (end == RingEnd::kProducer) {
    return Ring(std::move(region), std::move(doorbell), base::UniqueFd(), capacity, options);
  }
  return Ring(std::move(region), base::UniqueFd(), std::move(doorbell), capacity, options);
}

}  // namespace ringbuf
