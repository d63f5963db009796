// The receiving side of pools: for each link, the segments its peer handed
// over (mapped read-only) and the releases this node owes the peer.
//
// A kPoolRef frame resolves (Inbox::Resolve) to a PooledPayload: a view of
// the payload in the peer's segment that keeps the mapping alive and, when
// destroyed, releases the block to the peer (a token in a kPoolRelease
// frame, mesh/pool/pool_ref.h). Releases are batched: the receive thread
// flushes them after each pass over the rings; a payload dropped on any
// other thread (an owned Message) flushes at once, and what does not fit a
// full ring waits for the receive thread's next pass.
//
// Nothing from the peer is trusted: a segment must be a memfd sealed
// against shrinking, growing and sealing, of exactly the announced size
// (ringbuf::SharedRegion::MapReadOnly), with a fresh nonzero id, and at
// most `max_segments` per peer; a reference must name a segment handed
// over on this link and lie within it, and its length be within
// `max_message_bytes`. What fails is refused with a reason (the link fails
// for a bad segment; a bad reference is dropped and counted).
//
// A sender that dies leaves its segments mapped here while payloads of it
// are held: they stay readable until dropped.
//
// Thread contract: Inboxes and Inbox methods run on the receive thread,
// except Inbox::Release (PooledPayload's destructor: any thread),
// Inboxes::Stats and AnyPending (any thread).
#ifndef SHMESH_MESH_POOL_INBOX_H_
#define SHMESH_MESH_POOL_INBOX_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"
#include "mesh/links/transport.h"
#include "mesh/message.h"
#include "mesh/pool/pool_ref.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/region.h"

namespace mesh {
namespace pool {

class Inbox;
class Inboxes;

// One received pooled payload (see above). Its bytes are in shared memory
// that the sender can still write: copy before validating what you parse.
class PooledPayload final : public SharedPayload {
 public:
  PooledPayload(std::shared_ptr<const ringbuf::SharedRegion> segment, absl::string_view bytes, uint64_t token,
                std::shared_ptr<Inbox> inbox)
      : segment_(std::move(segment)), bytes_(bytes), token_(token), inbox_(std::move(inbox)) {}
  ~PooledPayload() override;
  absl::string_view bytes() const override { return bytes_; }

 private:
  const std::shared_ptr<const ringbuf::SharedRegion> segment_;
  const absl::string_view bytes_;
  const uint64_t token_;
  const std::shared_ptr<Inbox> inbox_;
};

class Inbox : public std::enable_shared_from_this<Inbox> {
 public:
  Inbox(std::shared_ptr<Transport> link, Inboxes* owner, uint32_t max_segments);

  // LinkControl.PoolSegment with its descriptors. An error fails the link.
  absl::Status AddSegment(const mesh::v1::LinkControl::PoolSegment& msg, std::vector<base::UniqueFd> fds);
  // LinkControl.PoolRetire.
  void RetireSegment(uint32_t id);
  // A kPoolRef payload. kUnknownSegment also when the segment may still be
  // on its way (the caller reads the control channel and tries again).
  RefError Resolve(absl::string_view ref_payload, uint64_t max_message_bytes,
                   std::shared_ptr<const PooledPayload>* out);

  // Any thread: `token` is done with.
  void Release(uint64_t token);
  // Writes the pending releases into the ring to the peer without waiting;
  // false if some are left (the ring is full).
  bool Flush();
  // The link is gone: later releases are dropped.
  void Close();

  const std::shared_ptr<Transport>& link() const { return link_; }
  size_t mapped_segments() const { return segments_.size(); }
  uint64_t mapped_bytes() const { return mapped_bytes_; }
  // Receive thread: a reference named an unknown segment and the control
  // channel has not been read since.
  bool awaiting_control = false;

 private:
  const std::shared_ptr<Transport> link_;
  Inboxes* const owner_;
  const uint32_t max_segments_;
  // Receive thread only.
  std::map<uint32_t, std::shared_ptr<const ringbuf::SharedRegion>> segments_;
  uint64_t mapped_bytes_ = 0;

  absl::Mutex mu_;
  std::vector<uint64_t> pending_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class Inboxes {
 public:
  struct Options {
    uint32_t max_segments_per_peer = 4096;
    // Wakes the receive thread (releases were left for it to flush).
    std::function<void()> wake;
  };
  explicit Inboxes(Options options) : options_(std::move(options)) {}
  ~Inboxes();

  // Receive thread: the inbox of `link` (made on first use).
  Inbox* Get(const std::shared_ptr<Transport>& link);
  // Receive thread: the links are now `active`; inboxes of others close.
  void LinksChanged(absl::Span<const std::shared_ptr<Transport>> active);
  // Receive thread: flushes every inbox with pending releases; false if
  // some are left (a full ring).
  bool FlushAll();
  // Any thread: whether some inbox has releases to flush.
  bool AnyPending() const { return pending_.load(std::memory_order_acquire) > 0; }

  struct Stats {
    uint32_t mapped_segments = 0;
    uint64_t mapped_bytes = 0;
    uint64_t dropped_bad_refs = 0;
  };
  Stats stats() const;
  void CountBadRef() { bad_refs_.fetch_add(1, std::memory_order_relaxed); }

 private:
  friend class Inbox;

  const Options options_;
  // Receive thread only.
  std::map<const Transport*, std::shared_ptr<Inbox>> inboxes_;
  // How many inboxes have releases pending. Changed under the inbox's
  // mutex as its list turns nonempty or empty (acq_rel); AnyPending's
  // acquire load pairs with it, so a receive thread that sees it nonzero
  // and takes that inbox's mutex sees the tokens.
  std::atomic<size_t> pending_{0};
  // Statistics (relaxed).
  std::atomic<uint32_t> mapped_segments_{0};
  std::atomic<uint64_t> mapped_bytes_{0};
  std::atomic<uint64_t> bad_refs_{0};
};

// Whether the calling thread batches its releases for a later FlushAll
// (the receive thread sets it for itself) instead of flushing each at once.
void SetDeferReleasesOnThisThread(bool defer);

}  // namespace pool
}  // namespace mesh

#endif  // SHMESH_MESH_POOL_INBOX_H_
