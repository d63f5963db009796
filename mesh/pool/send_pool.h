// SendPool: this node's pool of shared memory for payloads too large for
// the rings, and for loans (mesh/loan.h). One per node.
//
// Memory: segments, each a sealed memfd (ringbuf::SharedRegion: F_SEAL_SHRINK
// | F_SEAL_GROW | F_SEAL_SEAL, so a receiver's mapping can never SIGBUS),
// mapped read-write here and read-only by the receivers. A segment is
// carved into blocks of one size class: a power of two from 4 KiB up, a
// segment holding max(1, 4 MiB / block) blocks. Segments are made when no
// free block of the class is left (lazily: memory becomes resident as it is
// written), up to `limit_bytes` in all, and kept for reuse; a segment whose
// blocks are all free is dropped while the pool holds more than
// `retain_bytes` (its receivers are told with LinkControl.PoolRetire).
//
// A block's life: Allocate() hands out a BlockHandle (the loan, or the copy
// of a large send). SendRef() writes a 32-byte reference to it into a link's
// ring (mesh/pool/pool_ref.h), first handing the block's segment to that
// peer on the link's control channel if it has not got it yet, and charges
// the block to that peer's quota. The peer returns the reference in a
// kPoolRelease frame when it is done (OnRelease), or dies (LinkGone). The
// block is free again once no BlockHandle refers to it and every peer it
// was sent to released it: so one payload sent to many peers is written
// once, and a peer that never releases holds at most `peer_quota_bytes`.
//
// Thread contract: thread-safe (one mutex; Allocate and SendRef may wait on
// it for memory or quota until their deadline, without holding it).
// BlockHandle is a value type: copies share the block; each copy may be
// used by one thread at a time.
#ifndef SHMESH_MESH_POOL_SEND_POOL_H_
#define SHMESH_MESH_POOL_SEND_POOL_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/links/transport.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/region.h"

namespace mesh {
namespace pool {

inline constexpr size_t kMinBlockBytes = 4096;
inline constexpr size_t kSegmentTargetBytes = size_t{4} << 20;

struct PoolOptions {
  std::string node_name;          // for memfd names and errors
  uint64_t limit_bytes = 0;       // most segment bytes at once
  uint64_t peer_quota_bytes = 0;  // most block bytes one peer may hold
  uint64_t retain_bytes = 0;      // free segments kept up to this total
};

class SendPool;
struct Block;    // below
struct Segment;  // send_pool.cc

// A block held by this process. Empty (default) or a block of a pool: its
// writable bytes data()[0, capacity()), of which size() are the payload.
class BlockHandle {
 public:
  BlockHandle() = default;
  BlockHandle(const BlockHandle& other);
  BlockHandle& operator=(const BlockHandle& other);
  BlockHandle(BlockHandle&& other) noexcept;
  BlockHandle& operator=(BlockHandle&& other) noexcept;
  ~BlockHandle();

  explicit operator bool() const { return block_ != nullptr; }
  uint8_t* data() const;
  size_t capacity() const;
  size_t size() const;
  // Sets the payload length (REQUIRES: n <= capacity(); not while the
  // block is being sent).
  void set_size(size_t n);
  absl::string_view bytes() const {
    return absl::string_view(reinterpret_cast<const char*>(data()), size());
  }
  // Drops this handle's reference now.
  void Reset();

 private:
  friend class SendPool;
  BlockHandle(std::shared_ptr<SendPool> pool, Block* block) : pool_(std::move(pool)), block_(block) {}
  std::shared_ptr<SendPool> pool_;
  Block* block_ = nullptr;
};

class SendPool : public std::enable_shared_from_this<SendPool> {
 public:
  static std::shared_ptr<SendPool> Create(PoolOptions options);
  ~SendPool();

  // A block of at least `bytes` (size() set to `bytes`). Waits until
  // `deadline` while the pool is at its limit: RESOURCE_EXHAUSTED (a past
  // deadline) or DEADLINE_EXCEEDED, naming who holds the memory;
  // INVALID_ARGUMENT if `bytes` exceeds the limit; the errno's code if a
  // segment cannot be made (e.g. RESOURCE_EXHAUSTED for EMFILE).
  // `copy`: the caller will write the whole block now (a large copied
  // send), so the class keeps a shallow working set (new memory costs a
  // write of every page); otherwise (a loan) a deep one (send_pool.cc).
  absl::StatusOr<BlockHandle> Allocate(size_t bytes, absl::Time deadline, bool copy = false);

  // Writes a reference to `block` into `link`'s ring, in a kPoolRef frame
  // with `channel` (0: a plain message; else a topic id). Hands the block's
  // segment to the peer first if it has not got it. Waits until `deadline`
  // for the peer's quota, then for ring room. Errors as
  // Transport::SendFrame; RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED also for
  // the quota (the message says so); UNAVAILABLE if the link is down or
  // its control channel is gone. On error the peer holds nothing new.
  absl::Status SendRef(const std::shared_ptr<Transport>& link, const BlockHandle& block, uint32_t channel,
                       absl::Time deadline);

  // Receive thread: a kPoolRelease payload from `link`'s peer. Tokens the
  // peer does not hold are counted (bad_releases) and ignored.
  void OnRelease(const Transport* link, absl::string_view payload);
  // `link` is gone: everything its peer held is released.
  void LinkGone(const Transport* link);
  // The node stopped: every link is gone.
  void AllLinksGone();

  // Whether `link` holds anything or has segments (tests).
  struct Stats {
    uint32_t segments = 0;
    uint64_t segment_bytes = 0;
    uint64_t blocks_in_use = 0, bytes_in_use = 0;
    uint64_t sent_messages = 0, sent_bytes = 0;
    uint64_t bad_releases = 0;
    uint64_t segments_created = 0, segments_retired = 0;
    struct Hold {
      std::string peer;
      uint64_t blocks = 0, bytes = 0;
    };
    std::vector<Hold> held_by;  // by peer name
  };
  Stats stats() const;
  const PoolOptions& options() const { return options_; }

 private:
  friend class BlockHandle;
  struct Peer;
  explicit SendPool(PoolOptions options);

  // A BlockHandle's last copy is gone.
  void LocalDone(Block* block);
  void MaybeFreeLocked(Block* block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<Segment*> AddSegmentLocked(int size_class) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Drops fully free segments while the pool exceeds `keep` bytes (or until
  // `need` bytes would fit under the limit); true if any was dropped.
  bool TrimLocked(uint64_t keep) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RetireLocked(Segment* segment) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string HoldersLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PoolOptions options_;
  mutable absl::Mutex mu_;
  // Signalled whenever a block is freed or a peer's holdings shrink.
  absl::CondVar freed_;
  std::map<uint32_t, std::unique_ptr<Segment>> segments_ ABSL_GUARDED_BY(mu_);
  uint32_t next_segment_id_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t total_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  // Free blocks per size class (log2 of the block size).
  std::vector<std::vector<Block*>> free_ ABSL_GUARDED_BY(mu_);
  // Blocks per size class, free or not.
  std::vector<uint64_t> class_blocks_ ABSL_GUARDED_BY(mu_);
  std::unordered_map<const Transport*, std::unique_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  uint64_t blocks_in_use_ ABSL_GUARDED_BY(mu_) = 0, bytes_in_use_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t sent_messages_ ABSL_GUARDED_BY(mu_) = 0, sent_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bad_releases_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t segments_created_ ABSL_GUARDED_BY(mu_) = 0, segments_retired_ ABSL_GUARDED_BY(mu_) = 0;
};

// One block of a segment. Fields other than local_refs are guarded by the
// pool's mutex.
struct Block {
  Segment* segment = nullptr;
  uint32_t index = 0;
  uint64_t offset = 0;
  size_t capacity = 0;
  size_t size = 0;
  uint8_t* data = nullptr;
  // BlockHandles alive. Copies add (relaxed: the copied handle keeps the
  // block alive meanwhile); a destroyed handle subtracts with acq_rel, and
  // the one that reaches 0 tells the pool (LocalDone), after every other
  // holder's writes.
  std::atomic<uint32_t> local_refs{0};
  bool in_use = false;  // allocated and not yet free
  bool local = false;   // some BlockHandle may still refer to it
  uint32_t holders = 0; // peers that hold a reference
};

}  // namespace pool
}  // namespace mesh

#endif  // SHMESH_MESH_POOL_SEND_POOL_H_
