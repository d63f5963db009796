// NodeImpl: the machinery behind mesh::Node (internal to //mesh).
//
// Threads (named mesh-control, mesh-link, mesh-recv and mesh-health):
//   - control thread: joins seeds, announces this node to members it learns
//     of, dials the members whose name sorts after ours, retires dead links,
//     and runs the peer up/down handlers of those. It sleeps in epoll when
//     there is nothing to do (and wakes every kIdleReconcile otherwise).
//   - link thread: runs the LinkAcceptor (link_acceptor.h): accepts link
//     connections, screens them by SO_PEERCRED, completes every handshake
//     as its hello arrives (each connection waits in the thread's epoll set
//     with its own deadline, so a silent one delays nobody) and installs
//     the links (running the peer-up handler), so that a dialing peer never
//     waits for a control thread busy with a gRPC call. Peer handlers run
//     under handlers_mu_: one at a time, up before down.
//   - receive thread: drains every link's rx ring, runs the message handler
//     (or fills the Receive queue), and watches every link socket for EOF.
//     A link that fails (EOF, corrupt ring, doorbell hung up, or a sender's
//     DATA_LOSS) goes through LinkFailed, whichever thread noticed, and is
//     retired by the control thread (RetireLinks).
//     It spins for the configured time after the last message, then sleeps
//     in epoll on the rings' doorbells.
//   - health thread: every HeartbeatInterval(), bumps the heartbeat in every
//     ring this node reads (so peers see it runs) and checks the heartbeat
//     in every ring it writes, reporting peers that stopped beating for
//     unresponsive_after_ms (and that start again). It never blocks on
//     anything but handlers_mu_, so a control thread stuck in a slow gRPC
//     call cannot make this node look unresponsive.
//   - gRPC threads: Discovery and Topology requests (services.cc), served
//     by control_server_ (control_server.h), which also runs an accept
//     thread on a Unix socket. Restarting it touches nothing else.
// Shared state is guarded by `mu_`; the receive thread reads the link set
// through a copy it refreshes when `links_generation_` changes, and senders
// find links through a per-thread cache validated by the same generation
// (FindLink), so the send path takes no lock but the link's own.
#ifndef SHMESH_MESH_NODE_IMPL_H_
#define SHMESH_MESH_NODE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fdpass/unique_fd.h"
#include "grpcpp/grpcpp.h"
#include "mesh/control_server.h"
#include "mesh/link.h"
#include "mesh/link_acceptor.h"
#include "mesh/log.h"
#include "mesh/node.h"
#include "mesh/os.h"
#include "proto/mesh/v1/config.pb.h"
#include "proto/mesh/v1/mesh.grpc.pb.h"

namespace mesh {

class NodeImpl {
 public:
  explicit NodeImpl(mesh::v1::NodeConfig resolved_config);
  ~NodeImpl();

  absl::Status Start();
  void Stop();
  // Node::RestartControlServer.
  absl::Status RestartControlServer();

  const std::string& name() const { return config_.name(); }
  uint64_t id() const { return id_; }
  std::string grpc_address() const;
  const mesh::v1::NodeConfig& config() const { return config_; }
  const Logger& logger() const { return log_; }

  absl::Status Send(absl::string_view peer, absl::string_view payload,
                    absl::Time deadline);
  absl::StatusOr<size_t> SendBatch(absl::string_view peer,
                                   absl::Span<const absl::string_view> payloads,
                                   absl::Time deadline);
  absl::StatusOr<BroadcastResult> Broadcast(absl::string_view payload, absl::Time deadline);

  void SetMessageHandler(std::function<void(const MessageView&)> handler);
  absl::StatusOr<Message> Receive(absl::Time deadline);
  int receive_fd() const { return receive_event_.get(); }
  void SetPeerUpHandler(std::function<void(const PeerInfo&)> handler);
  void SetPeerDownHandler(std::function<void(const PeerInfo&)> handler);
  void SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool)> handler);

  std::vector<std::string> Peers() const;
  std::vector<std::string> UnresponsivePeers() const;
  absl::Status WaitForPeers(size_t n, absl::Time deadline);

  // Topology of this node (local_only) or of the whole mesh.
  absl::StatusOr<mesh::v1::TopologySnapshot> Topology(bool local_only);

  // --- for the gRPC services (services.cc) ---
  // Adds or refreshes `member`; returns every live member, this node first.
  // `known` are other members the caller knows of.
  absl::StatusOr<std::vector<mesh::v1::Member>> HandleJoin(
      const mesh::v1::Member& member, const std::vector<mesh::v1::Member>& known);
  void HandleLeave(const std::string& name, uint64_t id);
  // This node and every known member, with states.
  std::vector<mesh::v1::Member> Members() const;
  // Bumped on every membership or link change.
  uint64_t ChangeGeneration() const;
  // Waits until ChangeGeneration() != seen, the node stops, or `deadline`.
  // Returns false once the node is stopping.
  bool WaitForChange(uint64_t seen, absl::Time deadline) const;
  bool stopping() const;

 private:
  struct MemberEntry {
    mesh::v1::Member member;
    absl::Time since;
    bool knows_us = false;    // it called Join on us, or we on it
    bool needs_sync = false;  // we learned of members since we last told it
    absl::Time next_announce;
    absl::Duration announce_backoff;
    absl::Time next_dial;
    absl::Duration dial_backoff;
    int failures = 0;
  };

  mesh::v1::Member SelfMember() const;
  LinkParams MakeLinkParams() const;
  absl::Duration HeartbeatInterval() const;
  absl::Status CheckMember(const mesh::v1::Member& m) const;
  // Merges members learned from a Join response (not the member itself).
  void Learn(const std::vector<mesh::v1::Member>& members);
  void LearnLocked(const mesh::v1::Member& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeControl();
  void WakeReceiver();

  // Control thread.
  void ControlLoop();
  // Link thread: sleeps in link_epoll_ and hands every event to
  // link_acceptor_.
  void LinkLoop();
  // The acceptor over link_listen_ and link_epoll_ (Start()).
  std::unique_ptr<LinkAcceptor> MakeLinkAcceptor();
  absl::Time Reconcile();  // returns when it next wants to run
  bool TryJoinSeeds();
  absl::StatusOr<std::vector<mesh::v1::Member>> CallJoin(
      const std::string& target, absl::Time deadline);
  void InstallLink(std::shared_ptr<Link> link);
  // The ring made in advance for the next handshake (so that creating a
  // ring is off the handshake's critical path), or nullopt. Each ring is
  // taken once: one offered in a failed handshake is never reused.
  std::optional<ringbuf::Ring> TakeSpareRing();
  // Makes the next spare ring if there is none (after each handshake).
  void ReplenishSpareRing();
  void RetireLinks();
  // Takes `link` down, whichever thread noticed that it failed (receive
  // thread: hang-up, corrupt ring, doorbell gone, Leave; a sender: corrupt
  // ring): the first caller marks it down, logs `why` and queues it for
  // RetireLinks (peer-down handler, member dropped so its name is free,
  // rings unmapped and descriptors closed once the last user lets go);
  // later callers do nothing. Thread-safe; never blocks on a peer.
  void LinkFailed(const std::shared_ptr<Link>& link, absl::string_view why);
  // Send paths: a send that failed with DATA_LOSS or UNAVAILABLE finished
  // the link; LinkFailed takes it down.
  void NoteSendFailure(const std::shared_ptr<Link>& link, const absl::Status& status);
  void DropMemberLocked(const std::string& name, uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<mesh::v1::Discovery::Stub> DiscoveryStub(const std::string& target);
  std::shared_ptr<mesh::v1::Topology::Stub> TopologyStub(const std::string& target);
  std::shared_ptr<grpc::Channel> Channel(const std::string& target);

  // Send path. The link to `peer`, or null; lock-free while links_ has not
  // changed since this thread last looked `peer` up (see node.cc).
  std::shared_ptr<Link> FindLink(absl::string_view peer);
  // Rewrites a Link::Send/SendBatch error for the caller of Node::Send.
  absl::Status ExplainSendError(const absl::Status& status, const Link& link,
                                size_t bytes) const;

  // Health thread.
  void HealthLoop();

  // The live links, copied into `*out` (and `*seen_generation` updated) if
  // links_ changed since `*seen_generation`; false (nothing touched) if not.
  // For the receive and health threads, which keep their own copy.
  bool CopyLinksIfChanged(uint64_t* seen_generation, std::vector<std::shared_ptr<Link>>* out) const;

  // Receive thread.
  void ReceiveLoop();
  // Runs the message handler, or (without one) appends a copy to `queued`
  // for FlushQueued.
  void Deliver(const Link& link, absl::string_view payload, std::vector<Message>* queued);
  // Moves `queued` into the Receive queue under one lock.
  void FlushQueued(std::vector<Message>* queued);
  bool QueueFull() const;
  // Updates rq_full_ from the queue's size.
  void UpdateQueueFullLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(rq_mu_);

  mesh::v1::TopologySnapshot LocalSnapshot() const;

  const mesh::v1::NodeConfig config_;
  const uint64_t id_;
  // Unique among the NodeImpls of this process (ids are random): keys the
  // per-thread link cache of FindLink.
  const uint64_t uid_;
  const Logger log_;
  std::string link_path_;

  fdpass::UniqueFd link_listen_;
  fdpass::UniqueFd control_event_;  // eventfd: wakes the control thread
  fdpass::UniqueFd link_wake_;      // eventfd: wakes the link thread (Stop)
  fdpass::UniqueFd receive_wake_;   // eventfd: wakes the receive thread
  fdpass::UniqueFd receive_event_;  // eventfd: readable while rq_ non-empty
  fdpass::UniqueFd health_wake_;    // eventfd: wakes the health thread (Stop)
  // The threads' epoll sets, made in Start() (each used by its thread only).
  std::optional<Epoll> control_epoll_;
  std::optional<Epoll> link_epoll_;
  std::optional<Epoll> receive_epoll_;
  // Made in Start() after link_listen_, used by the link thread only,
  // destroyed once that thread is joined.
  std::unique_ptr<LinkAcceptor> link_acceptor_;

  // The gRPC server. Thread-safe itself; its services borrow `this`.
  ControlServer control_server_;
  std::thread control_thread_;
  std::thread link_thread_;
  std::thread receive_thread_;
  std::thread health_thread_;

  // Handlers: set before Start(), read-only afterwards.
  std::function<void(const MessageView&)> message_handler_;
  std::function<void(const PeerInfo&)> peer_up_handler_;
  std::function<void(const PeerInfo&)> peer_down_handler_;
  std::function<void(const PeerInfo&, bool)> peer_unresponsive_handler_;

  // Written by Start/Stop; read by every thread. Release in Stop pairs with
  // acquire in the loops, so a loop that sees `stopping_` also sees
  // everything Stop did before setting it.
  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};

  absl::Mutex spare_mu_;
  std::optional<ringbuf::Ring> spare_ring_ ABSL_GUARDED_BY(spare_mu_);
  // Serializes the peer up/down handlers and orders them per link (see
  // InstallLink). Taken before mu_, never while holding it.
  absl::Mutex handlers_mu_;
  mutable absl::Mutex mu_;
  std::string grpc_address_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, MemberEntry> members_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Link>> links_ ABSL_GUARDED_BY(mu_);
  // Ids of members known dead or gone: announcements of them are ignored.
  std::set<uint64_t> tombstones_ ABSL_GUARDED_BY(mu_);
  // Links the receive thread found closed, for the control thread to retire.
  std::vector<std::shared_ptr<Link>> dead_links_ ABSL_GUARDED_BY(mu_);
  // Links whose peer called Leave, for the receive thread to drain and then
  // retire. `leaving_pending_` says the vector is non-empty without taking
  // mu_ on every loop: release store in HandleLeave, acquire load (and only
  // when set, an exchange to claim it) in ReceiveLoop.
  std::vector<std::shared_ptr<Link>> leaving_links_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> leaving_pending_{false};
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool seeds_joined_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_seed_try_ ABSL_GUARDED_BY(mu_);
  absl::Duration seed_backoff_ ABSL_GUARDED_BY(mu_);
  int seed_failures_ ABSL_GUARDED_BY(mu_) = 0;
  // Configured seeds that are not members, after joining (see Reconcile).
  struct SeedRetry {
    absl::Time next_try = absl::InfinitePast();
    absl::Duration backoff = absl::Milliseconds(20);
  };
  std::map<std::string, SeedRetry> stray_seeds_ ABSL_GUARDED_BY(mu_);
  // [LinkGen] Bumped (under mu_, release) whenever links_ changes: in
  // InstallLink, RetireLinks and Stop. Readers load it with acquire:
  //   - the receive thread compares it with the generation of its copy of
  //     the link set (it then takes mu_ to copy anyway);
  //   - FindLink trusts a per-thread cached lookup only while the value is
  //     the one it read under mu_ when it cached it, i.e. links_ has not
  //     changed since (the cached weak_ptr's lock() keeps the link alive).
  std::atomic<uint64_t> links_generation_{0};

  mutable absl::Mutex channels_mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(channels_mu_);

  // Receive queue for Receive(), when no message handler is set.
  mutable absl::Mutex rq_mu_;
  std::deque<Message> rq_ ABSL_GUARDED_BY(rq_mu_);
  size_t rq_bytes_ ABSL_GUARDED_BY(rq_mu_) = 0;
  // [QueueFull] "rq_ is at or over its bounds", stored (release) under
  // rq_mu_ whenever rq_ changes, loaded (acquire) by the receive thread's
  // QueueFull() without taking rq_mu_ on every loop. A stale value costs
  // at most one batch more or one 10 ms pause less: Receive() also rings
  // receive_wake_ after it makes room in a full queue, and the receiver
  // loads the flag again after that wake-up.
  std::atomic<bool> rq_full_{false};
};

}  // namespace mesh

#endif  // SHMESH_MESH_NODE_IMPL_H_
