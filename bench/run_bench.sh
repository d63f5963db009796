#!/usr/bin/env bash
# Runs every shmesh benchmark from an opt build and prints one Markdown
# table; `./meshw bench` calls it as
#   bench/run_bench.sh BAZEL_BIN [--quick] [--json FILE] [more shmesh_bench flags]
# (see bench/README.md). The Google Benchmark microbenchmark of the ring is
# run by shmesh_bench too, and two of its numbers are folded into the table.
set -euo pipefail
bin="${1:?usage: run_bench.sh BAZEL_BIN [--quick] [--json FILE]}"
shift
exec "$bin/bench/shmesh_bench" --microbench="$bin/bench/ring_microbench" "$@"
