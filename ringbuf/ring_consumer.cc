// RingConsumer: the reading end of the SPSC ring (ring.h). The atomic pair
// labels ([Data], [Space], [DataSleep], [SpaceSleep], [Close]) are defined
// in internal/ring_shared.h.
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "ringbuf/internal/os.h"
#include "ringbuf/internal/ring_shared.h"
#include "ringbuf/ring.h"

namespace ringbuf {
namespace {

// Reads a frame header word exactly once. Relaxed: the peer may rewrite it at
// any moment, so it must be a single load into a local (never re-read); its
// visibility is ordered by the acquire load of tail ([Data]) that made the
// frame available.
uint64_t LoadFrameWord(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_RELAXED);
}

}  // namespace

using ring_internal::StatCounters;

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

}  // namespace ringbuf
