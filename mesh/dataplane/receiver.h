// Receiver: the node's data plane on the receiving side. It owns the
// receive thread ("mesh-recv"), which
//   - drains every link's ring in turn (kDrainBatch frames per link per
//     pass, for fairness; a ring whose consumer role a caller has borrowed
//     for its response, Transport::BorrowConsumer, is left to it), checks each frame's envelope (envelope.h) and
//     routes it: a plain message to the message handler or the receive
//     queue, a topic frame, request or response to the FrameRouter, a pool
//     reference (resolved to the payload in the sender's segment) as the
//     message or publication it carries, pool releases to the SendPool; a
//     frame that is malformed, of an unknown version or kind, a reference
//     that does not resolve, or larger than max_message_bytes, is counted
//     and dropped (never delivered to the wrong place). A frame
//     the router refuses (a full pull subscription) stays in its ring and
//     that link waits until Wake();
//   - reads the links' control channels (link socket): a Ping is answered,
//     a Goodbye means the peer leaves (its last frames are delivered, then
//     the link is retired), EOF means the peer is gone;
//   - finds dead links (EOF, a corrupt ring, a hung-up doorbell, a broken
//     control protocol) and retires them itself, through `link_failed`,
//     without waiting for any other thread (peer-down never waits on gRPC);
//   - spins for the configured time after the last frame, then sleeps in
//     epoll on the doorbells and link sockets. While it spins it makes no
//     syscall on the path between two frames: it looks at the link sockets
//     (one epoll_wait) only once the links have been quiet for a while, or
//     every kBusyCheckNs on a busy stream.
//
// Thread contract: Create/Start/Stop from the node's lifecycle (one thread);
// Wake(), Leave() and counters() from any thread. The hooks run on the
// receive thread: the message handler is the application's (it should not
// block for long: it delays every link); `link_failed` must not block.
#ifndef SHMESH_MESH_DATAPLANE_RECEIVER_H_
#define SHMESH_MESH_DATAPLANE_RECEIVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "base/epoll.h"
#include "base/unique_fd.h"
#include "mesh/base/log.h"
#include "mesh/dataplane/frame_dispatch.h"
#include "mesh/dataplane/frame_router.h"
#include "mesh/dataplane/receive_queue.h"
#include "mesh/dataplane/shared_rings.h"
#include "mesh/links/link_table.h"
#include "mesh/links/transport.h"
#include "mesh/message.h"
#include "mesh/pool/inbox.h"
#include "mesh/pool/send_pool.h"
#include "mesh/v1/config.pb.h"

namespace mesh {

class Receiver {
 public:
  struct Options {
    mesh::v1::WaitPolicy wait;
    // Payloads larger than this are dropped (and counted).
    size_t max_message_bytes = 0;
  };
  struct Hooks {
    // Runs for every message, if set; otherwise messages go to `queue`.
    std::function<void(const MessageView&)> message_handler;
    ReceiveQueue* queue = nullptr;  // borrowed; required without a handler
    // Topics, requests, responses and Interest control messages go here
    // (borrowed; null: they are counted as unhandled and dropped).
    FrameRouter* router = nullptr;
    // Pools (borrowed; null: pool frames are counted as unhandled and
    // dropped, pool segments fail the link): `inboxes` resolves kPoolRef
    // frames (the segments peers handed over), `pool` takes the releases
    // of this node's blocks (kPoolRelease frames).
    pool::Inboxes* inboxes = nullptr;
    pool::SendPool* pool = nullptr;
    // Checks the topic name of a shared ring offer (LinkControl.SharedRing;
    // shared_rings.h). Unset: offers fail the link.
    std::function<absl::Status(absl::string_view topic)> valid_topic;
    // A link found dead; the node retires it. Runs on the receive thread
    // (or a sender's); must not block.
    std::function<void(const std::shared_ptr<Transport>&, absl::string_view why)> link_failed;
    // The peer said Goodbye on `link` (it left the mesh for good); called
    // just before `link_failed`. Unset: only link_failed runs. Must not block.
    std::function<void(const Transport& link)> peer_left;
  };
  // What the receiver dropped or ignored, for the node's diagnostics.
  struct Counters {
    uint64_t dropped_oversize = 0;
    uint64_t dropped_invalid = 0;    // malformed envelope or unknown version/kind
    uint64_t dropped_unhandled = 0;  // a known kind this node does not handle
    uint64_t dropped_bad_refs = 0;   // a pool reference that does not resolve
    uint64_t pings_answered = 0;
    uint64_t pongs = 0;
    uint64_t control_ignored = 0;    // control messages of an unknown kind
    uint64_t shared_rings_dropped = 0;  // evicted, publisher gone, or corrupt
  };

  // Makes the wake-up eventfd and the epoll set (so that running out of
  // descriptors fails here, not in the thread). `table` and `log` are
  // borrowed and must outlive the receiver.
  static absl::StatusOr<std::unique_ptr<Receiver>> Create(Options options, Hooks hooks, const LinkTable* table,
                                                          const Logger* log);
  ~Receiver();

  // Starts / stops and joins the receive thread. Stop is idempotent.
  void Start();
  void Stop();
  // The link table of the receiver whose thread this is (the node whose
  // handlers run here), or null on any other thread.
  static const LinkTable* CurrentThreadTable();
  // Makes the thread look at the link table again (a link came or went).
  void Wake();
  // The peer of `link` said it leaves (gRPC Leave): its frames are drained
  // and delivered, then the link is retired (as on a control Goodbye).
  void Leave(std::shared_ptr<Transport> link);
  // The eventfd that wakes the thread (borrowed): ReceiveQueue rings it
  // when it makes room.
  int wake_fd() const { return wake_.get(); }
  Counters counters() const;

 private:
  Receiver(Options options, Hooks hooks, const LinkTable* table, const Logger* log, base::UniqueFd wake,
           base::Epoll epoll, std::optional<SharedRings> shared);
  void Loop();

  const Options options_;
  const Hooks hooks_;
  const LinkTable* const table_;
  const Logger* const log_;
  const base::UniqueFd wake_;
  base::Epoll epoll_;  // used by the receive thread only (after Start)
  // The shared rings this node reads (receive thread only); none without
  // Hooks::valid_topic.
  std::optional<SharedRings> shared_;
  std::thread thread_;
  // Release in Stop pairs with acquire in Loop: a loop that sees it also
  // sees everything Stop did before.
  std::atomic<bool> stopping_{false};

  absl::Mutex leave_mu_;
  std::vector<std::shared_ptr<Transport>> leaving_ ABSL_GUARDED_BY(leave_mu_);
  // "leaving_ is not empty", so the loop need not take leave_mu_ on every
  // pass: release store in Leave (after the push), acquire exchange in the
  // loop (before taking the batch).
  std::atomic<bool> leaving_pending_{false};

  // Written by the receive thread only (relaxed load + store), read by
  // counters() relaxed: plain statistics, they publish no other memory.
  struct AtomicCounters {
    DispatchCounters dispatch;  // the frames FrameDispatch dropped
    std::atomic<uint64_t> pings_answered{0}, pongs{0}, control_ignored{0}, shared_rings_dropped{0};
  };
  AtomicCounters counters_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_RECEIVER_H_
