// The topic benchmarks that are not a client/server pair (shmesh_bench.cc
// runs those in its rounds): fan-out from one publisher to 1, 4 and 8
// subscriber processes, and the time from Subscribe returning to the first
// message. Each returns the ROW lines its processes printed (harness.h),
// one per repetition, for the orchestrator's table.
//
// Thread contract: called from the orchestrator's main thread.
#ifndef SHMESH_BENCH_TOPICS_BENCH_H_
#define SHMESH_BENCH_TOPICS_BENCH_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace shmesh_bench {

struct TopicsPlan {
  int reps = 3;
  int64_t duration_ms = 300;            // one throughput repetition
  std::vector<int> subscribers = {1, 4, 8};
  std::vector<uint64_t> sizes = {64, 65536};
  uint64_t ring_bytes = 1 << 20;
  int batch = 32;                       // Publish calls between clock reads
};

// Rows topic_fanout_<N> (msgs/s and GB/s per subscriber) for every N and
// size, each followed by its floor rows fanout_floor_rings_<N> and
// fanout_floor_shared_<N> and the broadcast_ring_<N> row
// (roles_fanout_floor.cc). `tmp` is a directory for the run directories.
std::vector<std::string> RunTopicFanout(const TopicsPlan& plan, const std::string& tmp);

// Rows topic_sub_first_msg and topic_sub_first_msg_max (setup_ms: the p50
// and the max over 20 tries, per repetition).
std::vector<std::string> RunTopicFirstMessage(const TopicsPlan& plan, const std::string& tmp);

// The median of `field` in row (`row`, `payload`) of this run, if measured.
using MedianFn =
    std::function<std::optional<double>(const std::string& row, uint64_t payload, const std::string& field)>;
// Prints the topic and service rows against the rows they build on
// (informational: ratios within one run, no targets).
void PrintTopicRatios(const MedianFn& median);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_TOPICS_BENCH_H_
