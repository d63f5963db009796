#!/usr/bin/env bash
# Builds and runs a program in a workspace of its own that depends on shmesh
# as an external repository, the way a user's project would (README.md,
# "From Bazel"): local_repository + shmesh_deps(), deps = ["@shmesh//mesh"].
# `./meshw test` runs it after the test suite (plain build only) and counts
# it as one test.
#
#   tests/external/run.sh SHMESH_ROOT
#
# The consumer's Bazel output base is kept in ~/.cache/shmesh-external, so a
# second run only rebuilds what changed. Prints one PASS or FAIL line last.
set -uo pipefail

root="$(cd "${1:?usage: run.sh SHMESH_ROOT}" && pwd)"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ws="$(mktemp -d /tmp/shmesh-external.XXXXXX)"
run_dir="$(mktemp -d /tmp/shx.XXXXXX)"
trap 'rm -rf "$ws" "$run_dir"' EXIT

fail() { echo "external workspace: FAIL: $*"; exit 1; }

cat >"$ws/WORKSPACE" <<WS
workspace(name = "consumer")

local_repository(
    name = "shmesh",
    path = "$root",
)

load("@shmesh//:deps.bzl", "shmesh_deps")

shmesh_deps()
WS
cat >"$ws/BUILD.bazel" <<'BUILD'
cc_binary(
    name = "hello",
    srcs = ["hello.cc"],
    deps = ["@shmesh//mesh"],
)
BUILD
cat >"$ws/.bazelrc" <<'RC'
build --cxxopt=-std=c++17 --host_cxxopt=-std=c++17
build --spawn_strategy=processwrapper-sandbox,local --genrule_strategy=processwrapper-sandbox
RC
cp "$here/hello.cc" "$ws/"

flags=()
[[ "${CI:-}" == "true" || ! -t 1 ]] && flags+=(--curses=no --color=no --show_progress_rate_limit=30)
cd "$ws" || fail "no workspace at $ws"
bazel --output_base="$HOME/.cache/shmesh-external" --max_idle_secs=30 build "${flags[@]}" //:hello ||
  fail "the consumer workspace did not build (output above)"
out="$("$ws/bazel-bin/hello" "$run_dir" 2>/dev/null)" || fail "hello exited with $?"
echo "$out"
[[ "$out" == "hello from external-hello (shmesh "*"): 1 member(s), service mesh.v1.Topology" ]] ||
  fail "unexpected output: $out"
echo "external workspace: PASS"
