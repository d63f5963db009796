// Test-only: a hostile peer's raw link to a real mesh::Node. It announces
// itself to the node over gRPC Discovery (Join) as member `name` (this
// process, a gRPC address nobody serves) and dials the node's link socket
// with a plain mesh::Link, so the test can write any frame into the node's
// ring and any control message onto its link socket. PeerDowns records the
// node's peer-down events. Used by hostile_frames_test, hostile_pool_test
// and hostile_shared_ring_test.
#ifndef SHMESH_TESTS_RAW_PEER_H_
#define SHMESH_TESTS_RAW_PEER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "mesh/links/link.h"
#include "mesh/node.h"

namespace shmesh {
namespace testing {

// Joins `node` as member `name` / `id` with rings of `ring_bytes` (run
// directory `dir`, for the names of its never-served sockets), then dials
// it. Errors: the Join's or the dial's.
absl::StatusOr<std::shared_ptr<mesh::Link>> DialAsRawPeer(mesh::Node* node, const std::string& dir,
                                                          const std::string& name, uint64_t id, uint64_t ring_bytes);

// The peer-down events of a node under attack: Handler() is its
// peer-down handler (set before Start); ExpectLinkFails checks, with gtest
// expectations, that the node failed the hostile peer's link and runs on.
class PeerDowns {
 public:
  std::function<void(const mesh::PeerInfo&)> Handler();
  void Clear();
  // Waits up to 10 s for a peer-down, then expects exactly `peer`'s, no
  // peers left at `node`, and `node` still answering Topology. `what`
  // names the case in failures.
  void ExpectLinkFails(mesh::Node* node, const std::string& peer, const std::string& what);

 private:
  absl::Mutex mu_;
  std::vector<std::string> downs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace shmesh

#endif  // SHMESH_TESTS_RAW_PEER_H_
