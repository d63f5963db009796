// The processes of shmesh_bench. The orchestrator (shmesh_bench.cc)
// re-executes its own binary with --role=NAME for each side of a benchmark;
// every role reports on stdout (see harness.h: READY, then ROW lines and OK
// per command for a measuring client), and a server role exits when its
// stdin closes.
//
// Thread contract: each role runs on the process's main thread and owns
// the process; roles never run concurrently in one process.
#ifndef SHMESH_BENCH_ROLES_H_
#define SHMESH_BENCH_ROLES_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mesh {
class Node;
}  // namespace mesh

namespace shmesh_bench {

struct RoleConfig {
  std::string role;
  int cpu = -1;               // pin to this allowed-CPU index (-1: no pin)
  std::string run_dir;        // sockets go here
  std::string name;           // mesh node name / row name prefix
  std::string seed;           // mesh seed target
  std::string policy;         // mesh wait policy: adaptive | spin
  int expect_peers = 0;       // mesh member: print LINKED at this many peers
  uint64_t warmup = 0;        // ping-pong round trips before measuring
  uint64_t samples = 0;       // measured ping-pong round trips per repetition
  int64_t duration_ms = 0;    // length of one throughput repetition
  int batch = 32;             // messages per SendBatch / WriteBatch
  uint64_t ring_bytes = 1 << 20;  // capacity of each ring
  bool shared_ring = false;       // fanout_pub: PublisherOptions::shared_ring
};

int RingRole(const RoleConfig& config);          // raw ringbuf: forks its peer
int DoorbellRole(const RoleConfig& config);      // eventfd vs socket pair wake-ups: forks its peer
int MeshServerRole(const RoleConfig& config);    // echo/sink node "s"
int MeshClientRole(const RoleConfig& config);    // measuring node "c"
int MeshMemberRole(const RoleConfig& config);    // idle member (formation, CPU)
int UdsServerRole(const RoleConfig& config);
int UdsClientRole(const RoleConfig& config);
int ZmqServerRole(const RoleConfig& config);
int ZmqClientRole(const RoleConfig& config);
int GrpcServerRole(const RoleConfig& config);
int GrpcClientRole(const RoleConfig& config);
// Topics and services (roles_topics.cc).
int TopicServerRole(const RoleConfig& config);     // echoes bench/ping to bench/pong
int TopicClientRole(const RoleConfig& config);     // measures the topic ping-pong
int RpcServerRole(const RoleConfig& config);       // serves "echo"
int RpcClientRole(const RoleConfig& config);       // measures Call round trips
int FanoutPublisherRole(const RoleConfig& config); // one publisher, --expect_peers subscribers
int FanoutSubscriberRole(const RoleConfig& config);
int FirstPublisherRole(const RoleConfig& config);  // publishes first/t (history 1) until stdin closes
int FirstSubscriberRole(const RoleConfig& config); // Subscribe -> first message, 20 tries per command
// The floor (roles_floor.cc): one cache line between two pinned processes.
int FloorRole(const RoleConfig& config);           // measures; forks its echo peer
int FanoutFloorRole(const RoleConfig& config);     // fan-out floor rows: forks its subscribers
// Eclipse iceoryx (roles_iceoryx.cc); --policy copy or zero_copy.
int IoxRoudiRole(const RoleConfig& config);        // runs iox-roudi until stdin closes, then stops it
int IoxServerRole(const RoleConfig& config);       // echo/sink runtime
int IoxClientRole(const RoleConfig& config);       // measuring runtime
// The shared-memory pool (roles_pool.cc): loans and large copied sends.
int PoolServerRole(const RoleConfig& config);          // node "s": echoes loans, counts, copies out
int PoolClientRole(const RoleConfig& config);          // node "c": rows mesh_loan, mesh_copy_big
int PoolFanoutPublisherRole(const RoleConfig& config); // loans on a topic to --expect_peers subscribers
int PoolFanoutSubscriberRole(const RoleConfig& config);

// A node of `config.run_dir` named `name`, seeded with `seed` (a gRPC
// target, or empty), wait policy `policy` (spin, adaptive, sleep), rings of
// config.ring_bytes. Dies on error.
std::unique_ptr<mesh::Node> MakeMeshNode(const RoleConfig& config, const std::string& name,
                                         const std::string& seed, const std::string& policy);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_ROLES_H_
