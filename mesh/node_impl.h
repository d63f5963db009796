// NodeImpl: the machinery behind mesh::Node (internal to //mesh).
//
// Threads:
//   - control thread: accepts link connections and completes handshakes,
//     joins seeds, announces this node to members it learns of, dials the
//     members whose name sorts after ours, retires dead links, and runs the
//     peer up/down handlers. It sleeps in epoll when there is nothing to do.
//   - receive thread: drains every link's rx ring, runs the message handler
//     (or fills the Receive queue), and watches every link socket for EOF.
//     It spins for the configured time after the last message, then sleeps
//     in epoll on the rings' doorbells.
//   - gRPC threads: Discovery and Topology requests (services.cc).
// Shared state is guarded by `mu_`; the receive thread reads the link set
// through a copy it refreshes when `links_generation_` changes.
#ifndef SHMESH_MESH_NODE_IMPL_H_
#define SHMESH_MESH_NODE_IMPL_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
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
#include "mesh/link.h"
#include "mesh/log.h"
#include "mesh/node.h"
#include "proto/mesh/v1/config.pb.h"
#include "proto/mesh/v1/mesh.grpc.pb.h"

namespace mesh {

class NodeImpl {
 public:
  explicit NodeImpl(mesh::v1::NodeConfig resolved_config);
  ~NodeImpl();

  absl::Status Start();
  void Stop();

  const std::string& name() const { return config_.name(); }
  uint64_t id() const { return id_; }
  std::string grpc_address() const;
  const mesh::v1::NodeConfig& config() const { return config_; }
  const Logger& logger() const { return log_; }

  absl::Status Send(absl::string_view peer, absl::string_view payload,
                    absl::Time deadline);
  absl::StatusOr<std::vector<std::string>> Broadcast(absl::string_view payload,
                                                     absl::Time deadline);

  void SetMessageHandler(std::function<void(const MessageView&)> handler);
  absl::StatusOr<Message> Receive(absl::Time deadline);
  int receive_fd() const { return receive_event_.get(); }
  void SetPeerUpHandler(std::function<void(const PeerInfo&)> handler);
  void SetPeerDownHandler(std::function<void(const PeerInfo&)> handler);

  std::vector<std::string> Peers() const;
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
  absl::Status CheckMember(const mesh::v1::Member& m) const;
  // Merges members learned from a Join response (not the member itself).
  void Learn(const std::vector<mesh::v1::Member>& members);
  void LearnLocked(const mesh::v1::Member& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WakeControl();
  void WakeReceiver();

  // Control thread.
  void ControlLoop();
  void AcceptPending();
  absl::Time Reconcile();  // returns when it next wants to run
  bool TryJoinSeeds();
  absl::StatusOr<std::vector<mesh::v1::Member>> CallJoin(
      const std::string& target, absl::Time deadline);
  void InstallLink(std::shared_ptr<Link> link);
  void RetireLinks();
  void DropMemberLocked(const std::string& name, uint64_t id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<mesh::v1::Discovery::Stub> DiscoveryStub(const std::string& target);
  std::shared_ptr<mesh::v1::Topology::Stub> TopologyStub(const std::string& target);
  std::shared_ptr<grpc::Channel> Channel(const std::string& target);

  // Receive thread.
  void ReceiveLoop();
  void Deliver(const Link& link, absl::string_view payload);
  bool QueueFull() const;

  mesh::v1::TopologySnapshot LocalSnapshot() const;

  const mesh::v1::NodeConfig config_;
  const uint64_t id_;
  const Logger log_;
  std::string link_path_;
  std::string grpc_unix_path_;  // empty for TCP

  fdpass::UniqueFd link_listen_;
  fdpass::UniqueFd control_event_;  // eventfd: wakes the control thread
  fdpass::UniqueFd receive_wake_;   // eventfd: wakes the receive thread
  fdpass::UniqueFd receive_event_;  // eventfd: readable while rq_ non-empty

  std::unique_ptr<grpc::Server> server_;
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::thread control_thread_;
  std::thread receive_thread_;

  // Handlers: set before Start(), read-only afterwards.
  std::function<void(const MessageView&)> message_handler_;
  std::function<void(const PeerInfo&)> peer_up_handler_;
  std::function<void(const PeerInfo&)> peer_down_handler_;

  // Written by Start/Stop; read by every thread. Release in Stop pairs with
  // acquire in the loops, so a loop that sees `stopping_` also sees
  // everything Stop did before setting it.
  std::atomic<bool> started_{false};
  std::atomic<bool> stopping_{false};

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
  // mu_ on every loop.
  std::vector<std::shared_ptr<Link>> leaving_links_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> leaving_pending_{false};
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool seeds_joined_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time next_seed_try_ ABSL_GUARDED_BY(mu_);
  absl::Duration seed_backoff_ ABSL_GUARDED_BY(mu_);
  int seed_failures_ ABSL_GUARDED_BY(mu_) = 0;
  // Bumped (under mu_) when links_ changes. The receive thread compares it
  // with the generation of its copy; acquire on its load pairs with the
  // release store under mu_, though it then takes mu_ to copy anyway.
  std::atomic<uint64_t> links_generation_{0};

  mutable absl::Mutex channels_mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_
      ABSL_GUARDED_BY(channels_mu_);

  // Receive queue for Receive(), when no message handler is set.
  mutable absl::Mutex rq_mu_;
  std::deque<Message> rq_ ABSL_GUARDED_BY(rq_mu_);
  size_t rq_bytes_ ABSL_GUARDED_BY(rq_mu_) = 0;
};

}  // namespace mesh

#endif  // SHMESH_MESH_NODE_IMPL_H_
