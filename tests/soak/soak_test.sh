#!/usr/bin/env bash
# Short runs of the soak driver (soak.cc), so it cannot rot:
#   soak_test.sh pass        ~20 s of events on 8 nodes; the verdict must be PASS.
#   soak_test.sh leak KIND   every worker leaks one KIND (fd or map) per peer
#                            that goes down; the verdict must be a FAIL that
#                            names the leak. This is the leak check's own test:
#                            a soak that cannot see one leaked descriptor or
#                            mapping per event would pass it.
set -euo pipefail

soak="${TEST_SRCDIR}/${TEST_WORKSPACE}/tests/soak/soak"
out="${TEST_TMPDIR}/soak.out"
# Socket paths must fit in 107 bytes, which TEST_TMPDIR does not; the soak
# keeps its logs here on FAIL, so remove it whatever happens.
dir="$(mktemp -d /tmp/soak-test.XXXXXX)"
trap 'rm -rf "$dir"' EXIT

run() {
  local rc=0
  "$soak" --run_dir="$dir" "$@" >"$out" 2>&1 || rc=$?
  cat "$out"
  return "$rc"
}

verdict() { grep '^soak: \(PASS\|FAIL\)' "$out" | tail -1; }

case "${1:-}" in
  pass)
    rc=0
    run --seconds=20 --event_ms=1000 --check_s=8 || rc=$?
    if [[ "$rc" -ne 0 ]]; then
      echo "FAILED: the soak exited $rc" >&2
      exit 1
    fi
    # Exactly one verdict, and it is the last line.
    [[ "$(grep -c '^soak: \(PASS\|FAIL\)' "$out")" -eq 1 ]] || { echo "FAILED: not exactly one verdict line" >&2; exit 1; }
    last="$(tail -1 "$out")"
    [[ "$last" =~ ^soak:\ PASS\ 20\ s,\ 8\ nodes,\ [0-9]+\ kills,\ [0-9]+\ stops,\ [0-9]+\ restarts,\ [1-9][0-9]*\ messages\ verified,\ 0\ lost,\ 0\ errors ]] ||
      { echo "FAILED: unexpected verdict: $last" >&2; exit 1; }
    # Events happened, or the run proved nothing.
    kills="$(sed -E 's/.* ([0-9]+) kills.*/\1/' <<<"$last")"
    [[ "$kills" -gt 0 ]] || { echo "FAILED: no kill in 20 s" >&2; exit 1; }
    ;;
  leak)
    kind="$2"
    case "$kind" in
      fd) want="descriptors in a whole mesh" ;;
      map) want="shared mappings in a whole mesh" ;;
      *) echo "usage: soak_test.sh leak fd|map" >&2; exit 2 ;;
    esac
    rc=0
    # n0 is spared (only paused), so it sees every node that goes down.
    run --seconds=15 --event_ms=300 --check_s=3 --spare=1 --worker_args="--leak_on_peer_down=$kind" || rc=$?
    if [[ "$rc" -ne 1 ]]; then
      echo "FAILED: the soak exited $rc, not 1, with a leak injected" >&2
      exit 1
    fi
    v="$(verdict)"
    [[ "$v" == "soak: FAIL "*"$want"*"a leak" ]] || { echo "FAILED: the verdict does not name the $kind leak: $v" >&2; exit 1; }
    ;;
  *)
    echo "usage: soak_test.sh pass | leak fd|map" >&2
    exit 2
    ;;
esac
echo PASSED
