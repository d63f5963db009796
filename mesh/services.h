// The gRPC services a node serves (proto/mesh/v1/mesh.proto): Discovery and
// Topology, as thin callback-API adapters over NodeImpl. Health checking and
// reflection are added by ControlServer (control_server.h), which also caps
// request size. The services bound the rest of what a client controls, with
// INVALID_ARGUMENT naming the field and the limit: JoinRequest.known (1024
// members), Member.grpc_address (300 bytes), WatchTopology.min_interval_ms
// (60 s), Send.timeout_ms (10 s); and, with RESOURCE_EXHAUSTED, watch
// streams (64 at once) and whole-mesh GetTopology calls (8 at once), each of
// which holds a thread.
// Thread contract: gRPC calls the handlers on its own threads; watch streams
// each run one thread of their own until the client cancels or the node stops.
#ifndef SHMESH_MESH_SERVICES_H_
#define SHMESH_MESH_SERVICES_H_

#include <memory>
#include <vector>

#include "grpcpp/grpcpp.h"

namespace mesh {

class NodeImpl;

// A fresh set of services for `node` (borrowed; must outlive the gRPC
// server); one set per server, since the limits above count per set.
std::vector<std::unique_ptr<grpc::Service>> MakeServices(NodeImpl* node);

}  // namespace mesh

#endif  // SHMESH_MESH_SERVICES_H_
