#!/usr/bin/env bash
# Runs every shmesh benchmark from an opt build and prints one Markdown
# table; `./meshw bench` calls it as
#   bench/run_bench.sh BAZEL_BIN [--quick] [--json FILE] [more shmesh_bench flags]
# (see bench/README.md). The Google Benchmark microbenchmark of the ring is
# run by shmesh_bench too, and two of its numbers are folded into the table;
# so are the Python binding's rows (python/bench_roundtrip.py), with the
# built package laid out in a temporary directory on PYTHONPATH.
set -euo pipefail
bin="${1:?usage: run_bench.sh BAZEL_BIN [--quick] [--json FILE]}"
shift
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py_flags=()
if [[ -f "$bin/python/_shmesh.so" ]]; then
  pkg="$(mktemp -d /tmp/shmesh-bench-py.XXXXXX)"
  trap 'rm -rf "$pkg"' EXIT
  mkdir "$pkg/shmesh"
  cp "$root"/python/shmesh/*.py "$bin/python/_shmesh.so" "$pkg/shmesh/"
  export PYTHONPATH="$pkg"
  py_flags=(--python_bench="$root/python/bench_roundtrip.py")
fi
"$bin/bench/shmesh_bench" --microbench="$bin/bench/ring_microbench" "${py_flags[@]}" "$@"
