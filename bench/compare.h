// The orchestrator's side of the rows that put shmesh next to outside
// references (their roles: roles_floor.cc, roles_iceoryx.cc):
//   floor                    one cache line bounced between the two pinned
//                            CPUs, the hardware's one-way latency; every
//                            latency row's p50 is also printed as a
//                            multiple of it, so that runs on different vCPU
//                            placements compare;
//   iox_copy, iox_zero_copy  Eclipse iceoryx 2.0 (Debian's), its daemon
//                            RouDi started for the run by IoxRoudi, with
//                            the throughput sizes of the other rows plus
//                            --big_sizes (1 MiB and 8 MiB);
//   mesh_loan, mesh_copy_big, mesh_loan_fanout_<N>
//                            shmesh's zero-copy pool with the same traffic
//                            (roles_pool.cc): loans at 64 KiB and
//                            --big_sizes, copied sends at --big_sizes,
//                            8 MiB loans on a topic to 1 and 4 subscribers.
// After the table, PrintPoolTargets checks the targets of the pool issue,
// most of them against the iceoryx rows; a row not measured prints
// "n/a (row not measured)".
//
// Thread contract: the orchestrator's main thread only.
#ifndef SHMESH_BENCH_COMPARE_H_
#define SHMESH_BENCH_COMPARE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/harness.h"
#include "bench/topics_bench.h"

namespace shmesh_bench {

// iox-roudi for the iox_* rows, run by the guard role (--role=iox_roudi),
// which outlives the orchestrator if it dies, to stop RouDi and remove its
// files even then. Owns the guard.
class IoxRoudi {
 public:
  // Starts the guard with `dir` for RouDi's log and waits until RouDi is
  // ready for clients. Errors (the iox rows are then left out, and
  // PrintPoolTargets says why): FAILED_PRECONDITION when iox-roudi or its
  // config (bench/iceoryx_roudi.toml in the runfiles, or
  // --iox_roudi_config) is missing or RouDi exits at start (the message
  // has its last log lines); DEADLINE_EXCEEDED if it is not ready in time.
  static absl::StatusOr<std::unique_ptr<IoxRoudi>> Start(const std::string& dir);

  // Closes the guard's stdin: it stops RouDi (SIGTERM, SIGKILL after
  // 10 s), removes what RouDi left and exits. Waits up to 20 s for that.
  // REQUIRES: the iceoryx pairs have been finished (RouDi would SIGTERM
  // its remaining clients).
  ~IoxRoudi();
  IoxRoudi(const IoxRoudi&) = delete;
  IoxRoudi& operator=(const IoxRoudi&) = delete;

 private:
  explicit IoxRoudi(Child guard) : guard_(std::move(guard)) {}
  Child guard_;
};

// Arguments of the server and the client of row "iox_<mode>", mode "copy"
// or "zero_copy" (the client also needs the common sample-count flags).
std::vector<std::string> IoxServerArgs(const std::string& mode);
std::vector<std::string> IoxClientArgs(const std::string& mode);

// "thru SIZE 0" for every size of `sizes` and of --big_sizes, ascending,
// each once (iceoryx has no batch API).
std::vector<std::string> IoxThroughputCommands(const std::vector<uint64_t>& sizes);

// Arguments of the pool rows' server and client (--role=pool_server /
// pool_client, CPUs 1 and 0) in run directory `dir`, with wait policy
// `policy`; the orchestrator adds the common sample-count and ring flags.
std::vector<std::string> PoolServerArgs(const std::string& dir, const std::string& policy);
std::vector<std::string> PoolClientArgs(const std::string& dir, const std::string& policy);
// The pool pair's commands: "ping 64" and "ping 8388608" (latency of
// loans), and "thru SIZE 0 loan" for 64 KiB and --big_sizes and "thru
// SIZE 0 copy" for --big_sizes (throughput).
std::vector<std::string> PoolLatencyCommands();
std::vector<std::string> PoolThroughputCommands();
// The mesh_loan_fanout_<n> publisher (CPU 0) and its subscriber `i` (CPU
// 1) in `dir`, all ADAPTIVE (the orchestrator adds the common flags), and
// the command of one repetition (8 MiB loans).
std::vector<std::string> PoolFanoutPublisherArgs(const std::string& dir, int n);
std::vector<std::string> PoolFanoutSubscriberArgs(const std::string& dir, int i);
std::string PoolFanoutCommand();

struct LatencyP50 {
  std::string row;
  uint64_t payload = 0;
  double p50_ns = 0;
};
// A table of every row's p50 over floor's p50; nothing if floor is absent.
void PrintFloorMultiples(const std::vector<LatencyP50>& rows);

// The targets of the pool issue (most against iceoryx), as met / MISSED
// lines (ratios within this run); the ones without a limit as [info].
void PrintPoolTargets(const MedianFn& median);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_COMPARE_H_
