// Test-only: two real Links in one process. "a" dials "b" over a real
// SOCK_SEQPACKET listener in a directory of the caller's, "b" accepts on a
// second thread: real memfd rings, doorbells and link socket, no mocks.
#ifndef SHMESH_MESH_LINKS_LINK_PAIR_TESTUTIL_H_
#define SHMESH_MESH_LINKS_LINK_PAIR_TESTUTIL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mesh/links/link.h"

namespace mesh {
namespace testing_util {

// Handshake parameters of a test link end: rings of `ring_bytes`, this
// process's uid allowed, no spinning, beats every `beat`.
LinkParams TestLinkParams(const std::string& name, uint64_t id, uint64_t ring_bytes = 4096,
                          absl::Duration beat = absl::Milliseconds(100));

struct LinkPair {
  std::shared_ptr<Link> a;  // a's side: peer "b"
  std::shared_ptr<Link> b;  // b's side: peer "a"
};

// Links `a` (dialing) and `b` (accepting) through a socket in `dir` (a
// short directory: socket paths are limited to 107 bytes). The socket file
// is removed afterwards.
absl::StatusOr<LinkPair> MakeLinkPair(const std::string& dir, const LinkParams& a, const LinkParams& b);

}  // namespace testing_util
}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_LINK_PAIR_TESTUTIL_H_
