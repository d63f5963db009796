// PeerClient: how a node calls other nodes' Discovery and Topology services.
// It keeps one gRPC channel per target (with the mesh's reconnect backoff,
// 20 ms .. 2 s, instead of gRPC's default that grows to 120 s and would hide
// a member that came back), and makes calls either blocking (Join) or
// asynchronously through gRPC's callback API. It creates no thread of its
// own, and none per call: a fan-out to N members issues N calls at once and
// waits for their completions.
//
// Completion callbacks (`done`) run on gRPC's internal threads: they must be
// short and must not block (post the result to the node's own queue or
// thread if it needs more). A `done` may start new calls.
//
// Errors: every failed call returns the gRPC code as the absl code (the
// canonical set is shared) with "<Method> at <target>: <gRPC message>", e.g.
// "Join at unix:/run/mesh/b.grpc: name b is held by pid 42".
//
// Thread contract: thread-safe. The blocking calls (Join, GetTopologyAll,
// LeaveAll) must not be made from a `done` callback (they would hold a gRPC
// thread while waiting for gRPC). A PeerClient may be destroyed while async
// calls are in flight: each call keeps its own channel alive, and its `done`
// still runs.
#ifndef SHMESH_MESH_MEMBERSHIP_PEER_CLIENT_H_
#define SHMESH_MESH_MEMBERSHIP_PEER_CLIENT_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace membership {

struct PeerClientOptions {
  // gRPC reconnect backoff of every channel (GRPC_ARG_{MIN,INITIAL,MAX}_
  // RECONNECT_BACKOFF_MS).
  absl::Duration min_reconnect_backoff = absl::Milliseconds(20);
  absl::Duration max_reconnect_backoff = absl::Seconds(2);
};

class PeerClient {
 public:
  PeerClient() : PeerClient(PeerClientOptions()) {}
  explicit PeerClient(PeerClientOptions options);
  PeerClient(const PeerClient&) = delete;
  PeerClient& operator=(const PeerClient&) = delete;
  ~PeerClient();

  // The cached channel to `target` (a gRPC address such as
  // "unix:/run/mesh/b.grpc"), created on first use. Never null; connecting
  // happens lazily, on the first call.
  std::shared_ptr<grpc::Channel> Channel(const std::string& target);
  // Drops the cached channel to `target` (a member that left for good), so
  // the cache does not grow without bound. Calls in flight are unaffected.
  void Forget(const std::string& target);
  size_t cached_channels() const;

  // Discovery.Join on `target`, blocking until it answers or `deadline`.
  // Errors: the callee's (ALREADY_EXISTS, INVALID_ARGUMENT), UNAVAILABLE if
  // it cannot be reached, DEADLINE_EXCEEDED; messages "Join at <target>: ...".
  absl::StatusOr<mesh::v1::JoinResponse> Join(const std::string& target, const mesh::v1::JoinRequest& req,
                                              absl::Time deadline);

  // Discovery.Leave on `target`; returns at once, and `done` runs once with
  // the outcome (on a gRPC thread, possibly before LeaveAsync returns).
  // Errors as Join ("Leave at <target>: ...").
  void LeaveAsync(const std::string& target, const mesh::v1::LeaveRequest& req, absl::Time deadline,
                  std::function<void(absl::Status)> done);
  // Topology.GetTopology{local_only} on `target`, like LeaveAsync
  // ("GetTopology at <target>: ...").
  void GetTopologyAsync(const std::string& target, bool local_only, absl::Time deadline,
                        std::function<void(absl::StatusOr<mesh::v1::TopologySnapshot>)> done);

  // Fan-outs: issue the call to every target at once, then wait until all
  // have completed (each within `deadline`, so the whole takes about one
  // deadline at most, not their sum). Result i belongs to targets[i].
  std::vector<absl::StatusOr<mesh::v1::TopologySnapshot>> GetTopologyAll(const std::vector<std::string>& targets,
                                                                         bool local_only, absl::Time deadline);
  std::vector<absl::Status> LeaveAll(const std::vector<std::string>& targets, const mesh::v1::LeaveRequest& req,
                                     absl::Time deadline);

 private:
  // One target's channel and the stubs over it. Stubs are thread-safe; a
  // call holds a reference to its Stubs until it completes.
  struct Stubs {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<mesh::v1::Discovery::Stub> discovery;
    std::unique_ptr<mesh::v1::Topology::Stub> topology;
  };
  std::shared_ptr<const Stubs> StubsFor(const std::string& target);

  const PeerClientOptions options_;
  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<const Stubs>> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace membership
}  // namespace mesh

#endif  // SHMESH_MESH_MEMBERSHIP_PEER_CLIENT_H_
