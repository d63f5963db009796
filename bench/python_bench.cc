#include "bench/python_bench.h"

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/harness.h"

namespace shmesh_bench {

std::vector<std::string> RunPythonBench(const std::string& script, int reps, bool quick) {
  std::vector<std::string> rows;
  for (int rep = 0; rep < reps; ++rep) {
    std::fprintf(stderr, "shmesh_bench: python binding (%d/%d)\n", rep + 1, reps);
    Child py = Child::SpawnExe("/usr/bin/python3", {script, "--rows", quick ? "--round_trips=2000" : "--round_trips=20000",
                                                    quick ? "--messages=20000" : "--messages=200000"});
    std::vector<std::string> got;
    while (std::optional<std::string> line = py.ReadLine(absl::Now() + absl::Minutes(5))) {
      if (absl::StartsWith(*line, "ROW ")) got.push_back(*line);
    }
    const int status = py.Finish(absl::Seconds(10));
    if (status != 0 || got.empty()) {
      std::fprintf(stderr, "shmesh_bench: %s exited with %d and %zu rows: no Python rows (is PYTHONPATH set? "
                   "./meshw bench sets it)\n", script.c_str(), status, got.size());
      return {};
    }
    rows.insert(rows.end(), got.begin(), got.end());
  }
  return rows;
}

void PrintPythonRatios(const MedianFn& median) {
  auto line = [&](const std::string& what, const std::string& py_row, const std::string& cxx_row,
                  const std::string& field) {
    const std::optional<double> py = median(py_row, 64, field);
    const std::optional<double> cxx = median(cxx_row, 64, field);
    if (!py.has_value() || !cxx.has_value() || *cxx == 0) return;
    std::printf("- [info] %s: %.3gx (%.0f vs %.0f)\n", what.c_str(), *py / *cxx, *py, *cxx);
  };
  line("python call round trip p50 / C++ rpc_adaptive_rtt p50 (ns)", "py_call_rtt", "rpc_adaptive_rtt", "p50_ns");
  line("python send msgs/s / C++ mesh_adaptive msgs/s", "py_send", "mesh_adaptive", "msgs_per_s");
  line("python send_batch msgs/s / C++ mesh_adaptive_batch msgs/s", "py_send_batch", "mesh_adaptive_batch",
       "msgs_per_s");
}

}  // namespace shmesh_bench
