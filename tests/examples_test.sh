#!/usr/bin/env bash
# Runs the examples exactly as `./meshw demo` does (examples/run_demo.sh with
# the built meshd, meshctl and publisher), so they never rot: four meshd
# nodes from examples/demo/*.textproto, the publisher program over the C++
# API, meshctl send and topology, a clean SIGTERM shutdown, and an empty run
# directory at the end.
set -euo pipefail

RUNFILES="${TEST_SRCDIR:?run me with bazel test}/${TEST_WORKSPACE:-shmesh}"
DEMO_DIR="$(mktemp -d /tmp/exd-XXXXXX)"
OUT="$(mktemp /tmp/exd-out-XXXXXX)"
trap 'rm -rf "$DEMO_DIR" "$OUT"' EXIT

if ! DEMO_DIR="$DEMO_DIR" "$RUNFILES/examples/run_demo.sh" "$RUNFILES" >"$OUT" 2>&1; then
  echo "run_demo.sh failed:"
  cat "$OUT"
  exit 1
fi
cat "$OUT"

fail=0
expect() {
  if ! grep -qF -- "$1" "$OUT"; then
    echo "FAIL: the demo's output lacks: $1"
    fail=1
  fi
}
# Every node got its neighbour's line over the rings (meshd --stdin/--print).
expect "[b] a: hello b, this is a"
expect "[c] b: hello c, this is b"
expect "[d] c: hello d, this is c"
expect "[a] d: hello a, this is d"
# The publisher example reached all four through the C++ API.
expect "publisher sent 8 messages to 4 peers"
for n in a b c d; do
  expect "[$n] publisher: hello #2 from publisher to $n"
done
# meshctl send went through b's ring to d; meshctl topology saw the mesh;
# the nodes removed their sockets on SIGTERM (run_demo.sh checks the run
# directory is empty before it deletes it).
expect "[d] b: hello d, injected at b by meshctl"
expect "5 members, 6 links"
expect "no sockets left in"
expect "demo: OK"
if ((fail)); then exit 1; fi
echo "1 passed, 0 failed"
