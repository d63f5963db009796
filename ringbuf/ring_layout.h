// The shared-memory layout of a frame ring: the contract between the two
// processes of a link. Changing anything here changes kRingVersion.
//
// Region = RingHeader (512 bytes) followed by `capacity` data bytes
// (capacity a power of two). Lines are 128 bytes (two 64-byte cache lines)
// so the adjacent-line prefetcher never couples a producer-written line with
// a consumer-written one.
//
//   offset  size  field                     written by            read by
//   ------  ----  ------------------------  --------------------  ---------
//   line 0: control (written once at Create, then only `closed`)
//        0     8  magic  "SHMRING1"         creator               Attach
//        8     4  version (2)               creator               Attach
//       12     4  header_size (512)         creator               Attach
//       16     8  capacity (bytes, 2^k)     creator               Attach
//       24     4  closed (atomic bits:      Close() / failure     both sides
//                  1 = producer closed,      of either side
//                  2 = consumer closed)
//       28   100  reserved (zero)
//   line 1: producer-owned
//      128     8  tail (atomic u64)         producer              consumer
//      136     4  producer_cpu (atomic)     producer              consumer
//      140   116  reserved
//   line 2: consumer-owned
//      256     8  head (atomic u64)         consumer              producer
//      264     4  consumer_cpu (atomic)     consumer              producer
//      268     4  consumer_heartbeat        consumer's process    producer
//                  (atomic counter)
//      272   112  reserved
//   line 3: sleep flags (written only around sleeps, read on every publish)
//      384     4  consumer_waiting (atomic) consumer sets,        producer
//                                           producer clears
//      388     4  producer_waiting (atomic) producer sets,        consumer
//                                           consumer clears
//      392   120  reserved
//      512  cap   data: frames
//
// producer_cpu / consumer_cpu are hints: 1 + the CPU the side last
// published from (0 = unknown), refreshed with every index store. A waiter
// whose peer last ran on its own CPU does not spin (the peer cannot run
// while it spins there) but sleeps at once. Garbage only costs a spin.
//
// consumer_heartbeat is bumped every few hundred milliseconds by the
// consumer's process while it runs (Ring::BeatConsumerHeartbeat), whether
// or not data flows, so the producer can tell a stopped or hung peer from
// an idle one: it counts how long the value has not changed on its own
// clock. Garbage only makes a peer look alive or stopped.
//
// The waiting flags sit on their own line rather than next to the index of
// their owner: each side loads the *peer's* flag after every publish, and a
// line that is written only when someone goes to sleep stays in that
// reader's cache, so the check costs an L1 hit instead of a cache-line
// transfer per message.
//
// head and tail are monotonically increasing byte counts (they never wrap
// in practice: 2^64 bytes); the byte offset in `data` is index & (cap - 1).
// Invariant: head <= tail <= head + capacity, both multiples of 8.
//
// Frames are 8-byte aligned and never straddle the end of `data`:
//
//   +----------------+----------------+---------------------------+-----+
//   | length (u32)   | type (u32)     | payload (length bytes)    | pad |
//   +----------------+----------------+---------------------------+-----+
//   0                4                8                 8 + length  round up to 8
//
// The 8-byte frame header is one little-endian u64: length | type << 32.
// type is kFrameTypeData, or kFrameTypePadding for a filler frame whose
// payload runs exactly to the end of `data` (written when the next frame
// does not fit before the end; the frame then starts at offset 0).
#ifndef SHMESH_RINGBUF_RING_LAYOUT_H_
#define SHMESH_RINGBUF_RING_LAYOUT_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace ringbuf {

inline constexpr uint64_t kRingMagic = 0x31474e49524d4853ULL;  // "SHMRING1" (LE)
inline constexpr uint32_t kRingVersion = 2;
inline constexpr size_t kRingLineSize = 128;
inline constexpr size_t kRingHeaderSize = 4 * kRingLineSize;

inline constexpr uint32_t kRingProducerClosed = 1;
inline constexpr uint32_t kRingConsumerClosed = 2;

inline constexpr size_t kFrameHeaderSize = 8;
inline constexpr size_t kFrameAlignment = 8;
inline constexpr uint32_t kFrameTypeData = 0x61746164;     // "data" (LE)
inline constexpr uint32_t kFrameTypePadding = 0x64646170;  // "padd" (LE)

// Capacity limits: at least 256 bytes (so a frame header plus a useful
// payload fits), at most 1 GiB (so frame lengths fit in the u32 field).
inline constexpr size_t kMinRingCapacity = 256;
inline constexpr size_t kMaxRingCapacity = size_t{1} << 30;

struct RingHeader {
  // Line 0: control.
  uint64_t magic;
  uint32_t version;
  uint32_t header_size;
  uint64_t capacity;
  std::atomic<uint32_t> closed;
  uint8_t reserved0[kRingLineSize - 28];
  // Line 1: producer-owned.
  std::atomic<uint64_t> tail;
  std::atomic<uint32_t> producer_cpu;
  uint8_t reserved1[kRingLineSize - 12];
  // Line 2: consumer-owned.
  std::atomic<uint64_t> head;
  std::atomic<uint32_t> consumer_cpu;
  std::atomic<uint32_t> consumer_heartbeat;
  uint8_t reserved2[kRingLineSize - 16];
  // Line 3: sleep flags.
  std::atomic<uint32_t> consumer_waiting;
  std::atomic<uint32_t> producer_waiting;
  uint8_t reserved3[kRingLineSize - 8];
};

static_assert(std::is_standard_layout_v<RingHeader>, "RingHeader lives in shared memory");
static_assert(sizeof(RingHeader) == kRingHeaderSize, "RingHeader size is part of the ABI");
static_assert(offsetof(RingHeader, magic) == 0);
static_assert(offsetof(RingHeader, version) == 8);
static_assert(offsetof(RingHeader, header_size) == 12);
static_assert(offsetof(RingHeader, capacity) == 16);
static_assert(offsetof(RingHeader, closed) == 24);
static_assert(offsetof(RingHeader, tail) == 1 * kRingLineSize);
static_assert(offsetof(RingHeader, producer_cpu) == 1 * kRingLineSize + 8);
static_assert(offsetof(RingHeader, head) == 2 * kRingLineSize);
static_assert(offsetof(RingHeader, consumer_cpu) == 2 * kRingLineSize + 8);
static_assert(offsetof(RingHeader, consumer_heartbeat) == 2 * kRingLineSize + 12);
static_assert(offsetof(RingHeader, consumer_waiting) == 3 * kRingLineSize);
static_assert(offsetof(RingHeader, producer_waiting) == 3 * kRingLineSize + 4);
// Atomics shared between processes must be lock-free (an address-based lock
// table is per process) and exactly as large as the integer they hold.
static_assert(std::atomic<uint64_t>::is_always_lock_free);
static_assert(std::atomic<uint32_t>::is_always_lock_free);
static_assert(sizeof(std::atomic<uint64_t>) == 8 && alignof(std::atomic<uint64_t>) == 8);
static_assert(sizeof(std::atomic<uint32_t>) == 4 && alignof(std::atomic<uint32_t>) == 4);
static_assert(kRingHeaderSize % kFrameAlignment == 0);
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "frame header word is little-endian");

// Whether `capacity` is a valid data size for a ring (a power of two in
// [kMinRingCapacity, kMaxRingCapacity]); the broadcast ring's too.
constexpr bool IsValidRingCapacity(uint64_t capacity) {
  return capacity >= kMinRingCapacity && capacity <= kMaxRingCapacity && (capacity & (capacity - 1)) == 0;
}

// Bytes a frame with `payload` bytes takes in a ring: its header, the
// payload, padding to kFrameAlignment.
constexpr uint64_t FrameBytes(uint64_t payload) {
  return kFrameHeaderSize + (payload + kFrameAlignment - 1) / kFrameAlignment * kFrameAlignment;
}

// Bytes of shared memory a ring of `capacity` data bytes needs.
constexpr size_t RingRegionSize(size_t capacity) { return kRingHeaderSize + capacity; }

// The largest frame payload a ring of `capacity` accepts: half the ring
// minus a frame header, so that a frame always fits in an empty ring even
// when it must be preceded by a padding frame.
constexpr size_t MaxFrameSizeForCapacity(size_t capacity) {
  return capacity / 2 - kFrameHeaderSize;
}

}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_RING_LAYOUT_H_
