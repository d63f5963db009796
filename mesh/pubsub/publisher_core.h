// PublisherCore: one Publisher (mesh/topic.h): its topic id, the linked
// peers whose subscriptions match its topic, the history it keeps, and the
// publish path.
//
// Per matched peer it remembers whether the topic id is declared on that
// link yet (a kTopic frame with kFrameFlagDeclare, written in the ring
// before the first publication) and the sequence number of the next
// message that peer must get. A peer that matches later starts at the
// oldest message in the history, so it gets the history first, in order,
// then the live stream; a publication that could not reach a peer (ring
// full past the deadline) is retried from the history at the next Publish
// while it is still there, so with history nothing is skipped unless it
// fell out of the history.
//
// Matching is lazy on the publish path (two generation loads per Publish:
// the link table's and the interest exchange's) and eager on Rematch(),
// which the node runs on its events thread whenever links or interests
// change, so a late subscriber gets the history even from an idle
// publisher.
//
// Thread contract: thread-safe; every method takes the core's mutex, so
// publications of one publisher are written in order. Detach() (the node
// is going away) makes every later call fail with FAILED_PRECONDITION
// without touching the node.
#ifndef SHMESH_MESH_PUBSUB_PUBLISHER_CORE_H_
#define SHMESH_MESH_PUBSUB_PUBLISHER_CORE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/interest/interest.h"
#include "mesh/links/link_table.h"
#include "mesh/links/transport.h"
#include "mesh/message.h"
#include "mesh/pool/send_pool.h"
#include "mesh/pubsub/shared_fanout.h"
#include "mesh/topic.h"

namespace mesh {
namespace pubsub {

inline constexpr size_t kMaxHistory = 4096;
// How long the end of a Publish waits per new peer for ring room to send
// it the history, when it re-matches for the events thread.
inline constexpr absl::Duration kRematchPatienceInPublish = absl::Milliseconds(50);

// What a publisher needs of its node (borrowed; valid until Detach).
struct PublisherContext {
  const LinkTable* links = nullptr;
  const interest::Exchange* interest = nullptr;
  size_t max_message_bytes = 0;
  // OK while the node runs, else the error naming `what`.
  std::function<absl::Status(absl::string_view what)> check_running;
  // A link a send found broken: the node retires it.
  std::function<void(const std::shared_ptr<Transport>&, absl::string_view why)> link_failed;
  // Runs `fn` on the node's events thread (for on_matched).
  std::function<void(std::function<void()> fn)> post_event;
  // The node's pool: publications of more than `pool_threshold` bytes (and
  // loans) go through it, one block for every subscriber (null: none).
  std::shared_ptr<pool::SendPool> pool;
  size_t pool_threshold = ~size_t{0};
  // Data bytes of a shared ring (PublisherOptions::shared_ring).
  size_t shared_ring_bytes = size_t{1} << 20;
};

class PublisherCore {
 public:
  PublisherCore(PublisherContext context, std::string topic, uint32_t channel, PublisherOptions options);
  ~PublisherCore();

  // PublisherOptions::shared_ring: makes the ring (before first use).
  absl::Status EnableSharedRing();

  const std::string& topic() const { return topic_; }
  uint32_t channel() const { return channel_; }

  absl::StatusOr<PublishResult> Publish(absl::string_view payload, absl::Time deadline);
  // Publishes a block of the node's pool (a loan): every subscriber gets a
  // reference to it, the history keeps it.
  absl::StatusOr<PublishResult> PublishBlock(const pool::BlockHandle& block, absl::Time deadline);
  // A block of the node's pool for a loan (FAILED_PRECONDITION if detached).
  absl::StatusOr<pool::BlockHandle> AllocateBlock(size_t bytes, absl::Time deadline, bool copy = false);
  // Re-matches now and sends pending declarations and history to the new
  // peers, waiting at most `patience` for ring room per peer.
  void Rematch(absl::Duration patience);
  // Both re-match first (lazily: only if something changed).
  size_t matched();
  std::vector<std::string> subscribers();
  absl::Status WaitForSubscribers(size_t n, absl::Time deadline);
  uint64_t published_messages() const { return messages_.load(std::memory_order_relaxed); }
  uint64_t published_bytes() const { return bytes_.load(std::memory_order_relaxed); }
  // The node is going: retires the topic id on every matched link (an
  // empty declaration, best effort) and cuts the core loose.
  void Detach();

 private:
  struct Peer {
    std::shared_ptr<Transport> link;
    bool declared = false;
    uint64_t next_seq = 0;  // the next message this peer must get
  };
  // One publication: its bytes (a ring copy), or a pool block.
  struct Entry {
    std::string bytes;
    pool::BlockHandle block;
    size_t size() const { return block ? block.size() : bytes.size(); }
  };
  struct Outgoing {
    absl::string_view bytes;
    const pool::BlockHandle* block = nullptr;  // set: a pooled publication
    size_t size() const { return block != nullptr ? block->size() : bytes.size(); }
  };
  absl::StatusOr<PublishResult> PublishLocked(const Outgoing& out, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<PublishResult> PublishOutside(const Outgoing& out, absl::Time deadline);
  // The shared ring's publish path (shared_ set).
  PublishResult PublishSharedLocked(absl::string_view payload, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::shared_ptr<Transport>> MatchedLinksLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Writes `out` to `peer`'s link: a frame, or a reference to the block.
  absl::Status WriteLocked(Peer* peer, const Outgoing& out, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-matches if the links or the interests changed since the last time.
  void RematchLocked(bool force) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Brings `peer` up to message `upto` (exclusive): its declaration, then
  // what it missed from the history. Errors as Transport::SendFrame.
  absl::Status CatchUpLocked(Peer* peer, uint64_t upto, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SendOneLocked(Peer* peer, uint64_t seq, const Outgoing& out, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NoteFailure(const std::shared_ptr<Transport>& link, const absl::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void NotifyMatchedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Re-matches and sends declarations and history to the peers behind,
  // waiting for ring room until `deadline`.
  void RematchAndCatchUpLocked(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After releasing mu_: does a Rematch that was asked for while we held
  // it ([RematchWanted]). REQUIRES: mu_ not held.
  void RematchIfWanted();
  absl::Status WaitForSubscribersUnlocked(size_t n, absl::Time deadline);

  const std::string topic_;
  const uint32_t channel_;
  const PublisherOptions options_;
  // The kTopic envelope of this publisher's frames, pre-encoded.
  char prefix_[kFrameBaseBytes];

  // A std::mutex: it is taken once per Publish, and Debian's Abseil is
  // built with deadlock detection, which makes an absl::Mutex Lock/Unlock
  // pair cost 40-70 ns here against 5-10 ns.
  mutable std::mutex mu_;
  // Notified (under mu_) when peers_ changes: WaitForSubscribers.
  std::condition_variable matched_cv_;
  PublisherContext context_ ABSL_GUARDED_BY(mu_);
  bool detached_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Peer> peers_ ABSL_GUARDED_BY(mu_);  // matched, by link
  std::vector<std::shared_ptr<Transport>> live_ ABSL_GUARDED_BY(mu_);
  uint64_t seen_links_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t seen_interest_ ABSL_GUARDED_BY(mu_) = 0;
  size_t notified_matched_ ABSL_GUARDED_BY(mu_) = 0;
  // History: messages next_seq_ - history_.size() .. next_seq_ - 1.
  std::deque<Entry> history_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 0;
  // Set by EnableSharedRing: every publication goes through it.
  std::unique_ptr<SharedFanout> shared_ ABSL_GUARDED_BY(mu_);
  // Bumped whenever RematchLocked rebuilds peers_; shared_ was last
  // synced with peers_ of generation shared_synced_ (a Publish syncs only
  // after a change, or to offer the ring again to a subscriber without it).
  uint64_t peers_generation_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t shared_synced_ ABSL_GUARDED_BY(mu_) = ~uint64_t{0};
  // Statistics (relaxed: plain counters, read for the topology).
  std::atomic<uint64_t> messages_{0}, bytes_{0};
  // peers_.size() as of the last match, for matched() while a Publish
  // holds mu_ (relaxed: a statistic).
  std::atomic<size_t> matched_count_{0};
  // Their names, sorted, for subscribers() likewise (never held with mu_
  // waiting on anything: taken last, briefly).
  absl::Mutex names_mu_;
  std::vector<std::string> matched_names_ ABSL_GUARDED_BY(names_mu_);
  // [RematchWanted] Rematch found mu_ held (a Publish waiting for a full
  // ring, or a short holder: WaitForSubscribers, matched(), subscribers(),
  // AllocateBlock): set by Rematch; the end of PublishLocked takes it and
  // re-matches and catches up itself, and every holder looks again after
  // it unlocks (RematchIfWanted), so a request is never left for a
  // Publish that may never come (a late subscriber's history would wait
  // for it). Relaxed with seq_cst fences: see RematchIfWanted.
  std::atomic<bool> rematch_wanted_{false};
};

}  // namespace pubsub
}  // namespace mesh

#endif  // SHMESH_MESH_PUBSUB_PUBLISHER_CORE_H_
