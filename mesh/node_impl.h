// NodeImpl: the wiring behind mesh::Node (internal to //mesh). It owns the
// components and decides the start/stop order and which component gets
// which callback; the work itself is theirs:
//
//   membership/  Membership (control thread "mesh-control") over Roster
//                (who is a member), Reconciler (whom to join, announce to
//                and dial, and when), PeerClient (gRPC calls to other
//                nodes, no threads of its own)
//   links/       LinkSetup (link socket, accept thread "mesh-accept", Dial,
//                spare ring), LinkTable (live links, lock-free lookup),
//                Link (the shared-memory Transport)
//   dataplane/   Receiver (receive thread "mesh-recv": drains rings,
//                checks envelopes, routes, retires dead links where it
//                finds them), ReceiveQueue (Receive()), envelope
//   health/      HealthMonitor (health thread "mesh-health")
//   events/      EventQueue (events thread "mesh-events": runs the user's
//                peer up/down/unresponsive handlers with no lock held)
//   topology/    LocalSnapshot / MergeSnapshots (pure functions)
//   control/     ControlServer + services over the narrow interfaces of
//                control/backend.h, which this class implements
//
// Threads all belong to the components: Membership's control thread
// ("mesh-control": the reconciler's plans, blocking gRPC Joins and dials one
// at a time), LinkSetup's accept thread, the Receiver's, the
// HealthMonitor's, the EventQueue's, the services' executors. Peer-down
// never waits on the control thread: a link found dead is retired by
// whichever thread found it (LinkFailed).
//
// Locks: Membership's mutex (roster, reconciler; never held across a call to
// another node or to user code), then the LinkTable's, then the
// EventQueue's: a link is installed and its peer-up posted under the first
// (Membership::Admit), removed and its peer-down posted under it too
// (Membership::Depart). Change listeners (the watch streams) are called with
// no lock but listeners_mu_ held.
#ifndef SHMESH_MESH_NODE_IMPL_H_
#define SHMESH_MESH_NODE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "mesh/base/log.h"
#include "mesh/control/backend.h"
#include "mesh/control/control_server.h"
#include "mesh/dataplane/frame_router.h"
#include "mesh/dataplane/receive_queue.h"
#include "mesh/dataplane/receiver.h"
#include "mesh/dataplane/sender.h"
#include "mesh/events/event_queue.h"
#include "mesh/health/health_monitor.h"
#include "mesh/interest/interest.h"
#include "mesh/links/link_setup.h"
#include "mesh/links/link_table.h"
#include "mesh/membership/membership.h"
#include "mesh/node.h"
#include "mesh/pool/inbox.h"
#include "mesh/pool/send_pool.h"
#include "mesh/pubsub/topics.h"
#include "mesh/rpc/rpc.h"
#include "mesh/v1/config.pb.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {

class NodeImpl final : public control::DiscoveryBackend,
                       public control::TopologyBackend,
                       public control::MessagingBackend,
                       public control::ChangeSource,
                       public FrameRouter {
 public:
  explicit NodeImpl(mesh::v1::NodeConfig resolved_config);
  ~NodeImpl() override;

  absl::Status Start();
  void Stop();
  absl::Status RestartControlServer();

  const std::string& name() const { return config_.name(); }
  uint64_t id() const { return id_; }
  std::string grpc_address() const;
  const mesh::v1::NodeConfig& config() const { return config_; }
  const Logger& logger() const { return log_; }

  // --- the public API (node.h) ---
  absl::Status SendApi(absl::string_view peer, absl::string_view payload, absl::Time deadline);
  absl::StatusOr<size_t> SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                   absl::Time deadline);
  absl::StatusOr<BroadcastResult> BroadcastApi(absl::string_view payload, absl::Time deadline);
  // Loans (node_data.cc). SendLoan and BroadcastLoan empty `*loan` when
  // it was sent.
  absl::StatusOr<mesh::Loan> NewLoan(size_t bytes, absl::Time deadline);
  absl::Status SendLoan(absl::string_view peer, mesh::Loan* loan, absl::Time deadline);
  absl::StatusOr<BroadcastResult> BroadcastLoan(mesh::Loan* loan, absl::Time deadline);
  // The pool's share of the topology.
  mesh::v1::PoolUsage PoolReport() const;
  absl::Status SetMessageHandler(std::function<void(const MessageView&)> handler);
  absl::StatusOr<Message> Receive(absl::Time deadline);
  int receive_fd() const;
  absl::Status SetPeerUpHandler(std::function<void(const PeerInfo&)> handler);
  absl::Status SetPeerDownHandler(std::function<void(const PeerInfo&)> handler);
  absl::Status SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool)> handler);
  std::vector<std::string> Peers() const;
  std::vector<std::string> UnresponsivePeers() const;
  absl::Status WaitForPeers(size_t n, absl::Time deadline);
  absl::StatusOr<mesh::v1::TopologySnapshot> Topology(bool local_only);
  // Topics and services (node_topics.cc).
  absl::StatusOr<std::unique_ptr<Publisher>> Advertise(absl::string_view topic, PublisherOptions options);
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(absl::string_view pattern,
                                                          std::function<void(const MessageView&)> handler,
                                                          SubscribeOptions options);
  absl::StatusOr<std::unique_ptr<ServiceRegistration>> Serve(absl::string_view service, ServiceHandler handler);
  absl::StatusOr<std::string> Call(absl::string_view service, absl::string_view request, absl::Time deadline,
                                   const CallOptions& options);
  std::vector<std::string> Servers(absl::string_view service) const;

  // --- FrameRouter (receive thread; node_topics.cc) ---
  bool RouteFrame(const std::shared_ptr<Transport>& link, const FrameHeader& header, absl::string_view payload,
                  const std::shared_ptr<const SharedPayload>& pooled) override;
  bool RouteShared(const std::shared_ptr<Transport>& link, uint32_t channel, absl::string_view topic,
                   absl::string_view payload) override;
  absl::Status RouteControl(const std::shared_ptr<Transport>& link, const mesh::v1::LinkControl& msg) override;
  void LinksChanged(absl::Span<const std::shared_ptr<Transport>> active) override;

  // --- control::DiscoveryBackend ---
  absl::StatusOr<std::vector<mesh::v1::Member>> HandleJoin(const mesh::v1::Member& member,
                                                           const std::vector<mesh::v1::Member>& known) override;
  void HandleLeave(const std::string& name, uint64_t id) override;
  std::vector<mesh::v1::Member> Members() const override;
  // --- control::TopologyBackend ---
  absl::StatusOr<mesh::v1::TopologySnapshot> LocalTopology() override;
  absl::StatusOr<mesh::v1::TopologySnapshot> GatherTopology(absl::Time deadline) override;
  // --- control::MessagingBackend ---
  absl::Status Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) override;
  absl::StatusOr<control::BroadcastOutcome> Broadcast(absl::string_view payload, absl::Time deadline) override;
  // --- control::ChangeSource ---
  uint64_t ChangeGeneration() const override;
  ListenerId AddChangeListener(std::function<void()> listener) override;
  void RemoveChangeListener(ListenerId id) override;
  bool stopping() const override;

 private:
  // FAILED_PRECONDITION unless started and not stopping; `what` names the
  // call.
  absl::Status CheckRunning(absl::string_view what) const;
  absl::Status CheckNotStarted(absl::string_view what) const;

  mesh::v1::Member SelfMember() const;
  LinkParams MakeLinkParams() const;
  absl::Duration HeartbeatInterval() const;
  // Calls the change listeners (no lock of ours but listeners_mu_ held).
  void NotifyChange();

  // Links.
  void InstallLink(std::shared_ptr<Transport> link);
  // Retires `link` at once, whichever thread noticed it failed: the first
  // caller marks it down, logs `why`, removes it from the table, departs
  // the member (so its name is free) and posts the peer-down event; later
  // callers do nothing. Never blocks on a peer or on gRPC.
  void LinkFailed(const std::shared_ptr<Transport>& link, absl::string_view why);
  void OnLivenessChange(const std::shared_ptr<Transport>& link, bool unresponsive);
  // Topics and services: the wiring (node_topics.cc).
  void MakeTopicsAndServices();
  void TopicsLinkUp(const std::shared_ptr<Transport>& link);
  void TopicsLinkDown(const Transport* link, absl::string_view why);
  // Re-matches every publisher on the events thread (links or interests
  // changed).
  void PostRematch();
  mesh::v1::NodeTopics TopicsReport() const;

  const mesh::v1::NodeConfig config_;
  const uint64_t id_;
  const Logger log_;
  const std::string link_path_;

  // Handlers: set before Start(), read-only afterwards.
  std::function<void(const MessageView&)> message_handler_;
  std::function<void(const PeerInfo&)> peer_up_handler_;
  std::function<void(const PeerInfo&)> peer_down_handler_;
  std::function<void(const PeerInfo&, bool)> peer_unresponsive_handler_;

  // Written by Start/Stop; read by every thread. Release in Stop pairs with
  // acquire in the readers, so one that sees `stopping_` also sees
  // everything Stop did before setting it.
  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};

  // Components, in construction order (destroyed in reverse).
  LinkTable links_;
  events::EventQueue events_;
  // The pool (sending side; shared with the loans and blocks alive) and
  // the peers' segments (receiving side).
  std::shared_ptr<pool::SendPool> pool_;
  pool::Inboxes inboxes_;
  Sender sender_;
  std::unique_ptr<ReceiveQueue> queue_;
  std::unique_ptr<Receiver> receiver_;
  std::unique_ptr<Membership> membership_;
  std::unique_ptr<LinkSetup> link_setup_;
  std::unique_ptr<health::HealthMonitor> health_;
  // Topics and services: what peers subscribe to and serve (exchanged on
  // the links' control channels), publishers and subscriptions, services
  // and calls. Made in the constructor: usable before Start().
  interest::Exchange interest_;
  std::unique_ptr<pubsub::Topics> topics_;
  std::unique_ptr<rpc::Rpc> rpc_;
  // "A rematch is queued on the events thread": at most one at a time
  // (acq_rel exchange in PostRematch, release store when it starts).
  std::atomic<bool> rematch_queued_{false};
  control::ControlServer control_server_;

  mutable absl::Mutex address_mu_;
  std::string grpc_address_ ABSL_GUARDED_BY(address_mu_);

  absl::Mutex listeners_mu_;
  std::map<ListenerId, std::function<void()>> listeners_ ABSL_GUARDED_BY(listeners_mu_);
  ListenerId next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 1;
};

}  // namespace mesh

#endif  // SHMESH_MESH_NODE_IMPL_H_
