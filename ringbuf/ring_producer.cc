// RingProducer: the writing end of the SPSC ring (ring.h). The atomic pair
// labels ([Data], [Space], [DataSleep], [SpaceSleep], [Close]) are defined
// in internal/ring_shared.h.
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "ringbuf/internal/os.h"
#include "ringbuf/internal/ring_shared.h"
#include "ringbuf/ring.h"

namespace ringbuf {
namespace {

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

// Relaxed: published by the following tail store ([Data], release).
void StoreFrameWord(uint8_t* p, uint64_t len, uint32_t type) {
  __atomic_store_n(reinterpret_cast<uint64_t*>(p), len | (uint64_t{type} << 32), __ATOMIC_RELAXED);
}

}  // namespace

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

}  // namespace ringbuf
