#!/bin/bash
# Runs the shmesh Python tests (python/tests) with pytest against the built
# extension: lays out the package (python/shmesh/*.py and _shmesh.so) in a
# temporary directory, and under --config=asan preloads libasan into the
# uninstrumented python3 (the extension needs the ASan runtime loaded first).
# Args: the path of _shmesh.so, the path of meshd.
set -euo pipefail
# Bazel runs tests in the runfiles root of the workspace; paths are relative to it.
so="$PWD/$1"
meshd="$PWD/$2"
here="$PWD/python"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
pkg="$tmp/pkg/shmesh"
mkdir -p "$pkg"
cp "$here"/shmesh/*.py "$pkg/"
cp "$so" "$pkg/_shmesh.so"
export PYTHONPATH="$tmp/pkg"
export SHMESH_MESHD="$meshd"
export PYTHONDONTWRITEBYTECODE=1
# A crash prints every thread's Python stack (from interpreter start, not
# only while pytest runs), and pytest's output is not lost in a buffer.
export PYTHONFAULTHANDLER=1
export PYTHONUNBUFFERED=1
# Debian's python3 (the headers the extension was built against).
py=/usr/bin/python3
# (ldd's output is read whole first: `ldd | grep -q` under pipefail fails
# when grep exits at the first match and ldd gets SIGPIPE.)
deps="$(ldd "$pkg/_shmesh.so")"
if grep -q libasan <<<"$deps"; then
  echo "run_pytest.sh: the extension uses ASan: preloading its runtime" >&2
  # libstdc++ too: ASan finds the real __cxa_throw when it starts, and
  # python3 does not load libstdc++ itself (a C++ throw would then abort).
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
  # python itself "leaks" (interned objects, arenas it never frees).
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
if grep -q libubsan <<<"$deps"; then
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
fi
cd "$tmp"
exec "$py" -P -m pytest -q -p no:cacheprovider ${XML_OUTPUT_FILE:+--junitxml="$XML_OUTPUT_FILE"} \
  "$here"/tests/test_*.py
