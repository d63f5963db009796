// Ring: the SPSC frame ring's region and both ends (ring.h); the ends
// themselves are in ring_producer.cc and ring_consumer.cc. The atomic pair
// labels ([Data], [Space], [DataSleep], [SpaceSleep], [Close]) are defined
// in internal/ring_shared.h.
#include "ringbuf/ring.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "ringbuf/internal/os.h"
#include "ringbuf/internal/ring_shared.h"

namespace ringbuf {
namespace {

// Reads a plain header field exactly once (the peer may be writing it).
// Relaxed: the fields were written before the region was passed to us, and
// the fd passing syscalls order them; we only need a single untorn read.
template <typename T>
T LoadOnce(const T* p) {
  return __atomic_load_n(p, __ATOMIC_RELAXED);
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
