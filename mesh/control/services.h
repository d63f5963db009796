// The gRPC services a node serves (proto/mesh/v1/mesh.proto): Discovery,
// Topology and Messaging, as thin callback-API adapters over the narrow
// interfaces of backend.h, so that they know nothing of the node. Health
// checking and reflection are added by ControlServer (control_server.h),
// which also caps request size. The services bound the rest of what a client controls, with
// INVALID_ARGUMENT naming the field and the limit: JoinRequest.known (1024
// members), Member.grpc_address (300 bytes), WatchTopology.min_interval_ms
// (60 s), Send.timeout_ms (10 s); and, with RESOURCE_EXHAUSTED, watch
// streams (64 at once), whole-mesh GetTopology calls (8 at once), and
// calls waiting for an executor thread (ServiceOptions.max_queued_calls).
//
// Threads: no thread per call. Each service set owns two executors
// (executor.h), started by MakeServices and stopped when the last service of
// the set is destroyed: "mesh-ctl-calls" (ServiceOptions.call_threads) runs
// what may block: Messaging.Send (waiting for ring room), whole-mesh
// GetTopology and the whole-mesh watch's gatherings; "mesh-ctl-watch" (one
// thread) runs the watch streams' steps (build the next message) and their
// timers. A watch stream is a reactor with no thread of its own: it writes
// the next message when something changed (ChangeSource listener), the
// previous write finished and min_interval has passed. The whole-mesh watch
// also re-gathers every max(min_interval, 1 s) and pushes when the shape
// changed (topology::SameShape) or the node's own generation moved, so that
// links between other nodes are reported too. Unary handlers that need no
// waiting (Join, Leave, local GetTopology) answer on gRPC's thread.
#ifndef SHMESH_MESH_CONTROL_SERVICES_H_
#define SHMESH_MESH_CONTROL_SERVICES_H_

#include <memory>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "mesh/control/backend.h"

namespace mesh {
namespace control {

struct ServiceOptions {
  // Threads of the executor for blocking calls (Send, whole-mesh gathers).
  int call_threads = 4;
  // Calls that may wait for one of them; more fail with RESOURCE_EXHAUSTED.
  int max_queued_calls = 64;
};

// A fresh set of services over `backends` (borrowed: they must outlive the
// services and every call, i.e. the gRPC server). One set per server, since
// the limits above count per set. The services must be destroyed after the
// server has shut down (ControlServer does so); that joins the executors.
std::vector<std::unique_ptr<grpc::Service>> MakeServices(const Backends& backends,
                                                         const ServiceOptions& options = ServiceOptions());

}  // namespace control
}  // namespace mesh

#endif  // SHMESH_MESH_CONTROL_SERVICES_H_
