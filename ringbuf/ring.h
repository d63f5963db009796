// A single-producer single-consumer ring of variable-size frames in a
// sealed memfd, shared by two processes, with a socket-pair doorbell for
// sleep and wake-up. This is the data plane of one direction of a shmesh
// link.
//
// Pieces (layout in ring_layout.h):
//   * Ring: owns the SharedRegion and the doorbell ends it holds, and holds
//     one RingProducer and one RingConsumer endpoint. Each process of a
//     link uses one endpoint of a ring; a process may use both (tests).
//   * doorbell: a connected AF_UNIX stream socket pair. The producer's end
//     and the consumer's end each wake the other side by sending a byte
//     (MSG_DONTWAIT: it never blocks, whatever the peer did to the
//     descriptor's flags or buffers), and each side sleeps until its own
//     end is readable: the producer rings after publishing data for a
//     consumer that said it sleeps, the consumer after making room for a
//     producer that waits in a full ring. The ring's creator keeps the
//     producer's end and hands the consumer's end to the other process.
//     (Eventfds, used before, cannot be rung without blocking once a peer
//     that shares the descriptor clears O_NONBLOCK and fills the counter.)
//
// Wake-up protocol (each side; shown for data, space is the mirror image):
//   consumer, before sleeping           producer, after writing frames
//   C1 consumer_waiting = 1  (seq_cst)  P1 tail = new tail     (seq_cst)
//   C2 load tail             (seq_cst)  P2 load consumer_waiting (seq_cst)
//   C3 if data: clear flag, don't sleep P3 if set: exchange it to 0 and,
//      else poll(its doorbell end)         if it was set, ring the doorbell
// Sequential consistency of C1/C2/P1/P2 (a Dekker pair) guarantees that
// either C2 sees the new tail or P2 sees the flag, so no wake-up is lost,
// and a producer rings at most once per sleep. A busy stream (consumer
// spinning or never empty) therefore costs no syscall at all. How long a
// waiter spins before the sleep is adaptive (wait.h), which keeps steady
// ping-pong awake and lets an idle ring sleep; a waiter whose peer last
// published from the waiter's own CPU skips the spin (the peer could not
// run while it spins), see producer_cpu/consumer_cpu in ring_layout.h.
//
// Untrusted memory: the peer process can write anything into the region at
// any time. Every index, length and type read from it is read once into a
// local, validated (head <= tail <= head + capacity, monotonic, 8-aligned,
// length <= MaxFrameSize(), frame inside [head, tail) and the buffer, type
// known, padding ends exactly at the buffer end), and a bad value fails the
// endpoint: every later call returns the same DATA_LOSS status, and the
// endpoint sets its "closed" bit so an honest peer stops too. An endpoint
// never re-reads its own index from shared memory. No bad value causes an
// out-of-bounds access, a crash or an unbounded loop.
//
// Error codes:
//   INVALID_ARGUMENT    bad capacity; frame larger than MaxFrameSize();
//                       Commit() longer than the reservation; Attach() on a
//                       region whose header or size does not describe a
//                       ring, or on a doorbell that is not an AF_UNIX
//                       stream socket.
//   UNAVAILABLE         a wait found the other end of the doorbell closed
//                       (the peer's process exited) and nothing to do.
//   RESOURCE_EXHAUSTED  no room for the frame by the deadline (at once if
//                       the deadline has passed); EMFILE and friends.
//   DEADLINE_EXCEEDED   the consumer's Wait()/Read() saw no frame in time.
//   FAILED_PRECONDITION Commit() without Reserve(), Release() without
//                       Peek(); this endpoint was closed; the producer
//                       writes after the consumer closed the ring.
//   OUT_OF_RANGE        the producer closed the ring and every frame it
//                       published has been consumed (end of stream).
//   DATA_LOSS           the shared memory is corrupt (sticky).
#ifndef SHMESH_RINGBUF_RING_H_
#define SHMESH_RINGBUF_RING_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"
#include "ringbuf/region.h"
#include "ringbuf/ring_layout.h"
#include "ringbuf/wait.h"

namespace ringbuf {

// Counters of one endpoint. Written only by the endpoint's thread; any
// thread may read them through stats() (relaxed atomics: plain counters).
struct RingStats {
  uint64_t frames = 0;          // frames committed (producer) / released (consumer)
  uint64_t bytes = 0;           // payload bytes of those frames
  uint64_t full_events = 0;     // producer: reservations that found no room
  uint64_t sleeps = 0;          // times this endpoint slept on its doorbell
  uint64_t doorbells_rung = 0;  // times this endpoint woke its peer
};

namespace ring_internal {
// Lock-free counters behind RingStats; see RingStats for the contract.
struct StatCounters {
  std::atomic<uint64_t> frames{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> full_events{0};
  std::atomic<uint64_t> sleeps{0};
  std::atomic<uint64_t> doorbells_rung{0};
  // Single writer: a relaxed load + store is enough and avoids a locked RMW.
  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  RingStats Snapshot() const;
};
}  // namespace ring_internal

// The writing end of a ring.
// Thread contract: single producer. All methods except stats() must be
// called from one thread at a time (the producer thread), and only one
// process may use the producer end of a ring. It runs concurrently with
// the consumer end (in this or another process). Owned by its Ring; the
// reference from Ring::producer() stays valid while that Ring (or the Ring
// it was moved into) lives.
class alignas(kRingLineSize) RingProducer {
 public:
  RingProducer(const RingProducer&) = delete;
  RingProducer& operator=(const RingProducer&) = delete;

  size_t capacity() const { return capacity_; }
  size_t MaxFrameSize() const { return max_frame_; }

  // Copies `frame` into the ring and publishes it. If the ring is full,
  // waits (spin, then sleep on the space doorbell) until `deadline`.
  // Errors: INVALID_ARGUMENT (too big), RESOURCE_EXHAUSTED (still full at
  // `deadline`; immediately if deadline <= now), FAILED_PRECONDITION
  // (closed), DATA_LOSS (corrupt shared memory).
  absl::Status Write(absl::string_view frame, absl::Time deadline);

  // Writes `frames` in order and makes them visible with one tail store and
  // at most one doorbell write. If the ring fills up midway, publishes what
  // it has so far and waits for room as Write() does. On error, the first
  // `*written` frames (if `written` is given) were written and published.
  absl::Status WriteBatch(absl::Span<const absl::string_view> frames, absl::Time deadline,
                          size_t* written = nullptr);

  // As Write(), for one frame made of `prefix` followed by `payload`,
  // copied straight into the ring (no joined copy first): for a constant
  // header in front of each frame. MaxFrameSize() limits the sum of both.
  absl::Status Write(absl::string_view prefix, absl::string_view payload, absl::Time deadline);

  // As WriteBatch(), where frame i is `prefix` followed by `payloads[i]`
  // (the same prefix in front of every frame; MaxFrameSize() limits the
  // sum). `*written` counts frames.
  absl::Status WriteBatch(absl::string_view prefix, absl::Span<const absl::string_view> payloads,
                          absl::Time deadline, size_t* written = nullptr);

  // Zero-copy: reserves room for a frame of up to `len` bytes and returns
  // where to write it (shared memory: the consumer cannot see it until it
  // is committed). Waits for room like Write(). Unpublished committed frames
  // are published before waiting. A new Reserve() replaces an uncommitted
  // reservation. Errors as Write().
  absl::StatusOr<absl::Span<uint8_t>> Reserve(size_t len, absl::Time deadline);
  // Commits the reserved frame with its final length `len` (<= reserved)
  // and publishes every committed frame. FAILED_PRECONDITION without a
  // reservation, INVALID_ARGUMENT if `len` exceeds it.
  absl::Status Commit(size_t len);
  // As Commit() but does not publish: the frame becomes visible at the next
  // Publish() (or Commit(), or a Reserve() that must wait).
  absl::Status CommitNoPublish(size_t len);
  // Publishes all committed frames: one tail store, and one doorbell write
  // if the consumer is asleep. Cheap no-op when nothing is pending.
  absl::Status Publish();

  // Waits until a frame of `len` bytes fits (see Write() for the errors).
  absl::Status WaitForSpace(size_t len, absl::Time deadline);

  // Split form of WaitForSpace() for event loops that sleep in epoll on
  // doorbell_fd(): announces that the producer is about to sleep
  // waiting for a frame of `len` bytes. Returns false if the frame already
  // fits (or the endpoint failed/closed): then the caller must not sleep.
  // After the fd becomes readable, call DrainDoorbell() and retry.
  bool PrepareToSleep(size_t len);
  // Consumes the wake-ups on this end; never blocks. UNAVAILABLE if the
  // consumer's end was closed (see os_internal::DoorbellDrain).
  absl::Status DrainDoorbell();
  // The producer's end of the doorbell: readable when the consumer made
  // room. Borrowed; owned by the Ring (-1 if the Ring does not hold it).
  int doorbell_fd() const { return doorbell_fd_; }

  // Publishes committed frames, drops any reservation, marks the ring
  // closed by the producer and wakes the consumer, which reads the
  // remaining frames and then gets OUT_OF_RANGE. Later calls here return
  // FAILED_PRECONDITION. Idempotent.
  void Close();

  // OK, or the sticky error (DATA_LOSS, closed) every call now returns.
  absl::Status status() const { return status_; }

  // Replaces the waiting policy (producer thread only).
  void set_wait_options(const WaitOptions& options) { spin_.Reset(options); }

  // Thread-safe.
  RingStats stats() const { return stats_.Snapshot(); }

 private:
  friend class Ring;
  RingProducer(RingHeader* header, uint8_t* data, size_t capacity, int doorbell_fd,
               const WaitOptions& options);

  // Bytes a frame of payload `len` occupies, including a padding frame if it
  // would not fit before the end of the buffer.
  uint64_t SpaceNeeded(size_t len) const;
  // True if `need` bytes are free, re-reading head if the cached value says
  // no. Fails the endpoint on a bad head.
  bool HasSpace(uint64_t need, std::memory_order order);
  // Checks the consumer's closed bit; false (status_ set) if the ring is
  // closed or the word is garbage.
  bool CheckPeerOpen();
  absl::Status CommitInternal(size_t len);
  // The bodies of Write() and WriteBatch(): each frame is `prefix` followed
  // by its payload (an empty prefix is the plain form).
  absl::Status WriteInternal(absl::string_view prefix, absl::string_view payload,
                             absl::Time deadline);
  absl::Status WriteBatchInternal(absl::string_view prefix,
                                  absl::Span<const absl::string_view> payloads,
                                  absl::Time deadline, size_t* written);
  absl::Status WaitForSpaceInternal(uint64_t need, absl::Time deadline);
  bool PrepareToSleepForSpace(uint64_t need);
  // Stores tail and rings the consumer if it sleeps; ignores status_.
  absl::Status PublishInternal();
  void Fail(std::string message);

  RingHeader* const header_;  // borrowed: the Ring's mapping
  uint8_t* const data_;       // header_ + kRingHeaderSize
  const uint64_t capacity_;
  const uint64_t mask_;
  const size_t max_frame_;
  // Borrowed: the producer's doorbell end; rung (a send) to wake the
  // consumer, slept on when full.
  const int doorbell_fd_;

  uint64_t tail_;            // end of committed frames (local)
  uint64_t published_tail_;  // last value stored to header_->tail
  uint64_t cached_head_;     // last validated head (a lower bound)
  bool reserved_ = false;
  uint64_t reserved_len_ = 0;
  bool closed_ = false;
  absl::Status status_;
  AdaptiveSpin spin_;
  ring_internal::StatCounters stats_;
};

// The reading end of a ring.
// Thread contract: single consumer. All methods except stats() must be
// called from one thread at a time (the consumer thread), and only one
// process may use the consumer end of a ring. Owned by its Ring like
// RingProducer.
//
// Spans returned by Peek()/Drain() point into shared memory that a hostile
// peer can still modify: copy the bytes before validating or parsing them
// (otherwise a check can pass and the bytes change before they are used).
class alignas(kRingLineSize) RingConsumer {
 public:
  RingConsumer(const RingConsumer&) = delete;
  RingConsumer& operator=(const RingConsumer&) = delete;

  size_t capacity() const { return capacity_; }
  size_t MaxFrameSize() const { return max_frame_; }

  // Zero-copy: the oldest unreleased frame, or nullopt if the ring is empty.
  // The span stays valid (and Peek() keeps returning it) until Release().
  // Errors: DATA_LOSS, OUT_OF_RANGE (producer closed, all consumed),
  // FAILED_PRECONDITION (this end closed).
  absl::StatusOr<std::optional<absl::Span<const uint8_t>>> Peek();
  // Consumes the peeked frame and publishes head (waking a producer that
  // waits for room). FAILED_PRECONDITION if nothing is peeked.
  absl::Status Release();
  // As Release() but leaves head unpublished until Publish()/Release().
  absl::Status ReleaseNoPublish();
  // Publishes head: one store, and one doorbell write if the producer waits.
  absl::Status Publish();

  // Copy forms: the next frame, or nullopt if empty (TryRead), or waiting
  // until `deadline` (Read; DEADLINE_EXCEEDED if none came).
  absl::StatusOr<std::optional<std::string>> TryRead();
  absl::StatusOr<std::string> Read(absl::Time deadline);

  // Calls `fn` on up to `max_frames` available frames in order, then
  // publishes head once. Returns how many frames `fn` saw. If an error
  // stops the drain after some frames, those are returned and the (sticky)
  // error comes from the next call. Does not wait.
  absl::StatusOr<size_t> Drain(size_t max_frames,
                               absl::FunctionRef<void(absl::Span<const uint8_t>)> fn);
  // As Drain, but `fn` may refuse a frame by returning false: that frame is
  // not consumed (it stays peeked: the next Peek/Drain/DrainWhile starts
  // with it) and the drain stops there. Returns how many frames `fn`
  // accepted. For a consumer whose destination can be full.
  absl::StatusOr<size_t> DrainWhile(size_t max_frames,
                                    absl::FunctionRef<bool(absl::Span<const uint8_t>)> fn);

  // Blocks until a frame is available (OK), `deadline` passes
  // (DEADLINE_EXCEEDED; checks once if it already has), or the endpoint
  // fails/ends (that status). Spins per the adaptive policy, then sleeps on
  // the data doorbell; a doorbell rung without data (spam) just puts it
  // back to sleep.
  absl::Status Wait(absl::Time deadline);

  // Split form of Wait() for an event loop that polls many rings' doorbells
  // in one epoll set: announces that the consumer is about to sleep.
  // Returns false if a frame is available or the endpoint failed/ended;
  // then the caller must not sleep and should Peek(). When doorbell_fd()
  // becomes readable, call DrainDoorbell(), then Peek(); if still empty,
  // PrepareToSleep() again.
  bool PrepareToSleep();
  // Withdraws a PrepareToSleep() whose sleep is over or was never started:
  // the producer stops ringing for it. A ring already under way is a
  // spurious wake-up later, which PrepareToSleep's callers tolerate.
  void CancelSleep();
  // Consumes the wake-ups on this end; never blocks. UNAVAILABLE if the
  // producer's end was closed (its process exited, or it hung up): the end
  // stays readable for ever, so stop polling it.
  absl::Status DrainDoorbell();
  // The consumer's end of the doorbell: readable when the producer published
  // for a sleeping consumer. Borrowed; owned by the Ring (-1 if the Ring
  // does not hold it).
  int doorbell_fd() const { return doorbell_fd_; }

  // Stops consuming: marks the ring closed by the consumer (the producer's
  // writes then fail with FAILED_PRECONDITION) and wakes the producer.
  // Later calls here return FAILED_PRECONDITION. Idempotent.
  void Close();

  absl::Status status() const { return status_; }
  void set_wait_options(const WaitOptions& options) { spin_.Reset(options); }
  RingStats stats() const { return stats_.Snapshot(); }

 private:
  friend class Ring;
  RingConsumer(RingHeader* header, uint8_t* data, size_t capacity, int doorbell_fd,
               const WaitOptions& options);

  // Finds the next data frame (skipping padding) and records it in peek_*
  // with peeked_ set (kFrame); kEmpty if there is none yet; kFailed with
  // status_ set. The body of Peek() without its StatusOr, for Drain().
  // REQUIRES: status_.ok() and !peeked_.
  enum class PeekResult { kFrame, kEmpty, kFailed };
  PeekResult PeekInternal();
  // True if Peek() would return a frame or an error (not "empty").
  bool Ready(std::memory_order order);
  // Re-reads tail and validates it. False (status_ set) if it is corrupt.
  bool RefreshTail(std::memory_order order);
  // With the ring empty: true (status_ set) if the producer closed it and
  // nothing is left, or the closed word is garbage.
  bool CheckProducerClosed();
  // Stores head and rings the producer if it waits; ignores status_.
  absl::Status PublishInternal();
  void Fail(std::string message);

  RingHeader* const header_;
  uint8_t* const data_;
  const uint64_t capacity_;
  const uint64_t mask_;
  const size_t max_frame_;
  // Borrowed: the consumer's doorbell end; slept on when empty, rung (a
  // send) to wake a producer waiting for room. -1 after
  // Ring::DropConsumerDoorbell().
  int doorbell_fd_;

  uint64_t head_;            // start of the next unconsumed frame (local)
  uint64_t published_head_;  // last value stored to header_->head
  uint64_t cached_tail_;     // last validated tail
  bool peeked_ = false;
  uint64_t peek_offset_ = 0;  // payload offset in data_
  uint64_t peek_len_ = 0;
  uint64_t peek_total_ = 0;  // header + payload + alignment
  bool closed_ = false;
  absl::Status status_;
  AdaptiveSpin spin_;
  ring_internal::StatCounters stats_;
};

// Which end of a ring a process uses (Ring::Attach).
enum class RingEnd { kProducer, kConsumer };

// A ring: its shared region, its doorbell ends and its two endpoints.
// Thread contract: the Ring object itself is thread-compatible (create,
// move and destroy it from one thread while no endpoint call is running);
// its producer() and consumer() may then be used from two threads.
// Destroying a Ring does not notify the peer; call Close() on the endpoint
// in use first (a shmesh link also notices peer death on its socket).
class Ring {
 public:
  // Creates a ring with `capacity` data bytes (a power of two in
  // [kMinRingCapacity, kMaxRingCapacity]): a sealed memfd of
  // RingRegionSize(capacity) bytes with an initialized header, and a
  // doorbell socket pair (close-on-exec) of which it holds both ends, so
  // both endpoints work in this process. To hand the consumer end to
  // another process, pass region_fd() and consumer_doorbell_fd(), then
  // DropConsumerDoorbell(). INVALID_ARGUMENT for a bad capacity; OS errors
  // otherwise.
  static absl::StatusOr<Ring> Create(size_t capacity, const WaitOptions& options = WaitOptions());

  // The other process's side: takes ownership of a region mapped with
  // SharedRegion::Map and of the doorbell end received with it, the one of
  // `end` (the endpoint this process will use; the other endpoint has no
  // doorbell and must not be used). Verifies the header (magic, version,
  // header size, capacity a power of two in range and matching
  // region.size()) and that the doorbell is an AF_UNIX stream socket.
  // INVALID_ARGUMENT naming the problem otherwise.
  static absl::StatusOr<Ring> Attach(SharedRegion region, base::UniqueFd doorbell, RingEnd end,
                                     const WaitOptions& options = WaitOptions());

  Ring(Ring&&) noexcept;
  Ring& operator=(Ring&&) noexcept;
  ~Ring();

  size_t capacity() const { return capacity_; }
  size_t MaxFrameSize() const { return MaxFrameSizeForCapacity(capacity_); }
  size_t region_size() const { return region_.size(); }
  // The mapping (for diagnostics and tests; the endpoints own its use).
  const SharedRegion& region() const { return region_; }

  // Bytes written but not yet consumed (frame headers and padding
  // included), for reporting only: a snapshot of tail - head as stored in
  // shared memory, clamped to [0, capacity()] because the peer may have
  // written anything there. Thread-safe; never fails the ring.
  uint64_t QueuedBytes() const;

  // Liveness of the consumer's process (see consumer_heartbeat in
  // ring_layout.h). The consumer's process calls BeatConsumerHeartbeat()
  // periodically from any thread while it runs; the producer's process
  // reads ConsumerHeartbeat() and treats a value that stopped changing as a
  // stopped or hung consumer. Thread-safe; never fails the ring (the peer
  // may write anything there).
  void BeatConsumerHeartbeat();
  uint32_t ConsumerHeartbeat() const;

  // Borrowed fds to pass to the peer (sendmsg dups them); owned by the Ring.
  // A doorbell end this Ring does not hold is -1.
  int region_fd() const { return region_.fd(); }
  int producer_doorbell_fd() const { return producer_doorbell_.get(); }
  int consumer_doorbell_fd() const { return consumer_doorbell_.get(); }

  // Closes this process's copy of the consumer's doorbell end, once it has
  // been handed to the consumer's process: keeping it would cost a
  // descriptor and let this process swallow the consumer's wake-ups.
  // consumer() must not be used afterwards. Idempotent.
  void DropConsumerDoorbell();

  RingProducer& producer() { return *producer_; }
  RingConsumer& consumer() { return *consumer_; }

 private:
  Ring(SharedRegion region, base::UniqueFd producer_doorbell, base::UniqueFd consumer_doorbell,
       size_t capacity, const WaitOptions& options);

  // Declaration order matters: the endpoints (which borrow the mapping and
  // the fds) are destroyed first.
  SharedRegion region_;
  base::UniqueFd producer_doorbell_;  // may be empty (Attach as consumer)
  base::UniqueFd consumer_doorbell_;  // may be empty (Attach as producer, Drop)
  size_t capacity_;
  std::unique_ptr<RingProducer> producer_;
  std::unique_ptr<RingConsumer> consumer_;
};

}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_RING_H_
