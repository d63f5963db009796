// The performance targets checked after the table, as ratios within one
// run: the mesh against the raw ring, ZeroMQ and gRPC (issue 4), the idle
// mesh, link setup; then the doorbell, topic, Python and pool sections
// (topics_bench.h, python_bench.h, compare.h).
#ifndef SHMESH_BENCH_TARGETS_H_
#define SHMESH_BENCH_TARGETS_H_

#include "bench/results.h"

namespace shmesh_bench {

void PrintTargets(const Results& results);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_TARGETS_H_
