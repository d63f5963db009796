#!/usr/bin/env bash
# The shmesh demo (`./meshw demo`): four meshd nodes form a full mesh, a
# fifth program publishes to them through the C++ API, the nodes message each
# other; then topics and services: a fifth node publishes a topic with
# history to subscribers with patterns, a late joiner (meshctl echo) still
# gets the history, meshctl pub publishes once, meshctl call calls a
# service; meshctl prints the topology, and everything shuts down cleanly,
# leaving no process and no file behind.
#
# usage: examples/run_demo.sh BAZEL_BIN_DIR
#   DEMO_DIR  run directory for the nodes' sockets (default /tmp/shmesh-demo;
#             must not exist yet, and is removed at the end)
set -euo pipefail

BIN="${1:?usage: run_demo.sh BAZEL_BIN_DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEMO_DIR="${DEMO_DIR:-/tmp/shmesh-demo}"
MESHD="$BIN/mesh/cmd/meshd"
MESHCTL="$BIN/mesh/cmd/meshctl"
PUBLISHER="$BIN/examples/publisher"
NODES=(a b c d)

say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

for b in "$MESHD" "$MESHCTL" "$PUBLISHER"; do
  [[ -x "$b" ]] || die "missing binary $b (build with: bazel build -c opt //examples/... //mesh/cmd/...)"
done
if [[ -e "$DEMO_DIR" ]] && [[ -n "$(ls -A "$DEMO_DIR" 2>/dev/null)" ]]; then
  die "$DEMO_DIR is in use (another demo running?); stop it or set DEMO_DIR"
fi

WORK="$(mktemp -d /tmp/shmesh-demo-work.XXXXXX)"
declare -A PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  rm -rf "$DEMO_DIR"
}
trap cleanup EXIT

# The example configs name /tmp/shmesh-demo; point them at DEMO_DIR.
for n in "${NODES[@]}" e; do
  sed "s|/tmp/shmesh-demo|$DEMO_DIR|g" "$HERE/demo/$n.textproto" >"$WORK/$n.textproto"
done
sed "s|/tmp/shmesh-demo|$DEMO_DIR|g" "$HERE/publisher.textproto" >"$WORK/publisher.textproto"

say "Starting 4 nodes (a; b seeds a; c seeds b; d seeds a and c), all at once"
echo "a serves \"upper\"; b subscribes to chat/*, c to ** (meshd --serve, --subscribe)"
for n in "${NODES[@]}"; do
  # --stdin reads lines to send: "@peer text" sends to one peer.
  mkfifo "$WORK/$n.in"
  args=(--config "$WORK/$n.textproto" --print --stdin)
  # a serves "upper" (answers with the request upper-cased); b and c print
  # the messages of the topics matching their patterns.
  case "$n" in
    a) args+=(--serve=upper) ;;
    b) args+=('--subscribe=chat/*') ;;
    c) args+=('--subscribe=**') ;;
  esac
  "$MESHD" "${args[@]}" <"$WORK/$n.in" >"$WORK/$n.out" 2>"$WORK/$n.err" &
  PIDS[$n]=$!
  exec {fd}>"$WORK/$n.in"  # keep each node's stdin open until the end
  eval "FD_$n=$fd"
done

# Wait until every node's own view shows 3 links.
links_of() {
  "$MESHCTL" --target "unix:$DEMO_DIR/$1.grpc" links --local_only --format=json 2>/dev/null |
    grep -o '"a":' | wc -l
}
deadline=$((SECONDS + 30))
for n in "${NODES[@]}"; do
  until [[ "$(links_of "$n")" -eq 3 ]]; do
    ((SECONDS < deadline)) || { cat "$WORK"/*.err >&2; die "node $n did not link to its 3 peers in 30 s"; }
    sleep 0.1
  done
done
echo "all 4 nodes linked: 6 links, 12 rings"

say "Nodes message each other over the rings (meshd --stdin)"
echo "@b hello b, this is a" >&"$FD_a"
echo "@c hello c, this is b" >&"$FD_b"
echo "@d hello d, this is c" >&"$FD_c"
echo "@a hello a, this is d" >&"$FD_d"

say "The publisher example joins through a and sends to every node (C++ API)"
"$PUBLISHER" --config "$WORK/publisher.textproto" --peers 4 --count 2 --wait_ms 20000

say "A debugging send through the control plane (meshctl send, via gRPC to b, then b's ring to d)"
"$MESHCTL" --target "unix:$DEMO_DIR/b.grpc" send --to d --payload "hello d, injected at b by meshctl"

say "Topics: e joins and publishes 3 lines to chat/general, keeping them (meshd --publish --history=3)"
mkfifo "$WORK/e.in"
"$MESHD" --config "$WORK/e.textproto" --stdin --publish=chat/general --history=3 <"$WORK/e.in" >"$WORK/e.out" 2>"$WORK/e.err" &
PIDS[e]=$!
exec {FD_e}>"$WORK/e.in"
printf 'hello chat, e here\nthe weather is fine\nbye for now\n' >&"$FD_e"
# b (chat/*) and c (**) get them as their links to e come up: a
# subscription that matches late still gets the history, so nothing is lost.
deadline=$((SECONDS + 10))
for n in b c; do
  until [[ "$(grep -c '^chat/general e ' "$WORK/$n.out")" -ge 3 ]]; do
    ((SECONDS < deadline)) || { cat "$WORK/e.err" >&2; die "node $n did not get e's 3 lines on chat/general"; }
    sleep 0.05
  done
done
echo "b and c got them (see below)"

say "A late joiner gets the history: meshctl echo 'chat/*' --count=3 (joins the mesh as a member now)"
"$MESHCTL" --target "unix:$DEMO_DIR/a.grpc" echo 'chat/*' --count=3 --timeout_ms=10000 | sed 's/^/  /'

say "meshctl pub: a one-shot publish that first waits for the subscribers (b, c)"
"$MESHCTL" --target "unix:$DEMO_DIR/d.grpc" pub chat/general "hi all, from meshctl pub" --timeout_ms=10000 --wait_ms=10000

say "A service call: meshctl call upper (a serves it; the request goes through the rings)"
"$MESHCTL" --target "unix:$DEMO_DIR/c.grpc" call upper "make me loud" --timeout_ms=10000 --wait_ms=10000

# Each node prints what it receives; wait until all of it is there.
# 1 from a neighbour + 2 from the publisher (+1 meshctl send at d; +3 from
# e and 1 from meshctl pub at b and c).
expected_lines=(3 7 7 4)
deadline=$((SECONDS + 10))
for i in "${!NODES[@]}"; do
  n="${NODES[$i]}"
  until [[ "$(wc -l <"$WORK/$n.out")" -ge "${expected_lines[$i]}" ]]; do
    ((SECONDS < deadline)) || die "node $n received $(wc -l <"$WORK/$n.out") messages, expected ${expected_lines[$i]}"
    sleep 0.05
  done
done

say "What each node received (sender: message; topic sender message)"
for n in "${NODES[@]}"; do
  sed "s/^/  [$n] /" "$WORK/$n.out"
done

say "Topology, as node c sees it (meshctl topology; meshctl topics shows the topics part alone)"
"$MESHCTL" --target "unix:$DEMO_DIR/c.grpc" topology

say "Shutting down (SIGTERM)"
for n in "${NODES[@]}" e; do kill -TERM "${PIDS[$n]}"; done
status=0
for n in "${NODES[@]}" e; do
  if ! wait "${PIDS[$n]}"; then
    echo "node $n exited with an error:" >&2
    cat "$WORK/$n.err" >&2
    status=1
  fi
  unset "PIDS[$n]"
done
left="$(ls -A "$DEMO_DIR" 2>/dev/null || true)"
if [[ -n "$left" ]]; then
  echo "files left in $DEMO_DIR: $left" >&2
  status=1
fi
if ((status == 0)); then
  echo "all nodes exited cleanly; no sockets left in $DEMO_DIR"
  echo
  echo "demo: OK"
fi
exit "$status"
