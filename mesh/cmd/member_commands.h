// The meshctl commands that join the mesh as a short-lived member (see
// member.h): echo and hz subscribe, pub publishes, call calls a service.
// Each one is given the mesh as the target answered GetTopology (so it
// knows whom to wait for), runs, and returns meshctl's exit status after
// printing its output on stdout and one-line errors on stderr.
//
// Thread contract: call from meshctl's main thread, after
// BlockStopSignals().
#ifndef SHMESH_MESH_CMD_MEMBER_COMMANDS_H_
#define SHMESH_MESH_CMD_MEMBER_COMMANDS_H_

#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace cmd {

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// The flags these commands use (validated by meshctl).
struct MemberFlags {
  std::string target;  // the seed: a normalized gRPC address
  // --timeout_ms: how long to wait for the links to the mesh's members;
  // for call, also the call's deadline.
  absl::Duration timeout;
  // --wait_ms: then, for pub's subscribers (0: none) or call's server.
  absl::Duration wait;
  absl::Duration publish_timeout;  // --send_wait_ms: each Publish's deadline
  int64_t count = 0;               // --count; pub: -1 when not given
  double rate_hz = 0;              // --rate (pub)
  int64_t window = 0;              // --window (hz)
  std::string server;              // --server (call)
};

// `mesh`: the target's GetTopology answer (the whole mesh).
int RunEcho(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
            const std::string& pattern);
int RunHz(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
          const std::string& pattern);
int RunPub(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
           const std::string& topic, const std::string& data);
int RunCall(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
            const std::string& service, const std::string& data);

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_MEMBER_COMMANDS_H_
