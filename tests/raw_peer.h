// Test-only: a hostile peer's raw link to a real mesh::Node. It announces
// itself to the node over gRPC Discovery (Join) as member `name` (this
// process, a gRPC address nobody serves) and dials the node's link socket
// with a plain mesh::Link, so the test can write any frame into the node's
// ring and any control message onto its link socket. Used by
// hostile_frames_test and hostile_pool_test.
#ifndef SHMESH_TESTS_RAW_PEER_H_
#define SHMESH_TESTS_RAW_PEER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "mesh/links/link.h"
#include "mesh/node.h"

namespace shmesh {
namespace testing {

// Joins `node` as member `name` / `id` with rings of `ring_bytes` (run
// directory `dir`, for the names of its never-served sockets), then dials
// it. Errors: the Join's or the dial's.
absl::StatusOr<std::shared_ptr<mesh::Link>> DialAsRawPeer(mesh::Node* node, const std::string& dir,
                                                          const std::string& name, uint64_t id, uint64_t ring_bytes);

}  // namespace testing
}  // namespace shmesh

#endif  // SHMESH_TESTS_RAW_PEER_H_
