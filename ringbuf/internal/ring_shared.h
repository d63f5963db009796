// What the ring's producer (ring_producer.cc), consumer (ring_consumer.cc)
// and Ring (ring.cc) share: the atomic pairs they document against, the
// publishing half of both sleep protocols, closing, and the spin hint.
// Private to the ringbuf target.
#ifndef SHMESH_RINGBUF_INTERNAL_RING_SHARED_H_
#define SHMESH_RINGBUF_INTERNAL_RING_SHARED_H_

#include <atomic>
#include <cstdint>

#include "absl/time/time.h"
#include "ringbuf/internal/os.h"
#include "ringbuf/ring.h"
#include "ringbuf/ring_layout.h"
#include "ringbuf/wait.h"

// Atomic pair labels, used in the comments here and in ring_producer.cc,
// ring_consumer.cc and ring.cc:
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

// In namespace ringbuf itself: this header is in no target's hdrs, so only
// the ring's own files see these names.
namespace ringbuf {

inline constexpr uint64_t kAlignMask = kFrameAlignment - 1;
inline constexpr uint32_t kKnownClosedBits = kRingProducerClosed | kRingConsumerClosed;

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
inline PeerWaiter PublishAndClaimWaiter(std::atomic<uint64_t>& index, uint64_t value,
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
void MarkClosed(RingHeader* header, uint32_t bit, int doorbell_fd);

// True if spinning is pointless because the peer last published from the
// CPU we run on: while we spin there, it cannot run to make progress, so we
// go to sleep at once (and do not let this wait adapt the spin budget).
// Busy-poll was asked for explicitly and is honored regardless.
inline bool PeerOnMyCpu(const std::atomic<uint32_t>& peer_cpu, const AdaptiveSpin& spin) {
  if (spin.busy_poll() || spin.budget() <= absl::ZeroDuration()) return false;
  // Relaxed: a hint (any value is harmless); see the layout comment.
  const uint32_t peer = peer_cpu.load(std::memory_order_relaxed);
  return peer != 0 && peer == os_internal::CpuHint();
}

}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_INTERNAL_RING_SHARED_H_
