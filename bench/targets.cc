#include "bench/targets.h"

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/compare.h"
#include "bench/python_bench.h"
#include "bench/topics_bench.h"

namespace shmesh_bench {

void PrintTargets(const Results& r) {
  std::printf("\n64 B p50 one-way latency per round (ns):");
  for (const char* name : {"raw_ring", "mesh_spin", "mesh_adaptive"}) {
    const Row* row = r.Find(name, 64);
    if (row == nullptr || row->reps.count("p50_ns") == 0) continue;
    std::vector<std::string> values;
    for (double v : row->reps.at("p50_ns")) values.push_back(absl::StrFormat("%.0f", v));
    std::printf(" %s %s;", name, absl::StrJoin(values, "/").c_str());
  }
  std::printf("\n\nTargets (ratios within this run):\n");
  // `op` is "<=", "<" or ">=": how `value` must compare with `limit`.
  auto check = [](const std::string& what, std::optional<double> value, const std::string& op, double limit,
                  const std::string& unit) {
    if (!value.has_value()) {
      std::printf("- [n/a] %s: not measured\n", what.c_str());
      return;
    }
    const bool ok = op == "<" ? *value < limit : op == "<=" ? *value <= limit : *value >= limit;
    std::printf("- [%s] %s: %s%s (target %s %s%s)\n", ok ? "met" : "MISSED", what.c_str(),
                absl::StrFormat("%.3g", *value).c_str(), unit.c_str(), op.c_str(),
                absl::StrFormat("%.4g", limit).c_str(), unit.c_str());
  };
  auto ratio = [](std::optional<double> a, std::optional<double> b) -> std::optional<double> {
    if (!a.has_value() || !b.has_value() || *b == 0) return std::nullopt;
    return *a / *b;
  };
  const auto raw_p50 = r.Median("raw_ring", 64, "p50_ns");
  const auto raw_p99 = r.Median("raw_ring", 64, "p99_ns");
  check("mesh_spin p50 / raw_ring p50", ratio(r.Median("mesh_spin", 64, "p50_ns"), raw_p50), "<=", 1.25, "x");
  check("mesh_spin p99 / raw_ring p99", ratio(r.Median("mesh_spin", 64, "p99_ns"), raw_p99), "<=", 2, "x");
  // Every repetition: round k of mesh_adaptive against round k of raw_ring
  // (the rounds interleave, so the two ran within seconds of each other).
  auto per_round = [&](const std::string& name) -> std::vector<double> {
    const Row* row = r.Find(name, 64);
    if (row == nullptr || row->reps.count("p50_ns") == 0) return {};
    return row->reps.at("p50_ns");
  };
  const std::vector<double> raw_rounds = per_round("raw_ring");
  const std::vector<double> adaptive_rounds = per_round("mesh_adaptive");
  std::optional<double> worst;
  for (size_t k = 0; k < std::min(raw_rounds.size(), adaptive_rounds.size()); ++k) {
    worst = std::max(worst.value_or(0), adaptive_rounds[k] / raw_rounds[k]);
  }
  check("mesh_adaptive p50 / raw_ring p50, worst round", worst, "<=", 2, "x");
  check("idle 16-node mesh, total CPU (/proc/<pid>/stat)", r.Median("mesh16_idle", 0, "cpu_percent"), "<", 1,
        "% of a core");
  for (const char* row : {"mesh_adaptive_batch", "mesh_spin_batch"}) {
    const auto rate = r.Median(row, 64, "msgs_per_s");
    check(absl::StrCat(row, " 64 B msgs/s / raw_ring"), ratio(rate, r.Median("raw_ring", 64, "msgs_per_s")),
          ">=", 2, "x");
    check(absl::StrCat(row, " 64 B msgs/s / zmq"), ratio(rate, r.Median("zmq", 64, "msgs_per_s")), ">=", 5,
          "x");
  }
  for (const char* row : {"mesh_adaptive", "mesh_spin"}) {
    const auto gbps = r.Median(row, 65536, "gb_per_s");
    check(absl::StrCat(row, " 64 KiB GB/s / raw_ring"), ratio(gbps, r.Median("raw_ring", 65536, "gb_per_s")),
          ">=", 0.9, "x");
    check(absl::StrCat(row, " 64 KiB GB/s / zmq"), ratio(gbps, r.Median("zmq", 65536, "gb_per_s")), ">=", 10,
          "x");
    check(absl::StrCat(row, " 64 KiB GB/s / grpc_stream"),
          ratio(gbps, r.Median("grpc_stream", 65536, "gb_per_s")), ">=", 10, "x");
  }
  check("16-node mesh formation", r.Median("mesh16_formation", 0, "setup_ms"), "<=", 1000, " ms");
  check("link setup, one pair", r.Median("mesh_link_setup_pair", 0, "setup_ms"), "<", 1, " ms");

  // Informational: what the doorbell change (eventfds -> one AF_UNIX stream
  // socket pair per ring) costs a sleeping ring per wake-up. No target.
  std::printf("\nDoorbell wake-up, one way (informational, no target):\n");
  for (const char* field : {"p50_ns", "p99_ns"}) {
    const auto eventfd = r.Median("doorbell_eventfd", 0, field);
    const auto socketpair = r.Median("doorbell_socketpair", 0, field);
    const auto ratio_value = ratio(socketpair, eventfd);
    if (!ratio_value.has_value()) {
      std::printf("- [info] doorbell_socketpair / doorbell_eventfd %s: not measured\n", field);
      continue;
    }
    std::printf("- [info] doorbell_socketpair / doorbell_eventfd %s: %.3gx (%.0f ns vs %.0f ns)\n", field,
                *ratio_value, *socketpair, *eventfd);
  }
  const MedianFn median = [&r](const std::string& row, uint64_t payload, const std::string& field) {
    return r.Median(row, payload, field);
  };
  PrintTopicRatios(median);
  PrintPythonRatios(median);
  PrintPoolTargets(median);
  const auto sleep_p50 = r.Median("raw_ring_sleep", 64, "p50_ns");
  const auto sleep_ratio = ratio(sleep_p50, r.Median("doorbell_socketpair", 0, "p50_ns"));
  if (sleep_ratio.has_value()) {
    std::printf("- [info] raw_ring_sleep p50 / doorbell_socketpair p50: %.3gx (%.0f ns: the ring's own work "
                "around one wake-up)\n",
                *sleep_ratio, *sleep_p50);
  }
}

}  // namespace shmesh_bench
