#!/usr/bin/env bash
# Runs the shmesh benchmarks from an opt build; `./meshw bench` calls it as
#   bench/run_bench.sh BAZEL_BIN [--quick] [--json FILE]
# and the arguments after BAZEL_BIN go to ring_bench (see bench/README.md).
set -euo pipefail
bin="${1:?usage: run_bench.sh BAZEL_BIN [--quick] [--json FILE]}"
shift
exec "$bin/bench/ring_bench" "$@"
