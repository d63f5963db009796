// shmesh_bench: every shmesh benchmark, and the alternatives side by side,
// in one run and one Markdown table (what `./meshw bench` prints).
//
// Each benchmark is two or more real processes: this binary re-executes
// itself with --role=... (roles.h) for each side, pins the two sides of a
// pair to different CPUs when there are two or more, collects the ROW lines
// the measuring side prints (one per repetition), and reports the median of
// every statistic. Rows (see bench/README.md for the details):
//   raw_ring, raw_ring_batch       bare ringbuf ring, busy-polling (the software floor)
//   raw_ring_sleep                 the same ring never spinning: every message
//                                  goes through the doorbell
//   doorbell_eventfd, doorbell_socketpair   wake-up latency of the old and the
//                                  new doorbell primitive (eventfds vs one
//                                  AF_UNIX stream socket pair)
//   mesh_spin[_batch]              mesh::Node, WaitPolicy SPIN
//   mesh_adaptive[_batch]          mesh::Node, the default policy (ADAPTIVE)
//   uds, zmq, grpc_unary, grpc_stream   the alternatives
//   topic_spin                     the same ping-pong over two topics
//   rpc_adaptive_rtt, rpc_sleep_rtt, rpc_pinned_rtt  Node::Call round trips (not halved)
//   topic_fanout_<N>               one publisher, N subscriber processes
//   topic_shared_fanout_<N>        the same with PublisherOptions::shared_ring
//   fanout_floor_{rings,shared}_<N> the same on bare shared memory: a ring
//                                  per subscriber, or one shared ring
//   broadcast_ring_<N>             the same through ringbuf's broadcast ring
//   topic_sub_first_msg[_max]      Subscribe returning -> first message
//   mesh_link_setup_pair, mesh16_formation, mesh16_idle
//   ring_microbench_*              Google Benchmark, one thread
//   floor, iox_copy, iox_zero_copy one cache line; Eclipse iceoryx (compare.h)
//   mesh_loan, mesh_copy_big       the zero-copy pool: loans, large copied sends
//   mesh_loan_fanout_1, _4         8 MiB loans on a topic to 1 and 4 subscribers
// After the table it checks the performance targets of issue 4 and of the
// pool (compare.cc) as ratios within this run.
//
// Usage: shmesh_bench [--quick] [--json FILE] [--reps N] [--microbench PATH]
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <limits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/compare.h"
#include "bench/harness.h"
#include "bench/mesh_formation.h"
#include "bench/python_bench.h"
#include "bench/results.h"
#include "bench/roles.h"
#include "bench/targets.h"
#include "bench/topics_bench.h"

ABSL_FLAG(bool, quick, false, "short run (under a minute)");
ABSL_FLAG(std::string, json, "", "also write the rows as a JSON array to this file");
ABSL_FLAG(int, reps, 3, "repetitions of every measurement (medians are reported)");
ABSL_FLAG(std::string, microbench, "",
          "path of ring_microbench (Google Benchmark) to run and fold into the table");
ABSL_FLAG(std::string, python_bench, "",
          "path of python/bench_roundtrip.py to run and fold into the table (py_* rows; needs PYTHONPATH)");
ABSL_FLAG(std::string, only, "",
          "comma-separated groups to run (floor,ring,doorbell,mesh,pool,topics,rpc,uds,zmq,grpc,iox,setup,mesh16,"
          "micro,python); default all");
ABSL_FLAG(int, idle_s, 10, "seconds over which the idle 16-node mesh's CPU is measured");
ABSL_FLAG(int, nodes, 16, "nodes of the formation / idle mesh");
// Role flags (internal: set by the orchestrator for its children).
ABSL_FLAG(std::string, role, "", "internal: run one side of a benchmark");
ABSL_FLAG(int, cpu, -1, "internal: pin to this allowed-CPU index");
ABSL_FLAG(std::string, run_dir, "", "internal: socket directory");
ABSL_FLAG(std::string, name, "", "internal: node or row name");
ABSL_FLAG(std::string, seed, "", "internal: mesh seed");
ABSL_FLAG(std::string, policy, "adaptive", "internal: mesh wait policy");
ABSL_FLAG(int, expect_peers, 0, "internal: peers of a mesh member");
ABSL_FLAG(uint64_t, warmup, 10000, "internal: ping-pong warm-up round trips");
ABSL_FLAG(uint64_t, samples, 100000, "internal: measured ping-pong round trips");
ABSL_FLAG(int64_t, duration_ms, 300, "length of one throughput repetition (--quick: 100)");
ABSL_FLAG(std::string, sizes, "64,1024,65536", "throughput payload sizes, comma-separated");
ABSL_FLAG(bool, shared_ring, false, "internal: the fan-out publisher uses PublisherOptions::shared_ring");
ABSL_FLAG(uint64_t, ring_bytes, 1 << 20,
          "capacity of each ring, raw and mesh (mesh's ring_capacity_bytes; default: the mesh default)");
ABSL_FLAG(int, batch, 32, "messages per SendBatch/WriteBatch call in the *_batch rows");

namespace shmesh_bench {
namespace {

int RunRole(const std::string& role) {
  RoleConfig c;
  c.role = role;
  c.cpu = absl::GetFlag(FLAGS_cpu);
  c.run_dir = absl::GetFlag(FLAGS_run_dir);
  c.name = absl::GetFlag(FLAGS_name);
  c.seed = absl::GetFlag(FLAGS_seed);
  c.policy = absl::GetFlag(FLAGS_policy);
  c.expect_peers = absl::GetFlag(FLAGS_expect_peers);
  c.warmup = absl::GetFlag(FLAGS_warmup);
  c.samples = absl::GetFlag(FLAGS_samples);
  c.duration_ms = absl::GetFlag(FLAGS_duration_ms);
  c.batch = absl::GetFlag(FLAGS_batch);
  c.ring_bytes = absl::GetFlag(FLAGS_ring_bytes);
  c.shared_ring = absl::GetFlag(FLAGS_shared_ring);
  if (role == "ring") return RingRole(c);
  if (role == "doorbell") return DoorbellRole(c);
  if (role == "mesh_server") return MeshServerRole(c);
  if (role == "mesh_client") return MeshClientRole(c);
  if (role == "mesh_member") return MeshMemberRole(c);
  if (role == "uds_server") return UdsServerRole(c);
  if (role == "uds_client") return UdsClientRole(c);
  if (role == "zmq_server") return ZmqServerRole(c);
  if (role == "zmq_client") return ZmqClientRole(c);
  if (role == "grpc_server") return GrpcServerRole(c);
  if (role == "grpc_client") return GrpcClientRole(c);
  if (role == "topic_server") return TopicServerRole(c);
  if (role == "topic_client") return TopicClientRole(c);
  if (role == "rpc_server") return RpcServerRole(c);
  if (role == "rpc_client") return RpcClientRole(c);
  if (role == "fanout_pub") return FanoutPublisherRole(c);
  if (role == "fanout_sub") return FanoutSubscriberRole(c);
  if (role == "first_pub") return FirstPublisherRole(c);
  if (role == "first_sub") return FirstSubscriberRole(c);
  if (role == "floor") return FloorRole(c);
  if (role == "fanout_floor") return FanoutFloorRole(c);
  if (role == "iox_roudi") return IoxRoudiRole(c);
  if (role == "iox_server") return IoxServerRole(c);
  if (role == "iox_client") return IoxClientRole(c);
  if (role == "pool_server") return PoolServerRole(c);
  if (role == "pool_client") return PoolClientRole(c);
  if (role == "pool_fanout_pub") return PoolFanoutPublisherRole(c);
  if (role == "pool_fanout_sub") return PoolFanoutSubscriberRole(c);
  Die(absl::StrCat("unknown role '", role, "'"));
}

// ------------------------------------------------------------ orchestration

struct Plan {
  bool quick = false;
  int reps = 3;
  uint64_t warmup = 10000, samples = 100000;          // shared-memory ping-pong
  uint64_t socket_warmup = 10000, socket_samples = 100000;  // uds, zmq, grpc
  int64_t duration_ms = 300;
  int setup_reps = 5, mesh16_reps = 3;
  int idle_s = 10;
  int nodes = 16;
  std::vector<uint64_t> sizes;  // throughput payloads (--sizes)
};

constexpr absl::Duration kJobTimeout = absl::Minutes(3);

std::vector<std::string> CommonArgs(const Plan& plan, bool sockets) {
  return {absl::StrCat("--warmup=", sockets ? plan.socket_warmup : plan.warmup),
          absl::StrCat("--samples=", sockets ? plan.socket_samples : plan.samples),
          absl::StrCat("--duration_ms=", plan.duration_ms),
          absl::StrCat("--batch=", absl::GetFlag(FLAGS_batch)),
          absl::StrCat("--ring_bytes=", absl::GetFlag(FLAGS_ring_bytes))};
}

std::vector<std::string> Concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// One benchmark pair: an optional server process and the measuring client,
// which runs one repetition per command (harness.h) and stays up between
// commands, so that the repetitions of different benchmarks interleave.
class Pair {
 public:
  Pair(std::string what, const std::vector<std::string>& server_args,
       const std::vector<std::string>& client_args)
      : what_(std::move(what)) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    if (!server_args.empty()) {
      server_.emplace(Child::Spawn(server_args));
      server_->WaitFor("READY", deadline, what_ + " server");
    }
    client_.emplace(Child::Spawn(client_args));
    client_->WaitFor("READY", deadline, what_ + " client");
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  ~Pair() { Finish(); }

  void Run(const std::string& command, Results& results) {
    client_->WriteLine(command);
    std::vector<std::string> rows;
    client_->WaitFor("OK", absl::Now() + kJobTimeout, what_ + " " + command, &rows);
    results.AddAll(rows);
  }
  void Finish() {
    if (client_.has_value()) client_->Finish(absl::Seconds(10));
    if (server_.has_value()) server_->Finish(absl::Seconds(10));
    client_.reset();
    server_.reset();
  }

 private:
  std::string what_;
  std::optional<Child> server_;
  std::optional<Child> client_;
};

// One publisher and its subscriber processes (the mesh_loan_fanout_<N>
// rows): the publisher measures, one repetition per command, as a Pair's
// client does; all of them stay up between commands. Thread-compatible
// (the orchestrator's main thread).
class FanoutGroup {
 public:
  FanoutGroup(const std::string& dir, int n, const std::vector<std::string>& common) : n_(n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    pub_.emplace(Child::Spawn(Concat(PoolFanoutPublisherArgs(dir, n), common)));
    pub_->WaitFor("STARTED", deadline, absl::StrCat("mesh_loan_fanout_", n, " publisher"));
    for (int i = 0; i < n; ++i) subs_.push_back(Child::Spawn(Concat(PoolFanoutSubscriberArgs(dir, i), common)));
    for (Child& s : subs_) s.WaitFor("READY", deadline, absl::StrCat("mesh_loan_fanout_", n, " subscriber"));
    pub_->WaitFor("READY", deadline, absl::StrCat("mesh_loan_fanout_", n, " publisher"));
  }
  FanoutGroup(const FanoutGroup&) = delete;
  FanoutGroup& operator=(const FanoutGroup&) = delete;
  ~FanoutGroup() {
    if (pub_.has_value()) pub_->Finish(absl::Seconds(10));
    for (Child& s : subs_) s.CloseStdin();
    for (Child& s : subs_) s.Finish(absl::Seconds(10));
  }

  void Run(const std::string& command, Results& results) {
    pub_->WriteLine(command);
    std::vector<std::string> rows;
    pub_->WaitFor("OK", absl::Now() + kJobTimeout, absl::StrCat("mesh_loan_fanout_", n_, " ", command), &rows);
    results.AddAll(rows);
  }

 private:
  int n_;
  std::optional<Child> pub_;
  std::vector<Child> subs_;
};

std::vector<std::string> ThroughputCommands(const Plan& plan, bool batched_too) {
  std::vector<std::string> commands;
  for (uint64_t size : plan.sizes) {
    commands.push_back(absl::StrCat("thru ", size, " 0"));
    if (batched_too) commands.push_back(absl::StrCat("thru ", size, " 1"));
  }
  return commands;
}

std::vector<std::string> MeshServerArgs(const std::string& dir, const std::string& policy) {
  return {"--role=mesh_server", "--cpu=1", "--run_dir=" + dir, "--policy=" + policy,
          absl::StrCat("--ring_bytes=", absl::GetFlag(FLAGS_ring_bytes))};
}

std::vector<std::string> MeshClientArgs(const Plan& plan, const std::string& dir, const std::string& policy,
                                        const std::string& row) {
  return Concat({"--role=mesh_client", "--cpu=0", "--run_dir=" + dir, "--seed=unix:" + dir + "/s.grpc",
                 "--policy=" + policy, "--name=" + row},
                CommonArgs(plan, false));
}

// The latency and throughput benchmarks, in rounds: each round runs one
// repetition of every benchmark, so that slow drifts of a shared machine
// (vCPU placement, neighbours' load) hit all of them alike.
void RunRounds(Results& results, const Plan& plan, const std::string& tmp,
               const std::function<bool(const std::string&)>& wanted) {
  std::unique_ptr<IoxRoudi> roudi;  // declared first: stopped after the pairs
  std::optional<Pair> floor, ring, doorbell, adaptive, rpc, rpc_sleep, rpc_pinned, uds, zmq, grpc, iox_copy, iox_zero_copy;
  std::optional<FanoutGroup> loan_fanout_1, loan_fanout_4;
  int dirs = 0;
  auto dir = [&](const std::string& prefix) { return MakeDir(tmp, absl::StrCat(prefix, dirs++)); };
  Progress("starting the long-lived pairs");
  if (wanted("ring")) {
    ring.emplace("raw_ring", std::vector<std::string>{}, Concat({"--role=ring"}, CommonArgs(plan, false)));
  }
  if (wanted("doorbell")) {
    // Every round trip is two sleeps and wake-ups: the socket counts.
    doorbell.emplace("doorbell", std::vector<std::string>{}, Concat({"--role=doorbell"}, CommonArgs(plan, true)));
  }
  if (wanted("mesh")) {
    const std::string d = dir("a");
    adaptive.emplace("mesh_adaptive", MeshServerArgs(d, "adaptive"),
                     MeshClientArgs(plan, d, "adaptive", "mesh_adaptive"));
  }
  if (wanted("rpc")) {
    // ADAPTIVE (the default) and SLEEP, not pinned (as a user runs them),
    // and ADAPTIVE pinned as mesh_spin (below).
    auto rpc_pair = [&](std::optional<Pair>& pair, const std::string& policy, bool pinned) {
      const std::string d = dir("r");
      const std::string row = absl::StrCat("rpc_", pinned ? "pinned" : policy, "_rtt");
      pair.emplace(row,
                   std::vector<std::string>{"--role=rpc_server", "--run_dir=" + d, "--policy=" + policy,
                                            pinned ? "--cpu=1" : "--cpu=-1"},
                   Concat({"--role=rpc_client", "--run_dir=" + d, "--seed=unix:" + d + "/s.grpc",
                           "--policy=" + policy, "--name=" + row, pinned ? "--cpu=0" : "--cpu=-1"},
                          CommonArgs(plan, true)));
    };
    rpc_pair(rpc, "adaptive", false);
    rpc_pair(rpc_sleep, "sleep", false);
    // Pinned as mesh_spin (server on the second CPU, client on the first):
    // the like-for-like row for the round trip against mesh_spin's one-way
    // latency. The caller takes its response from the ring itself, so the
    // client's receive thread sleeps and the pair needs one CPU each.
    rpc_pair(rpc_pinned, "adaptive", true);
  }
  auto socket_pair = [&](std::optional<Pair>& pair, const std::string& kind) {
    if (!wanted(kind)) return;
    const std::string d = dir(kind);
    pair.emplace(kind, std::vector<std::string>{"--role=" + kind + "_server", "--cpu=1", "--run_dir=" + d},
                 Concat({"--role=" + kind + "_client", "--cpu=0", "--run_dir=" + d}, CommonArgs(plan, true)));
  };
  socket_pair(uds, "uds");
  socket_pair(zmq, "zmq");
  socket_pair(grpc, "grpc");
  if (wanted("floor")) {
    floor.emplace("floor", std::vector<std::string>{}, Concat({"--role=floor"}, CommonArgs(plan, false)));
  }
  if (wanted("iox")) {
    absl::StatusOr<std::unique_ptr<IoxRoudi>> started = IoxRoudi::Start(dir("iox"));
    if (started.ok()) {
      roudi = std::move(*started);
      iox_copy.emplace("iox_copy", IoxServerArgs("copy"), Concat(IoxClientArgs("copy"), CommonArgs(plan, false)));
      iox_zero_copy.emplace("iox_zero_copy", IoxServerArgs("zero_copy"),
                            Concat(IoxClientArgs("zero_copy"), CommonArgs(plan, false)));
    } else {
      Progress("iox rows left out: " + started.status().ToString());
    }
  }
  if (wanted("pool")) {
    // Publisher on the first CPU, every subscriber on the second, all
    // ADAPTIVE (four spinning subscribers would share one CPU).
    loan_fanout_1.emplace(dir("lf"), 1, CommonArgs(plan, false));
    loan_fanout_4.emplace(dir("lf"), 4, CommonArgs(plan, false));
  }

  for (int round = 0; round < plan.reps; ++round) {
    Progress(absl::StrCat("round ", round + 1, "/", plan.reps));
    // Latency first, back to back.
    if (floor.has_value()) floor->Run("ping", results);
    if (ring.has_value()) ring->Run("ping", results);
    if (ring.has_value()) ring->Run("ping_sleep", results);
    if (doorbell.has_value()) doorbell->Run("ping", results);
    if (wanted("mesh")) {
      // SPIN nodes spin a core each for as long as they live: a fresh pair
      // per use.
      const std::string d = dir("s");
      Pair spin("mesh_spin", MeshServerArgs(d, "spin"), MeshClientArgs(plan, d, "spin", "mesh_spin"));
      spin.Run("ping", results);
    }
    if (adaptive.has_value()) adaptive->Run("ping", results);
    if (wanted("topics")) {
      // Spinning, pinned, fresh per round: as mesh_spin, beside it.
      const std::string d = dir("tp");
      Pair topic("topic_spin",
                 {"--role=topic_server", "--cpu=1", "--run_dir=" + d, "--policy=spin",
                  absl::StrCat("--ring_bytes=", absl::GetFlag(FLAGS_ring_bytes))},
                 Concat({"--role=topic_client", "--cpu=0", "--run_dir=" + d, "--seed=unix:" + d + "/s.grpc",
                         "--policy=spin", "--name=topic_spin"},
                        CommonArgs(plan, false)));
      topic.Run("ping", results);
    }
    if (rpc.has_value()) rpc->Run("ping", results);
    if (rpc_sleep.has_value()) rpc_sleep->Run("ping", results);
    if (rpc_pinned.has_value()) rpc_pinned->Run("ping", results);
    for (std::optional<Pair>* pair : {&uds, &zmq, &grpc, &iox_copy, &iox_zero_copy}) {
      if (pair->has_value()) (*pair)->Run("ping", results);
    }
    if (wanted("pool")) {
      // Loans both ways, both nodes spinning: as mesh_spin, a fresh pair.
      const std::string d = dir("pl");
      Pair loans("mesh_loan latency", Concat(PoolServerArgs(d, "spin"), CommonArgs(plan, false)),
                 Concat(PoolClientArgs(d, "spin"), CommonArgs(plan, false)));
      for (const std::string& c : PoolLatencyCommands()) loans.Run(c, results);
    }
    // Throughput.
    if (ring.has_value()) {
      for (const std::string& c : ThroughputCommands(plan, true)) ring->Run(c, results);
    }
    if (wanted("mesh")) {
      // The receiving node spins; the sending one is ADAPTIVE, so that its
      // own (idle) receive thread sleeps instead of taking the sending core.
      const std::string d = dir("t");
      Pair spin("mesh_spin throughput", MeshServerArgs(d, "spin"),
                MeshClientArgs(plan, d, "adaptive", "mesh_spin"));
      for (const std::string& c : ThroughputCommands(plan, true)) spin.Run(c, results);
    }
    if (adaptive.has_value()) {
      for (const std::string& c : ThroughputCommands(plan, true)) adaptive->Run(c, results);
    }
    for (std::optional<Pair>* pair : {&uds, &zmq, &grpc}) {
      if (!pair->has_value()) continue;
      for (const std::string& c : ThroughputCommands(plan, false)) (*pair)->Run(c, results);
    }
    for (std::optional<Pair>* pair : {&iox_copy, &iox_zero_copy}) {
      if (!pair->has_value()) continue;
      for (const std::string& c : IoxThroughputCommands(plan.sizes)) (*pair)->Run(c, results);
    }
    if (wanted("pool")) {
      // As mesh_spin's throughput: the receiving node spins, the sending
      // one is ADAPTIVE (its receive thread, which takes the pool's
      // releases, shares the sending CPU).
      const std::string d = dir("pt");
      Pair pool("mesh_loan/mesh_copy_big throughput", Concat(PoolServerArgs(d, "spin"), CommonArgs(plan, false)),
                Concat(PoolClientArgs(d, "adaptive"), CommonArgs(plan, false)));
      for (const std::string& c : PoolThroughputCommands()) pool.Run(c, results);
    }
    for (std::optional<FanoutGroup>* group : {&loan_fanout_1, &loan_fanout_4}) {
      if (group->has_value()) (*group)->Run(PoolFanoutCommand(), results);
    }
  }
}

// Runs ring_microbench and folds two of its results in.
void RunMicrobench(Results& results, const Plan& plan, const std::string& path) {
  Progress("ring_microbench");
  Child bench = Child::SpawnExe(
      path, {"--benchmark_filter=BM_WriteRead/64$|BM_WriteBatchDrain/64$", "--benchmark_format=json",
             plan.quick ? "--benchmark_min_time=0.05" : "--benchmark_min_time=0.3",
             absl::StrCat("--benchmark_repetitions=", plan.reps),
             "--benchmark_report_aggregates_only=true"});
  std::string json;
  while (std::optional<std::string> line = bench.ReadLine(absl::Now() + kJobTimeout)) {
    json += *line + "\n";
  }
  bench.Finish(absl::Seconds(5));
  // Finds the median aggregate of `benchmark` and reads `field` from it.
  auto value = [&](const std::string& benchmark, const std::string& field) -> std::optional<double> {
    const size_t at = json.find("\"name\": \"" + benchmark + "_median\"");
    if (at == std::string::npos) return std::nullopt;
    const size_t f = json.find("\"" + field + "\": ", at);
    if (f == std::string::npos) return std::nullopt;
    return std::strtod(json.c_str() + f + field.size() + 4, nullptr);
  };
  const std::pair<const char*, const char*> picks[] = {
      {"BM_WriteRead/64", "ring_microbench_write_read"},
      {"BM_WriteBatchDrain/64", "ring_microbench_batch32_drain"}};
  for (const auto& [benchmark, row] : picks) {
    std::optional<double> items = value(benchmark, "items_per_second");
    std::optional<double> bytes = value(benchmark, "bytes_per_second");
    if (!items.has_value()) {
      Progress(absl::StrCat("ring_microbench: no result for ", benchmark));
      continue;
    }
    results.AddValue(row, 64, "msgs_per_s", *items);
    if (bytes.has_value()) results.AddValue(row, 64, "gb_per_s", *bytes / 1e9);
  }
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

int Orchestrate() {
  Plan plan;
  plan.quick = absl::GetFlag(FLAGS_quick);
  plan.reps = absl::GetFlag(FLAGS_reps);
  plan.idle_s = absl::GetFlag(FLAGS_idle_s);
  plan.nodes = absl::GetFlag(FLAGS_nodes);
  plan.duration_ms = absl::GetFlag(FLAGS_duration_ms);
  if (plan.reps < 1 || plan.nodes < 2) Die("--reps must be >= 1 and --nodes >= 2");
  if (plan.quick) {
    plan.warmup = 2000;
    plan.samples = 20000;
    plan.socket_warmup = 500;
    plan.socket_samples = 3000;
    plan.duration_ms = std::min<int64_t>(plan.duration_ms, 100);
    plan.setup_reps = 3;
    plan.mesh16_reps = 1;
    plan.idle_s = std::min(plan.idle_s, 3);
  }
  std::signal(SIGPIPE, SIG_IGN);  // a child that died is reported, not fatal to us
  plan.sizes.clear();
  for (absl::string_view size : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',', absl::SkipEmpty())) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(size, &n) || n == 0 || n > kMaxPayload) Die("bad --sizes");
    plan.sizes.push_back(n);
  }
  std::set<std::string> only;
  for (absl::string_view g : absl::StrSplit(absl::GetFlag(FLAGS_only), ',', absl::SkipEmpty())) {
    only.insert(std::string(g));
  }
  auto wanted = [&](const std::string& group) { return only.empty() || only.count(group) > 0; };

  char tmpl[] = "/tmp/shb-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) Die("mkdtemp failed");
  const std::string tmp = tmpl;

  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  const int cpus = AllowedCpus();
  const int64_t t_start = NowNs();
  Results results;
  RunRounds(results, plan, tmp, wanted);
  if (wanted("topics")) {
    TopicsPlan topics;
    topics.reps = plan.reps;
    topics.duration_ms = plan.duration_ms;
    topics.ring_bytes = absl::GetFlag(FLAGS_ring_bytes);
    topics.batch = absl::GetFlag(FLAGS_batch);
    results.AddAll(RunTopicFanout(topics, tmp));
    results.AddAll(RunTopicFirstMessage(topics, tmp));
  }
  const FormationPlan formation{plan.setup_reps, plan.mesh16_reps, plan.idle_s, plan.nodes};
  if (wanted("setup")) RunSetup(results, formation, tmp);
  std::string idle_note;
  if (wanted("mesh16")) RunMesh16(results, formation, tmp, idle_note);
  const std::string micro = absl::GetFlag(FLAGS_microbench);
  if (wanted("micro") && !micro.empty()) RunMicrobench(results, plan, micro);
  const std::string python = absl::GetFlag(FLAGS_python_bench);
  if (wanted("python") && !python.empty()) results.AddAll(RunPythonBench(python, plan.reps, plan.quick));
  const double elapsed = static_cast<double>(NowNs() - t_start) / 1e9;
  std::string cleanup = "rm -rf '" + tmp + "'";
  if (std::system(cleanup.c_str()) != 0) Progress("could not remove " + tmp);

  std::printf("shmesh_bench%s: %d CPUs (%s), %s; load average %.2f at start; medians of %d repetition(s); %.0f s\n\n",
              plan.quick ? " --quick" : "", cpus, CpuModel().c_str(),
              cpus >= 2 ? "the two sides of each pair pinned to different CPUs" : "not pinned (one CPU)",
              load[0], plan.reps, elapsed);
  PrintTable(results);
  std::vector<LatencyP50> p50s;
  for (const Row& r : results.Sorted()) {
    if (std::optional<double> p50 = r.Median("p50_ns")) p50s.push_back({r.name, r.payload, *p50});
  }
  PrintFloorMultiples(p50s);
  std::printf(
      "\nLatency: one-way = round trip / 2 of 64 B ping-pong, copy in and out included; %llu round trips "
      "per repetition after %llu of warm-up (uds/zmq/grpc: %llu after %llu). Throughput: one-way, %lld ms per "
      "repetition, every payload copied out by the receiver; *_batch rows send %d messages per "
      "SendBatch/WriteBatch (one tail store, at most one doorbell), the others one per Send/Write. "
      "raw_ring_sleep: both sides never spin (WaitOptions::NoSpin()), so every message is a doorbell wake-up. "
      "doorbell_eventfd / doorbell_socketpair: the bare doorbell primitives (old: a pair of eventfds; new: one "
      "AF_UNIX stream socket pair), poll() + read/recv on every message, one-way = round trip / 2, %llu round "
      "trips after %llu. topic_spin: the mesh_spin ping-pong through a Publisher and a Subscription each way. "
      "py_*: two Python processes through the binding (python/bench_roundtrip.py), ADAPTIVE, unpinned: "
      "py_rtt send + receive() round trip and py_call_rtt Node.call, not halved; py_send[_batch] one-way. "
      "rpc_adaptive_rtt, rpc_sleep_rtt: Node::Call round trip (not halved), both nodes ADAPTIVE or SLEEP, unpinned; rpc_pinned_rtt: ADAPTIVE, pinned as mesh_spin. topic_fanout_<N>: "
      "one publisher to N subscriber processes, nothing pinned, msgs/s and GB/s per subscriber (topic_shared_fanout_<N>: "
      "the publisher with PublisherOptions::shared_ring); fanout_floor_rings_<N> / "
      "fanout_floor_shared_<N>: the same on bare shared memory, a ring per subscriber / one ring with a cursor per "
      "subscriber (no doorbells or envelopes); broadcast_ring_<N>: the same through ringbuf::BroadcastProducer/Consumer. "
      "topic_sub_first_msg[_max]: Subscribe returning -> first message (a history of 1), p50 and max of 20. mesh_spin throughput: receiver SPIN, sender ADAPTIVE. grpc: unary Echo (latency), client "
      "streaming (throughput). mesh_link_setup_pair: link handshake, dialer's connect() to the link up on both sides. "
      "mesh_pair_join: second node's Start() to both linked (gRPC discovery included). mesh%d_formation: last "
      "node's Start() to every node linked to all others. mesh%d_idle: utime+stime of all %d node processes "
      "over %d s, in %% of one core. ring_microbench_*: one thread, no cross-core traffic. mesh_loan: mesh::Node "
      "loans (zero-copy: write one byte, Send; the receiver reads one byte in place), throughput with the receiver "
      "SPIN and the sender ADAPTIVE, latency with loans both ways, both SPIN (the sample counts of the 64 B rows); "
      "mesh_copy_big: copied Send through the pool, the receiver copies the payload out; "
      "mesh_loan_fanout_<N>: 8 MiB loans published to N subscriber processes (publisher on one CPU, subscribers "
      "on the other), msgs/s over all N; the first throughput repetition of each size of these and the iox rows "
      "is preceded by an unmeasured one. Repetitions of all "
      "rows interleave in rounds; each cell is the median over them. See bench/README.md.\n",
      static_cast<unsigned long long>(plan.samples), static_cast<unsigned long long>(plan.warmup),
      static_cast<unsigned long long>(plan.socket_samples),
      static_cast<unsigned long long>(plan.socket_warmup), static_cast<long long>(plan.duration_ms),
      absl::GetFlag(FLAGS_batch), static_cast<unsigned long long>(plan.socket_samples),
      static_cast<unsigned long long>(plan.socket_warmup), plan.nodes, plan.nodes, plan.nodes, plan.idle_s);
  if (!idle_note.empty()) std::printf("\n%s\n", idle_note.c_str());
  PrintTargets(results);
  const std::string json = absl::GetFlag(FLAGS_json);
  if (!json.empty()) {
    if (!WriteJson(json, results)) Die("cannot write " + json);
    std::printf("\nwrote %s\n", json.c_str());
  }
  return 0;
}

}  // namespace
}  // namespace shmesh_bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Runs every shmesh benchmark and the alternatives side by side; prints one Markdown table.\n"
      "Usage: shmesh_bench [--quick] [--json FILE] [--reps N] [--microbench PATH]");
  absl::ParseCommandLine(argc, argv);
  const std::string role = absl::GetFlag(FLAGS_role);
  if (!role.empty()) return shmesh_bench::RunRole(role);
  return shmesh_bench::Orchestrate();
}
