// A broadcast ring: one producer, up to max_consumers consumers in other
// processes, and one copy of each frame in shared memory, whatever the
// number of consumers. The data plane that lets one publisher reach N
// subscribers with one write per message instead of N (bench/README.md:
// the fanout_floor rows measure why it matters: on 2 CPUs, 8 subscribers of
// a ring each keep 0.35x of one subscriber's rate, 8 of one shared ring 1x).
//
// Pieces:
//   * the region (BroadcastHeader, then `capacity` data bytes; frames as in
//     ring_layout.h: length | type << 32, 8-aligned, padding at the end) is
//     a memfd the producer creates with SharedRegion::CreateWriterOnly: it
//     is the only mapping that can ever write it. Consumers map it
//     read-only (MapWriterOnly), so no consumer can change what another
//     reads.
//   * each consumer has a cursor page (BroadcastCursor in its own memfd,
//     made by the producer in AddConsumer and shared with that consumer
//     alone): its head (the bytes it has read), its sleep flag, and an
//     eviction flag the producer sets. A consumer can only lie about
//     itself there; it never reads its own head back.
//   * each consumer has a doorbell socket pair (internal/os.h); the
//     producer keeps one end and hands the other to the consumer with the
//     page, and rings it after publishing for a consumer that said it
//     sleeps (the Dekker pair of ring.h: consumer waiting = 1 then load
//     tail, producer tail store then load waiting, all seq_cst).
//
// Room and eviction. The producer writes only where every attached
// consumer has read: the tail stays within `capacity` of the lowest head.
// When a consumer holds the room past the write's deadline, the producer
// evicts it (it no longer waits for it, sets its eviction flag, and
// reports it) and writes. So one stopped consumer holds the others back
// until a deadline the writer chose, never longer. An evicted consumer's
// next Drain returns DATA_LOSS.
//
// Consumers copy each frame out before handing it on, and then check that
// the producer had not begun to overwrite it (reserved_end, below): a
// consumer that was evicted while it read, or that lied about its head,
// gets DATA_LOSS, never a torn frame. The copy is what makes eviction safe
// without the consumer's cooperation (a stopped process cannot agree to
// anything); for the small messages a broadcast ring is for it is cheap.
//
// History: the producer can attach a consumer at the start of any of the
// last `history_frames` frames that are still intact, or at the tail;
// history never holds back a write (the oldest frames go first).
//
// Untrusted memory: the producer validates every head it reads (8-aligned,
// never backwards, never past the tail) and evicts the consumer whose head
// is impossible. Consumers validate every index, length and type they read
// from the region as RingConsumer does; a bad value fails the consumer
// (DATA_LOSS, sticky).
//
// Layout (BroadcastHeader, 384 bytes; lines of 128 bytes as in ring_layout.h):
//   line 0: magic "SHMBCST1", version, header_size, capacity, closed (1:
//           the producer is gone)                    producer  consumers
//   line 1: tail (u64): frames below it are complete producer  consumers
//   line 2: reserved_end (u64): the producer has not written at or above
//           this position (a write of [p, q) overwrites [p - cap, q - cap);
//           a frame at c read whole is intact if reserved_end <= c + cap
//           afterwards)                              producer  consumers
// BroadcastCursor (256 bytes at the start of a 4096-byte memfd):
//   line 0: head (u64)                               consumer  producer
//   line 1: waiting (u32: 1 = asleep, wake me)       consumer sets, producer clears
//           evicted (u32: 1 = the producer evicted this consumer)
//                                                    producer  consumer
//
// Thread contract: a BroadcastProducer is used by one thread at a time
// (callers serialize), as is each BroadcastConsumer; they run concurrently
// with each other, in any processes.
#ifndef SHMESH_RINGBUF_BROADCAST_H_
#define SHMESH_RINGBUF_BROADCAST_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"
#include "ringbuf/region.h"
#include "ringbuf/ring_layout.h"

namespace ringbuf {

inline constexpr uint64_t kBroadcastMagic = 0x315453434d424853ULL;  // "SHMBCST1" (LE)
inline constexpr uint32_t kBroadcastVersion = 1;
inline constexpr size_t kBroadcastHeaderSize = 3 * kRingLineSize;
inline constexpr size_t kBroadcastCursorBytes = 4096;

struct BroadcastHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t header_size;
  uint64_t capacity;
  std::atomic<uint32_t> closed;
  uint8_t reserved0[kRingLineSize - 28];
  std::atomic<uint64_t> tail;
  uint8_t reserved1[kRingLineSize - 8];
  std::atomic<uint64_t> reserved_end;
  uint8_t reserved2[kRingLineSize - 8];
};
static_assert(std::is_standard_layout_v<BroadcastHeader>);
static_assert(sizeof(BroadcastHeader) == kBroadcastHeaderSize);
static_assert(offsetof(BroadcastHeader, closed) == 24);
static_assert(offsetof(BroadcastHeader, tail) == kRingLineSize);
static_assert(offsetof(BroadcastHeader, reserved_end) == 2 * kRingLineSize);

struct BroadcastCursor {
  std::atomic<uint64_t> head;
  uint8_t reserved0[kRingLineSize - 8];
  std::atomic<uint32_t> waiting;
  std::atomic<uint32_t> evicted;
  uint8_t reserved1[kRingLineSize - 8];
};
static_assert(std::is_standard_layout_v<BroadcastCursor>);
static_assert(sizeof(BroadcastCursor) == 2 * kRingLineSize);
static_assert(offsetof(BroadcastCursor, waiting) == kRingLineSize);
static_assert(sizeof(BroadcastCursor) <= kBroadcastCursorBytes);

struct BroadcastOptions {
  // Data bytes: a power of two from kMinRingCapacity to kMaxRingCapacity.
  size_t capacity = size_t{1} << 20;
  // At most this many consumers attached at once (each costs a load per
  // Write).
  size_t max_consumers = 64;
  // How many of the last frames a new consumer may start at.
  size_t history_frames = 0;
};

// Why Write evicted consumers, and which.
struct BroadcastEviction {
  uint32_t id;
  std::string why;
};

class BroadcastProducer {
 public:
  // Errors: INVALID_ARGUMENT for a bad capacity or max_consumers 0; the
  // memfd's errors.
  static absl::StatusOr<BroadcastProducer> Create(absl::string_view debug_name, const BroadcastOptions& options);
  BroadcastProducer(BroadcastProducer&&) noexcept;
  BroadcastProducer& operator=(BroadcastProducer&&) = delete;
  BroadcastProducer(const BroadcastProducer&) = delete;
  // Marks the region closed and rings every consumer's doorbell.
  ~BroadcastProducer();

  // The region's memfd (borrowed): pass it to consumers (sendmsg copies it).
  int region_fd() const { return region_.fd(); }
  size_t capacity() const { return capacity_; }
  // The largest payload (prefix + payload) one frame carries: as a ring's.
  size_t MaxFrameSize() const { return MaxFrameSizeForCapacity(capacity_); }
  // The position the next frame goes to.
  uint64_t tail() const { return tail_; }
  // The start of the oldest frame a new consumer may still start at (the
  // tail when history_frames is 0 or nothing was written).
  uint64_t history_start() const;
  size_t consumers() const { return consumers_.size(); }

  // What a new consumer needs, to hand to it (with region_fd()).
  struct NewConsumer {
    uint32_t id;                 // never reused
    uint64_t start;              // where it starts reading
    base::UniqueFd cursor_fd;    // owned: its cursor page's memfd
    base::UniqueFd doorbell_fd;  // owned: its end of the doorbell
  };
  // Adds a consumer that starts reading at `start` (a frame start from
  // history_start() up to tail()): makes its cursor page and doorbell, and
  // waits for it from now on (it need not have opened anything yet).
  // Errors: INVALID_ARGUMENT for a bad start; RESOURCE_EXHAUSTED at
  // max_consumers; the memfd's and socketpair's errors.
  absl::StatusOr<NewConsumer> AddConsumer(uint64_t start);
  // Removes a consumer (unknown ids are ignored): the producer no longer
  // waits for it or rings it. It is not told (the caller's channel says
  // why); it can read on until its frames are overwritten (DATA_LOSS).
  void Detach(uint32_t id);

  // Writes prefix + payload as one frame for every attached consumer. When
  // a consumer holds the room, waits (pauses, then yields, then naps of 50
  // us) until `deadline` (InfinitePast: not at all), then evicts those that
  // still hold it and writes; they are appended to `*evicted` (may be
  // null). A consumer whose page holds an impossible head is evicted at
  // once. While it waits it asks `give_up` (if set) about each consumer
  // that holds the room, and evicts at once those it says to (a consumer
  // whose process is known to be gone). Errors: INVALID_ARGUMENT for a
  // frame over MaxFrameSize().
  absl::Status Write(absl::string_view prefix, absl::string_view payload, absl::Time deadline,
                     std::vector<BroadcastEviction>* evicted,
                     const std::function<bool(uint32_t id)>& give_up = nullptr);

 private:
  struct Consumer {
    uint32_t id;
    SharedRegion page;  // owned mapping of the consumer's cursor page
    BroadcastCursor* cursor;
    base::UniqueFd doorbell;  // owned: the producer's end
    uint64_t head;            // the last valid head read from the page
  };
  BroadcastProducer(SharedRegion region, const BroadcastOptions& options);
  BroadcastHeader* header() { return reinterpret_cast<BroadcastHeader*>(region_.data()); }
  uint8_t* data() { return region_.data() + kBroadcastHeaderSize; }
  // Re-reads every head; evicts the impossible ones; returns the lowest (or
  // the tail with no consumers).
  uint64_t RefreshFloor(std::vector<BroadcastEviction>* evicted);
  void Evict(size_t index, std::string why, std::vector<BroadcastEviction>* evicted);

  SharedRegion region_;  // owned: header + data, the only writable mapping
  size_t capacity_;
  size_t max_consumers_;
  size_t history_frames_;
  uint64_t tail_ = 0;
  uint64_t floor_ = 0;  // a lowest head seen (may be stale: only lower than the truth)
  std::deque<uint64_t> history_;  // start positions of the last frames
  std::vector<Consumer> consumers_;
  uint32_t next_id_ = 1;
};

class BroadcastConsumer {
 public:
  // Maps a producer's region (read-only; it must be sealed with
  // F_SEAL_FUTURE_WRITE) of `capacity` data bytes and this consumer's
  // cursor page, and keeps its doorbell end: what AddConsumer made, with
  // its `start`. Takes ownership of the descriptors (closed on every
  // error). Errors: INVALID_ARGUMENT / FAILED_PRECONDITION for a region or
  // page that is not one (wrong seals, size, magic, version, capacity), a
  // doorbell that is not an AF_UNIX stream socket, a start that is not
  // 8-aligned.
  static absl::StatusOr<BroadcastConsumer> Open(base::UniqueFd region_fd, base::UniqueFd cursor_fd,
                                                base::UniqueFd doorbell_fd, size_t capacity, uint64_t start);
  BroadcastConsumer(BroadcastConsumer&&) noexcept = default;
  BroadcastConsumer& operator=(BroadcastConsumer&&) noexcept = default;
  BroadcastConsumer(const BroadcastConsumer&) = delete;

  // This consumer's doorbell end: readable when the producer rang.
  int doorbell_fd() const { return doorbell_.get(); }
  uint64_t head() const { return head_; }

  // Copies up to `max_frames` frames out, in order, and passes each to
  // `fn` (the span is valid during the call); `fn` returns false to stop
  // before consuming that frame. Returns how many were consumed. Errors:
  // DATA_LOSS when the producer evicted this consumer or overwrote what it
  // read, or the region is corrupt (sticky); OUT_OF_RANGE when the
  // producer is gone and every frame was read.
  absl::StatusOr<size_t> Drain(size_t max_frames, absl::FunctionRef<bool(absl::Span<const uint8_t>)> fn);
  // Before sleeping on doorbell_fd(): true if it may sleep (nothing to
  // read; the producer will ring), false if frames came (flag withdrawn).
  bool PrepareToSleep();
  // Consumes the doorbell's bytes after a wake-up. UNAVAILABLE when the
  // producer's end was closed.
  absl::Status ClearDoorbell();

 private:
  BroadcastConsumer(SharedRegion region, SharedRegion page, base::UniqueFd doorbell, size_t capacity, uint64_t start);
  const BroadcastHeader* header() const { return reinterpret_cast<const BroadcastHeader*>(region_.data()); }
  const uint8_t* data() const { return region_.data() + kBroadcastHeaderSize; }
  BroadcastCursor* cursor() { return reinterpret_cast<BroadcastCursor*>(page_.data()); }
  absl::Status Fail(absl::Status status);
  // True if the producer may have overwritten [head_, ...) since we read it.
  bool Lapped() const;

  SharedRegion region_;  // owned read-only mapping of the producer's region
  SharedRegion page_;    // owned: this consumer's cursor page (fd + mapping)
  base::UniqueFd doorbell_;  // owned: our end
  size_t capacity_;
  uint64_t head_;
  std::vector<uint8_t> frame_;  // the copy of the frame being handed on
  absl::Status status_;         // sticky failure
};

}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_BROADCAST_H_
