// Helpers shared by the in-process tests of //mesh (node_test,
// hostile_peer_test, control_server_test): a test node's config, a member
// announced by hand, line I/O with forked children over pipes, and
// per-thread CPU time. Test-only.
// Thread contract: thread-safe free functions.
#ifndef SHMESH_MESH_TEST_UTIL_H_
#define SHMESH_MESH_TEST_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mesh/v1/config.pb.h"

namespace mesh {
namespace testing_util {

// A node named `name` in run directory `dir`, seeded with the gRPC sockets
// of `seeds` in the same directory, with 64 KiB rings and WARNING logs
// (DEBUG when MESH_TEST_LOG is set).
mesh::v1::NodeConfig TestConfig(const std::string& dir, const std::string& name,
                                const std::vector<std::string>& seeds);

// Reads one line ("\n"-terminated, without it) from `fd` (borrowed),
// blocking; "" at EOF.
std::string ReadLine(int fd);
// Writes `line` and a "\n" to `fd` (borrowed); errors are ignored (the
// reader is a test process that checks what it got).
void WriteLine(int fd, const std::string& line);

// Announces a process `pid` as member `name` (id `id`, our uid, a 4 KiB
// ring) to the node serving gRPC at `grpc_address`, through Discovery.Join,
// as a process joining by hand would. Its own gRPC and link sockets are
// named in `dir` but nobody serves them. The gRPC status as an
// absl::Status.
absl::Status AnnounceMember(const std::string& grpc_address, const std::string& dir,
                            const std::string& name, uint64_t id, pid_t pid);

// CPU time (user + system) used by the threads of this process named
// `comm` (all of them added up: several nodes in one process each have
// one of every thread), from /proc/self/task/*/stat; -1 s if none.
absl::Duration ThreadCpu(const std::string& comm);

}  // namespace testing_util
}  // namespace mesh

#endif  // SHMESH_MESH_TEST_UTIL_H_
