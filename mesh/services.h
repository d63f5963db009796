// The gRPC services a node serves (proto/mesh/v1/mesh.proto): Discovery and
// Topology, as thin callback-API adapters over NodeImpl. Health checking and
// reflection are added by the server builder in node.cc.
// Thread contract: gRPC calls the handlers on its own threads; watch streams
// each run one thread of their own until the client cancels or the node stops.
#ifndef SHMESH_MESH_SERVICES_H_
#define SHMESH_MESH_SERVICES_H_

#include <memory>
#include <vector>

#include "grpcpp/grpcpp.h"

namespace mesh {

class NodeImpl;

// The services for `node` (borrowed; must outlive the gRPC server).
std::vector<std::unique_ptr<grpc::Service>> MakeServices(NodeImpl* node);

}  // namespace mesh

#endif  // SHMESH_MESH_SERVICES_H_
