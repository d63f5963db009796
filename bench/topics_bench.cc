#include "bench/topics_bench.h"

#include <sys/stat.h>

#include <cstdio>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness.h"

namespace shmesh_bench {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(60);
constexpr absl::Duration kCommandTimeout = absl::Minutes(3);

// The fan-out floor rows for n subscribers (roles_fanout_floor.cc), after
// the mesh processes are gone.
void RunFanoutFloor(const TopicsPlan& plan, int n, std::vector<std::string>* rows) {
  Progress(absl::StrCat("fanout_floor_", n));
  Child floor = Child::Spawn({"--role=fanout_floor", absl::StrCat("--expect_peers=", n),
                              absl::StrCat("--duration_ms=", plan.duration_ms),
                              absl::StrCat("--ring_bytes=", plan.ring_bytes)});
  floor.WaitFor("READY", absl::Now() + kStartTimeout, "fan-out floor");
  for (int rep = 0; rep < plan.reps; ++rep) {
    for (uint64_t size : plan.sizes) {
      floor.WriteLine(absl::StrCat("thru ", size, " 0"));
      floor.WaitFor("OK", absl::Now() + kCommandTimeout, "fan-out floor", rows);
    }
  }
  floor.CloseStdin();
  floor.Finish(absl::Seconds(10));
}

}  // namespace

std::vector<std::string> RunTopicFanout(const TopicsPlan& plan, const std::string& tmp) {
  std::vector<std::string> rows;
  for (int n : plan.subscribers) {
   for (bool shared : {false, true}) {
    const std::string row = absl::StrCat(shared ? "topic_shared_fanout_" : "topic_fanout_", n);
    Progress(row);
    const std::string dir = MakeDir(tmp, absl::StrCat(shared ? "sfan" : "fan", n));
    const std::string seed = "unix:" + dir + "/p.grpc";
    // Nothing pinned: 1 + n processes share the CPUs, as they would.
    Child pub = Child::Spawn({"--role=fanout_pub", "--run_dir=" + dir, "--name=" + row,
                              absl::StrCat("--shared_ring=", shared ? "true" : "false"),
                              "--policy=adaptive", absl::StrCat("--expect_peers=", n),
                              absl::StrCat("--duration_ms=", plan.duration_ms), absl::StrCat("--batch=", plan.batch),
                              absl::StrCat("--ring_bytes=", plan.ring_bytes)});
    const absl::Time deadline = absl::Now() + kStartTimeout;
    pub.WaitFor("STARTED", deadline, "fan-out publisher");
    std::vector<Child> subs;
    for (int i = 0; i < n; ++i) {
      subs.push_back(Child::Spawn({"--role=fanout_sub", "--run_dir=" + dir, absl::StrCat("--name=f", i),
                                   "--seed=" + seed, "--policy=adaptive",
                                   absl::StrCat("--ring_bytes=", plan.ring_bytes)}));
    }
    for (Child& s : subs) s.WaitFor("READY", deadline, "fan-out subscriber");
    pub.WaitFor("READY", deadline, "fan-out publisher");
    for (int rep = 0; rep < plan.reps; ++rep) {
      for (uint64_t size : plan.sizes) {
        pub.WriteLine(absl::StrCat("thru ", size, " 0"));
        pub.WaitFor("OK", absl::Now() + kCommandTimeout, "fan-out", &rows);
      }
    }
    pub.CloseStdin();
    pub.Finish(absl::Seconds(10));
    for (Child& s : subs) s.CloseStdin();
    for (Child& s : subs) s.Finish(absl::Seconds(10));
   }
    RunFanoutFloor(plan, n, &rows);
  }
  return rows;
}

std::vector<std::string> RunTopicFirstMessage(const TopicsPlan& plan, const std::string& tmp) {
  Progress("topic_sub_first_msg");
  std::vector<std::string> rows;
  const std::string dir = MakeDir(tmp, "first");
  Child pub = Child::Spawn({"--role=first_pub", "--cpu=1", "--run_dir=" + dir, "--policy=adaptive"});
  const absl::Time deadline = absl::Now() + kStartTimeout;
  pub.WaitFor("READY", deadline, "first-message publisher");
  Child sub = Child::Spawn({"--role=first_sub", "--cpu=0", "--run_dir=" + dir, "--seed=unix:" + dir + "/p.grpc",
                            "--policy=adaptive", "--name=topic_sub_first_msg"});
  sub.WaitFor("READY", deadline, "first-message subscriber");
  for (int rep = 0; rep < plan.reps; ++rep) {
    sub.WriteLine("ping");
    sub.WaitFor("OK", absl::Now() + kCommandTimeout, "first message", &rows);
  }
  sub.Finish(absl::Seconds(10));
  pub.Finish(absl::Seconds(10));
  return rows;
}

void PrintTopicRatios(const MedianFn& median) {
  auto ratio = [](std::optional<double> a, std::optional<double> b) -> std::optional<double> {
    if (!a.has_value() || !b.has_value() || *b == 0) return std::nullopt;
    return *a / *b;
  };
  auto line = [](const std::string& what, std::optional<double> v, const std::string& detail) {
    if (!v.has_value()) {
      std::printf("- [info] %s: not measured\n", what.c_str());
    } else {
      std::printf("- [info] %s: %.3gx%s\n", what.c_str(), *v, detail.c_str());
    }
  };
  std::printf("\nTopics and services (informational, ratios within this run):\n");
  const auto topic = median("topic_spin", 64, "p50_ns");
  const auto spin = median("mesh_spin", 64, "p50_ns");
  line("topic_spin p50 / mesh_spin p50 (64 B one way)", ratio(topic, spin),
       topic && spin ? absl::StrFormat(" (%.0f ns vs %.0f ns)", *topic, *spin) : "");
  // The targets, as it words them: the round trip against the
  // one-way mesh_spin latency, and gRPC's unary round trip against ours.
  for (const char* rpc : {"rpc_pinned_rtt", "rpc_adaptive_rtt"}) {
    const auto rtt = median(rpc, 64, "p50_ns");
    const auto one_way = median("mesh_spin", 64, "p50_ns");
    const auto grpc = median("grpc_unary", 64, "p50_ns");
    line(absl::StrCat(rpc, " p50 / mesh_spin one-way p50 (target <= 2.5x)"), ratio(rtt, one_way),
         rtt && one_way ? absl::StrFormat(" (%.0f ns vs %.0f ns)", *rtt, *one_way) : "");
    std::optional<double> grpc_rtt;
    if (grpc.has_value()) grpc_rtt = 2 * *grpc;
    line(absl::StrCat("grpc_unary round trip p50 / ", rpc, " p50 (target >= 50x)"), ratio(grpc_rtt, rtt),
         rtt && grpc_rtt ? absl::StrFormat(" (%.0f ns vs %.0f ns)", *grpc_rtt, *rtt) : "");
  }
  for (const char* rpc : {"rpc_adaptive_rtt", "rpc_sleep_rtt"}) {
    const auto rtt = median(rpc, 64, "p50_ns");
    for (const char* row : {"mesh_spin", "mesh_adaptive", "grpc_unary"}) {
      const auto one_way = median(row, 64, "p50_ns");
      std::optional<double> round_trip;
      if (one_way.has_value()) round_trip = 2 * *one_way;
      line(absl::StrCat(rpc, " p50 / (2 x ", row, " p50)"), ratio(rtt, round_trip),
           rtt && round_trip ? absl::StrFormat(" (%.0f ns vs %.0f ns)", *rtt, *round_trip) : "");
    }
  }
  for (uint64_t size : {uint64_t{64}, uint64_t{65536}}) {
    const auto one = median("topic_fanout_1", size, "msgs_per_s");
    const auto eight = median("topic_fanout_8", size, "msgs_per_s");
    line(absl::StrCat("topic_fanout_8 / topic_fanout_1 msgs/s per subscriber, ", size, " B (target >= 0.5x at 64 B)"),
         ratio(eight, one), one && eight ? absl::StrFormat(" (%.0f vs %.0f)", *eight, *one) : "");
    // The same publisher with a shared ring, against its own 1-subscriber
    // row and against the default's.
    const auto shared_one = median("topic_shared_fanout_1", size, "msgs_per_s");
    const auto shared_eight = median("topic_shared_fanout_8", size, "msgs_per_s");
    line(absl::StrCat("topic_shared_fanout_8 / topic_shared_fanout_1 msgs/s per subscriber, ", size, " B"),
         ratio(shared_eight, shared_one),
         shared_one && shared_eight ? absl::StrFormat(" (%.0f vs %.0f)", *shared_eight, *shared_one) : "");
    line(absl::StrCat("topic_shared_fanout_8 / topic_fanout_1 msgs/s per subscriber, ", size, " B"),
         ratio(shared_eight, one), one && shared_eight ? absl::StrFormat(" (%.0f vs %.0f)", *shared_eight, *one) : "");
    // What bounds it: the same 8-vs-1 ratio with nothing but shared memory,
    // a ring per subscriber (shmesh's layout) and one shared ring.
    // And with ringbuf's broadcast ring (the real component).
    for (const char* prefix : {"fanout_floor_rings_", "fanout_floor_shared_", "broadcast_ring_"}) {
      const auto floor_one = median(absl::StrCat(prefix, 1), size, "msgs_per_s");
      const auto floor_eight = median(absl::StrCat(prefix, 8), size, "msgs_per_s");
      line(absl::StrCat(prefix, "8 / ", prefix, "1 msgs/s per subscriber, ", size, " B"), ratio(floor_eight, floor_one),
           floor_one && floor_eight ? absl::StrFormat(" (%.0f vs %.0f)", *floor_eight, *floor_one) : "");
    }
    const auto floor_rings = median("fanout_floor_rings_8", size, "msgs_per_s");
    line(absl::StrCat("topic_fanout_8 / fanout_floor_rings_8 msgs/s per subscriber, ", size, " B"),
         ratio(eight, floor_rings),
         eight && floor_rings ? absl::StrFormat(" (%.0f vs %.0f)", *eight, *floor_rings) : "");
  }
  const auto first = median("topic_sub_first_msg", 0, "setup_ms");
  const auto first_max = median("topic_sub_first_msg_max", 0, "setup_ms");
  if (first.has_value() && first_max.has_value()) {
    std::printf("- [info] Subscribe returning -> first message: p50 %.3f ms, max %.3f ms (20 tries per repetition)\n",
                *first, *first_max);
  }
}

}  // namespace shmesh_bench
