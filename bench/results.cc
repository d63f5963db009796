#include "bench/results.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "bench/harness.h"

namespace shmesh_bench {

std::optional<double> Row::Median(const std::string& field) const {
  auto it = reps.find(field);
  if (it == reps.end() || it->second.empty()) return std::nullopt;
  std::vector<double> v = it->second;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

void Results::Add(const std::string& line) {
  std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
  if (parts.size() < 3 || parts[0] != "ROW") Die(absl::StrCat("bad row line: ", line));
  uint64_t payload = 0;
  if (!absl::SimpleAtoi(parts[2], &payload)) Die(absl::StrCat("bad row line: ", line));
  Row& row = Get(parts[1], payload);
  for (size_t i = 3; i < parts.size(); ++i) {
    std::vector<std::string> kv = absl::StrSplit(parts[i], absl::MaxSplits('=', 1));
    double value = 0;
    if (kv.size() != 2 || !absl::SimpleAtod(kv[1], &value)) Die(absl::StrCat("bad row line: ", line));
    row.reps[kv[0]].push_back(value);
  }
}

std::vector<Row> Results::Sorted() const {
  static const char* const kOrder[] = {
      "floor", "raw_ring",     "raw_ring_batch", "raw_ring_sleep", "doorbell_eventfd", "doorbell_socketpair",
      "mesh_spin",  "mesh_spin_batch",
      "mesh_adaptive", "mesh_adaptive_batch", "topic_spin", "rpc_adaptive_rtt", "rpc_sleep_rtt", "rpc_pinned_rtt", "topic_fanout_1",
      "topic_fanout_4", "topic_fanout_8", "topic_shared_fanout_1", "topic_shared_fanout_4", "topic_shared_fanout_8", "fanout_floor_rings_1", "fanout_floor_rings_4", "fanout_floor_rings_8",
      "fanout_floor_shared_1", "fanout_floor_shared_4", "fanout_floor_shared_8", "broadcast_ring_1",
      "broadcast_ring_4", "broadcast_ring_8", "uds", "zmq", "grpc_unary", "grpc_stream", "iox_copy", "iox_zero_copy",
      "mesh_loan", "mesh_copy_big", "mesh_loan_fanout_1", "mesh_loan_fanout_4",
      "mesh_link_setup_pair", "mesh_pair_join", "topic_sub_first_msg", "topic_sub_first_msg_max",
      "mesh16_formation", "mesh16_idle", "py_rtt", "py_call_rtt", "py_send", "py_send_batch"};
  auto rank = [](const std::string& name) {
    for (size_t i = 0; i < std::size(kOrder); ++i) {
      if (name == kOrder[i]) return i;
    }
    return std::size(kOrder);
  };
  std::vector<Row> sorted = rows_;
  std::stable_sort(sorted.begin(), sorted.end(), [&](const Row& a, const Row& b) {
    if (rank(a.name) != rank(b.name)) return rank(a.name) < rank(b.name);
    return a.payload < b.payload;
  });
  return sorted;
}

std::string HumanSize(uint64_t bytes) {
  if (bytes == 0) return "-";
  if (bytes >= (1 << 20) && bytes % (1 << 20) == 0) return absl::StrCat(bytes >> 20, " MiB");
  if (bytes >= 1024 && bytes % 1024 == 0) return absl::StrCat(bytes / 1024, " KiB");
  return absl::StrCat(bytes, " B");
}

namespace {

std::string Fmt(const std::optional<double>& v, const char* format) {
  if (!v.has_value()) return "-";
  return absl::StrFormat(format, *v);
}

std::string FormatRate(const std::optional<double>& v) {
  if (!v.has_value()) return "-";
  if (*v >= 1e6) return absl::StrFormat("%.2fM", *v / 1e6);
  if (*v >= 1e3) return absl::StrFormat("%.1fk", *v / 1e3);
  return absl::StrFormat("%.0f", *v);
}

}  // namespace

void PrintTable(const Results& results) {
  std::printf("| benchmark | payload | p50 ns | p99 ns | p99.9 ns | msgs/s | GB/s | CPU %% | setup ms |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : results.Sorted()) {
    std::printf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name.c_str(),
                HumanSize(r.payload).c_str(), Fmt(r.Median("p50_ns"), "%.0f").c_str(),
                Fmt(r.Median("p99_ns"), "%.0f").c_str(), Fmt(r.Median("p999_ns"), "%.0f").c_str(),
                FormatRate(r.Median("msgs_per_s")).c_str(), Fmt(r.Median("gb_per_s"), "%.2f").c_str(),
                Fmt(r.Median("cpu_percent"), "%.2f").c_str(), Fmt(r.Median("setup_ms"), "%.2f").c_str());
  }
}

bool WriteJson(const std::string& path, const Results& results) {
  std::string out = "[\n";
  const std::vector<Row> rows = results.Sorted();
  for (size_t i = 0; i < rows.size(); ++i) {
    const Row& r = rows[i];
    absl::StrAppend(&out, "  {\"name\": \"", r.name, "\", \"payload_bytes\": ", r.payload);
    for (const char* field : kFields) {
      std::optional<double> v = r.Median(field);
      if (v.has_value()) absl::StrAppend(&out, ", \"", field, "\": ", absl::StrFormat("%.6g", *v));
    }
    absl::StrAppend(&out, "}", i + 1 < rows.size() ? "," : "", "\n");
  }
  out += "]\n";
  std::ofstream f(path);
  f << out;
  return static_cast<bool>(f);
}

}  // namespace shmesh_bench
