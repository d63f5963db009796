// The Python binding's rows: python/bench_roundtrip.py (two Python
// processes, 64 B) run once per repetition, its ROW lines folded into the
// orchestrator's table next to the C++ rows:
//   py_rtt         send + pull receive round trip (p50_ns, p99_ns; not halved)
//   py_call_rtt    Node.call round trip (p50_ns, p99_ns)
//   py_send        one-way msgs/s with send() in a loop
//   py_send_batch  one-way msgs/s with send_batch(64)
// The script finds `import shmesh` through PYTHONPATH (bench/run_bench.sh
// lays the built package out and sets it).
//
// Thread contract: called from the orchestrator's main thread.
#ifndef SHMESH_BENCH_PYTHON_BENCH_H_
#define SHMESH_BENCH_PYTHON_BENCH_H_

#include <string>
#include <vector>

#include "bench/topics_bench.h"

namespace shmesh_bench {

// Runs `script` (python3) `reps` times; `quick` shortens each run. Returns
// the ROW lines (none, with a note on stderr, if the script fails).
std::vector<std::string> RunPythonBench(const std::string& script, int reps, bool quick);

// The Python rows against the C++ rows they wrap (informational ratios).
void PrintPythonRatios(const MedianFn& median);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_PYTHON_BENCH_H_
