#!/usr/bin/env bash
# Runs the examples so they never rot:
# 1. the demo exactly as `./meshw demo` does (examples/run_demo.sh with the
#    built meshd, meshctl and publisher): four meshd nodes from
#    examples/demo/*.textproto, the publisher program over the C++ API,
#    meshctl send; then topics (a fifth node publishing with history, meshd
#    subscribers with patterns, a late meshctl echo, meshctl pub) and a
#    service (meshd --serve, meshctl call); meshctl topology, a clean
#    SIGTERM shutdown, and an empty run directory at the end;
# 2. the topic pair (topic_publisher, then topic_subscriber, which joins
#    late and gets the readings from the history);
# 3. the service pair (service_server, service_client: answers and an
#    error), and the server's clean stop on SIGTERM.
set -euo pipefail

RUNFILES="${TEST_SRCDIR:?run me with bazel test}/${TEST_WORKSPACE:-shmesh}"
DEMO_DIR="$(mktemp -d /tmp/exd-XXXXXX)"
EX_DIR="$(mktemp -d /tmp/exx-XXXXXX)"
OUT="$(mktemp /tmp/exd-out-XXXXXX)"
BG=()
cleanup() {
  local pid
  for pid in "${BG[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$DEMO_DIR" "$EX_DIR" "$OUT"
}
trap cleanup EXIT

fail=0
expect_in() {  # FILE TEXT
  if ! grep -qF -- "$2" "$1"; then
    echo "FAIL: $(basename "$1") lacks: $2"
    fail=1
  fi
}

# --- 1. the demo
if ! DEMO_DIR="$DEMO_DIR" "$RUNFILES/examples/run_demo.sh" "$RUNFILES" >"$OUT" 2>&1; then
  echo "run_demo.sh failed:"
  cat "$OUT"
  exit 1
fi
cat "$OUT"
expect() { expect_in "$OUT" "$1"; }
expect_re() {  # an extended regular expression, for table rows
  if ! grep -qE -- "$1" "$OUT"; then
    echo "FAIL: the demo's output has no line matching: $1"
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
# meshctl send went through b's ring to d.
expect "[d] b: hello d, injected at b by meshctl"
# Topics: b (chat/*) and c (**) printed e's lines (meshd --subscribe) and
# meshctl pub's; the late meshctl echo got e's history; meshctl call got
# a's answer.
for n in b c; do
  expect "[$n] chat/general e hello chat, e here"
  expect "[$n] chat/general e bye for now"
  expect "[$n] chat/general meshctl-"
done
expect "  chat/general e the weather is fine"
expect "published 1 message to chat/general; reached: b, c"
expect "MAKE ME LOUD"
# meshctl topology saw the mesh and its topics; the nodes removed their
# sockets on SIGTERM (run_demo.sh checks the run directory is empty before
# it deletes it).
# (Members that left stay listed as DOWN: the publisher, meshctl's nodes.)
expect "members, 10 links"
expect_re "^chat/general +e +pub "
expect_re "^chat/general +b +sub +chat/\* +4 +"
expect_re "^upper +a +1$"
expect "no sockets left in"
expect "demo: OK"

# --- 2. the topic pair: the subscriber comes after the readings were
# published, and still gets all 5 through the publisher's history.
"$RUNFILES/examples/topic_publisher" --run_dir="$EX_DIR" --count=5 --interval_ms=10 \
  >"$EX_DIR/pub.out" 2>&1 &
PUB=$!
BG+=("$PUB")
for _ in $(seq 100); do
  grep -qF "published \"reading #5" "$EX_DIR/pub.out" && break
  sleep 0.05
done
if ! "$RUNFILES/examples/topic_subscriber" --run_dir="$EX_DIR" --count=5 --wait_ms=10000 \
  >"$EX_DIR/sub.out" 2>&1; then
  echo "FAIL: topic_subscriber failed:"; cat "$EX_DIR/sub.out"; fail=1
fi
if ! wait "$PUB"; then
  echo "FAIL: topic_publisher failed:"; cat "$EX_DIR/pub.out"; fail=1
fi
cat "$EX_DIR/pub.out" "$EX_DIR/sub.out"
expect_in "$EX_DIR/pub.out" "published \"reading #1: 20.5 C\" (0 subscribers now)"
expect_in "$EX_DIR/pub.out" "the subscriber came and went; 5 readings published"
for i in 1 2 3 4 5; do
  expect_in "$EX_DIR/sub.out" "subscriber: sensors/temperature from publisher: reading #$i:"
done

# --- 3. the service pair.
"$RUNFILES/examples/service_server" --run_dir="$EX_DIR" >"$EX_DIR/server.out" 2>&1 &
SERVER=$!
BG+=("$SERVER")
if ! "$RUNFILES/examples/service_client" --run_dir="$EX_DIR" "1 2 3" "40 2" >"$EX_DIR/client.out" 2>&1; then
  echo "FAIL: service_client failed:"; cat "$EX_DIR/client.out"; fail=1
fi
# A request the service rejects: the client reports the handler's status.
if "$RUNFILES/examples/service_client" --run_dir="$EX_DIR" --name=client2 "1 x" >"$EX_DIR/client2.out" 2>&1; then
  echo "FAIL: service_client succeeded on \"1 x\""; fail=1
fi
kill -TERM "$SERVER"
if ! wait "$SERVER"; then
  echo "FAIL: service_server did not stop cleanly:"; cat "$EX_DIR/server.out"; fail=1
fi
cat "$EX_DIR/server.out" "$EX_DIR/client.out" "$EX_DIR/client2.out"
expect_in "$EX_DIR/client.out" "sum(1 2 3) = 6"
expect_in "$EX_DIR/client.out" "sum(40 2) = 42"
expect_in "$EX_DIR/client2.out" "sum(1 x) failed: INVALID_ARGUMENT: \"x\" is not an integer"
expect_in "$EX_DIR/server.out" "server: answered 3 requests"
left="$(ls -A "$EX_DIR" | grep -v '\.out$' || true)"
if [[ -n "$left" ]]; then
  echo "FAIL: the example nodes left files in their run directory: $left"
  fail=1
fi

if ((fail)); then exit 1; fi
echo "3 passed, 0 failed"
