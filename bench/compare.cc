#include "bench/compare.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, big_sizes, "1048576,8388608",
          "throughput payload sizes of the iox_* rows besides --sizes, comma-separated (at most 8 MiB)");
ABSL_FLAG(std::string, iox_roudi, "/usr/bin/iox-roudi", "iceoryx's daemon (Debian package iceoryx)");
ABSL_FLAG(std::string, iox_roudi_config, "",
          "RouDi config for the iox_* rows (default: bench/iceoryx_roudi.toml from the binary's runfiles)");

namespace shmesh_bench {
namespace {

constexpr uint64_t kMaxIoxPayload = uint64_t{8} << 20;  // iceoryx_roudi.toml's largest pool

// Why the iox rows were left out of this run (empty: they were not).
std::string& IoxSkipReason() {
  static std::string* reason = new std::string;
  return *reason;
}

// bench/iceoryx_roudi.toml next to this binary (a data dependency).
absl::StatusOr<std::string> RoudiConfig() {
  const std::string flag = absl::GetFlag(FLAGS_iox_roudi_config);
  if (!flag.empty()) return flag;
  std::vector<std::string> tried;
  if (const char* dir = std::getenv("RUNFILES_DIR"); dir != nullptr) tried.push_back(dir);
  tried.push_back(SelfExe() + ".runfiles");
  for (std::string& path : tried) {
    path += "/shmesh/bench/iceoryx_roudi.toml";
    if (::access(path.c_str(), R_OK) == 0) return path;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("bench/iceoryx_roudi.toml is not in the runfiles (", tried.back(),
                   "): build //bench:shmesh_bench with Bazel, or pass --iox_roudi_config=PATH"));
}

// --big_sizes, parsed (dies on a bad one).
std::vector<uint64_t> BigSizes() {
  std::vector<uint64_t> sizes;
  for (absl::string_view size : absl::StrSplit(absl::GetFlag(FLAGS_big_sizes), ',', absl::SkipEmpty())) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(size, &n) || n == 0 || n > kMaxIoxPayload) {
      Die(absl::StrCat("bad --big_sizes '", size, "': sizes of 1 to ", kMaxIoxPayload, " bytes"));
    }
    sizes.push_back(n);
  }
  return sizes;
}

std::string HumanSize(uint64_t bytes) {
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  if (bytes >= 1024 && bytes % 1024 == 0) return absl::StrCat(bytes / 1024, " KiB");
  return absl::StrCat(bytes, " B");
}

}  // namespace

absl::StatusOr<std::unique_ptr<IoxRoudi>> IoxRoudi::Start(const std::string& dir) {
  absl::StatusOr<std::string> config = RoudiConfig();
  if (!config.ok()) {
    IoxSkipReason() = config.status().ToString();
    return config.status();
  }
  Child guard = Child::Spawn({"--role=iox_roudi", "--run_dir=" + dir, "--iox_roudi=" + absl::GetFlag(FLAGS_iox_roudi),
                              "--iox_roudi_config=" + *config});
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  absl::Status status = absl::DeadlineExceededError("the iox_roudi guard ended or did not answer in 30 s");
  while (std::optional<std::string> line = guard.ReadLine(deadline)) {
    if (*line == "READY") return std::unique_ptr<IoxRoudi>(new IoxRoudi(std::move(guard)));
    if (line->rfind("FAILED ", 0) == 0) {
      status = absl::FailedPreconditionError(absl::StrCat("iox-roudi did not start: ", line->substr(7)));
      break;
    }
  }
  guard.Finish(absl::Seconds(20));
  IoxSkipReason() = status.ToString();
  return status;
}

IoxRoudi::~IoxRoudi() { guard_.Finish(absl::Seconds(20)); }

std::vector<std::string> IoxServerArgs(const std::string& mode) {
  return {"--role=iox_server", "--cpu=1", "--policy=" + mode, "--name=iox_" + mode};
}

std::vector<std::string> IoxClientArgs(const std::string& mode) {
  return {"--role=iox_client", "--cpu=0", "--policy=" + mode, "--name=iox_" + mode};
}

std::vector<std::string> IoxThroughputCommands(const std::vector<uint64_t>& sizes) {
  std::vector<uint64_t> all = sizes;
  for (uint64_t n : BigSizes()) all.push_back(n);
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  std::vector<std::string> commands;
  for (uint64_t size : all) commands.push_back(absl::StrCat("thru ", size, " 0"));
  return commands;
}

std::vector<std::string> PoolServerArgs(const std::string& dir, const std::string& policy) {
  return {"--role=pool_server", "--cpu=1", "--run_dir=" + dir, "--policy=" + policy};
}

std::vector<std::string> PoolClientArgs(const std::string& dir, const std::string& policy) {
  return {"--role=pool_client", "--cpu=0", "--run_dir=" + dir, "--seed=unix:" + dir + "/s.grpc",
          "--policy=" + policy};
}

std::vector<std::string> PoolLatencyCommands() {
  return {"ping 64", absl::StrCat("ping ", kMaxPoolPayload)};
}

std::vector<std::string> PoolThroughputCommands() {
  std::vector<uint64_t> loans = BigSizes();
  loans.push_back(kMaxPayload);  // 64 KiB: the pool's threshold
  std::sort(loans.begin(), loans.end());
  loans.erase(std::unique(loans.begin(), loans.end()), loans.end());
  std::vector<uint64_t> copies = BigSizes();
  std::sort(copies.begin(), copies.end());
  copies.erase(std::unique(copies.begin(), copies.end()), copies.end());
  std::vector<std::string> commands;
  for (uint64_t size : loans) commands.push_back(absl::StrCat("thru ", size, " 0 loan"));
  for (uint64_t size : copies) commands.push_back(absl::StrCat("thru ", size, " 0 copy"));
  return commands;
}

std::vector<std::string> PoolFanoutPublisherArgs(const std::string& dir, int n) {
  return {"--role=pool_fanout_pub", "--cpu=0", "--run_dir=" + dir, absl::StrCat("--name=mesh_loan_fanout_", n),
          "--policy=adaptive", absl::StrCat("--expect_peers=", n)};
}

std::vector<std::string> PoolFanoutSubscriberArgs(const std::string& dir, int i) {
  return {"--role=pool_fanout_sub", "--cpu=1", "--run_dir=" + dir, absl::StrCat("--name=f", i),
          "--seed=unix:" + dir + "/p.grpc", "--policy=adaptive"};
}

std::string PoolFanoutCommand() { return absl::StrCat("thru ", kMaxPoolPayload, " 0 loan"); }

void PrintFloorMultiples(const std::vector<LatencyP50>& rows) {
  const LatencyP50* floor = nullptr;
  for (const LatencyP50& r : rows) {
    if (r.row == "floor") floor = &r;
  }
  if (floor == nullptr || floor->p50_ns <= 0) return;
  std::printf(
      "\nLatency p50 as a multiple of floor's (%.0f ns one way: one cache line bounced between the two pinned "
      "CPUs, the least any row can cost there; *_rtt rows are round trips, not halved):\n\n",
      floor->p50_ns);
  std::printf("| benchmark | payload | p50 ns | x floor |\n|---|---:|---:|---:|\n");
  for (const LatencyP50& r : rows) {
    std::printf("| %s | %s | %.0f | %.1f |\n", r.row.c_str(), r.payload == 0 ? "-" : HumanSize(r.payload).c_str(),
                r.p50_ns, r.p50_ns / floor->p50_ns);
  }
}

void PrintPoolTargets(const MedianFn& median) {
  // Row `row` at `payload` against row `ref` at `ref_payload`, both in
  // `field`: row / ref must be `op` `limit` ("<=" or ">="); limit 0: no
  // target value, the ratio is informational. `row` may name alternatives
  // separated by '|': the best of them counts (the largest for ">=", the
  // smallest for "<=").
  struct Comparison {
    const char* row;
    uint64_t payload;
    const char* field;
    const char* ref;
    uint64_t ref_payload;
    const char* op;
    double limit;
  };
  constexpr uint64_t k64K = uint64_t{64} << 10, k1M = uint64_t{1} << 20, k8M = uint64_t{8} << 20;
  static constexpr Comparison kComparisons[] = {
      // Latency through mesh::Node against iceoryx's.
      {"mesh_spin", 64, "p50_ns", "iox_copy", 64, "<=", 0.5},
      // Zero-copy: loans against iceoryx's loans.
      {"mesh_loan", k64K, "msgs_per_s", "iox_zero_copy", k64K, ">=", 2},
      {"mesh_loan", k1M, "msgs_per_s", "iox_zero_copy", k1M, ">=", 2},
      {"mesh_loan", k8M, "msgs_per_s", "iox_zero_copy", k8M, ">=", 2},
      // Copying sends of large messages against iceoryx's copies.
      {"mesh_copy_big", k1M, "gb_per_s", "iox_copy", k1M, ">=", 1.0},
      {"mesh_copy_big", k8M, "gb_per_s", "iox_copy", k8M, ">=", 1.0},
      // A loan's latency hardly depends on its size.
      {"mesh_loan", k8M, "p50_ns", "mesh_loan", 64, "<=", 3},
      // Fan-out of loans: four subscribers cost little more than one.
      {"mesh_loan_fanout_4", k8M, "msgs_per_s", "mesh_loan_fanout_1", k8M, ">=", 0.8},
      // A plain Send loop (unbatched) of small messages against ZeroMQ.
      {"mesh_spin|mesh_adaptive", 64, "msgs_per_s", "zmq", 64, ">=", 2.5},
  };
  auto unit = [](const std::string& field) {
    return field == "p50_ns" ? " p50" : field == "msgs_per_s" ? " msgs/s" : " GB/s";
  };
  std::printf(
      "\nPool and iceoryx targets (ratios within this run; iox_*: iceoryx 2.0 through the iox-roudi of this run, "
      "both sides busy-polling take(), BLOCK_PRODUCER queues; iox_zero_copy and mesh_loan touch one byte, so "
      "their GB/s is nominal; mesh_loan_fanout_<N>: msgs/s over all N subscribers):\n");
  for (const Comparison& c : kComparisons) {
    const bool at_least = std::string(c.op) == ">=";
    std::optional<double> ours;
    std::string best;
    for (absl::string_view row : absl::StrSplit(c.row, '|')) {
      const std::optional<double> v = median(std::string(row), c.payload, c.field);
      if (v.has_value() && (!ours.has_value() || (at_least ? *v > *ours : *v < *ours))) {
        ours = v;
        best = std::string(row);
      }
    }
    const std::string row_name = absl::StrContains(c.row, '|')
                                     ? absl::StrCat("best of ", absl::StrReplaceAll(c.row, {{"|", ", "}}))
                                     : std::string(c.row);
    const std::string what = absl::StrCat(row_name, " ", HumanSize(c.payload), unit(c.field), " / ", c.ref, " ",
                                          HumanSize(c.ref_payload), unit(c.field));
    const std::optional<double> theirs = median(c.ref, c.ref_payload, c.field);
    if (!ours.has_value() || !theirs.has_value() || *theirs == 0) {
      std::printf("- [n/a] %s: n/a (row not measured)\n", what.c_str());
      continue;
    }
    const double ratio = *ours / *theirs;
    std::string detail = absl::StrFormat("%.3gx (%.4g vs %.4g)", ratio, *ours, *theirs);
    if (absl::StrContains(c.row, '|')) absl::StrAppend(&detail, ", ", best);
    if (c.limit == 0) {
      std::printf("- [info] %s: %s, no target value set (bench/compare.cc)\n", what.c_str(), detail.c_str());
      continue;
    }
    const bool ok = at_least ? ratio >= c.limit : ratio <= c.limit;
    std::printf("- [%s] %s: %s (target %s %.4gx)\n", ok ? "met" : "MISSED", what.c_str(), detail.c_str(), c.op,
                c.limit);
  }
  if (!IoxSkipReason().empty()) {
    std::printf("- iox rows left out: %s\n", IoxSkipReason().c_str());
  }
}

}  // namespace shmesh_bench
