#!/usr/bin/env bash
# //dist:install_test: installs shmesh into a temporary prefix with
# dist/install.sh (what `./meshw install` runs), moves the prefix (the
# install must be relocatable), installs over it again (a reinstall
# replaces), then builds each out-of-tree example of examples/outoftree
# against the installed copy only (C++ with pkg-config, C++ with CMake, C;
# Python from the installed package) and runs it against the installed
# meshd, which must print every message each one published.
set -euo pipefail

RUNFILES="${TEST_SRCDIR:?run by bazel test}/shmesh"
TMP="${TEST_TMPDIR:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "--- $*"; }

# Sanitizer builds (--config=asan/ubsan): what links against the library
# needs the same runtime.
lib="$RUNFILES/dist/libshmesh.so"
# Read whole, then matched: `readelf | grep -q` under pipefail fails when
# grep's early exit makes readelf die of SIGPIPE.
dynamic="$(readelf -d "$lib")"
san=()
py_env=()
if [[ "$dynamic" == *libasan* ]]; then
  san=(-fsanitize=address)
  # python3 is not built with ASan: its runtime goes first, and libstdc++
  # with it (ASan resolves __cxa_throw at start; python3 alone has none).
  # No leak check in an uninstrumented interpreter.
  py_env=(LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
          ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
elif [[ "$dynamic" == *libubsan* ]]; then
  san=(-fsanitize=undefined)
fi

step "install, move, reinstall"
"$RUNFILES/dist/install.sh" "$TMP/first" "$RUNFILES"
mv "$TMP/first" "$TMP/prefix"
P="$TMP/prefix"
# A file the "previous install" listed must go; files of others stay.
echo stale >"$P/lib/stale-from-an-older-shmesh"
echo "lib/stale-from-an-older-shmesh" >>"$P/share/shmesh/install_manifest.txt"
echo mine >"$P/lib/not-shmesh"
"$RUNFILES/dist/install.sh" "$P" "$RUNFILES"
[[ ! -e "$P/lib/stale-from-an-older-shmesh" ]] || fail "a reinstall left a file the previous install put there"
[[ -e "$P/lib/not-shmesh" ]] || fail "a reinstall removed a file that was not shmesh's"
for f in bin/meshd bin/meshctl lib/libshmesh.so lib/libshmesh.so.0 include/shmesh/shmesh.h \
  include/shmesh/mesh/node.h include/shmesh/mesh/v1/mesh.pb.h include/shmesh/mesh/v1/config.proto \
  lib/pkgconfig/shmesh.pc lib/cmake/shmesh/shmeshConfig.cmake lib/cmake/shmesh/shmeshConfigVersion.cmake; do
  [[ -e "$P/$f" ]] || fail "$f is not installed"
done
[[ "$(readelf -d "$P/lib/libshmesh.so")" == *"Library soname: [libshmesh.so.0]"* ]] || fail "libshmesh.so has no soname libshmesh.so.0"
if grep -rq "$TMP/first" "$P/lib/pkgconfig" "$P/lib/cmake"; then fail "an installed file names the prefix it was installed in"; fi

step "the installed tools"
version="$(sed -n 's/^#define SHMESH_VERSION "\(.*\)"$/\1/p' "$P/include/shmesh/mesh/version.h")"
[[ "$("$P/bin/meshd" --version)" == "meshd (shmesh) $version" ]] || fail "meshd --version"
[[ "$("$P/bin/meshctl" --version)" == "meshctl (shmesh) $version" ]] || fail "meshctl --version"
"$P/bin/meshd" --help >"$TMP/help.txt" || fail "meshd --help exited $?"
"$P/bin/meshctl" --help >>"$TMP/help.txt" || fail "meshctl --help exited $?"
if grep -n 'examples/\|proto/mesh\|bazel-bin' "$TMP/help.txt"; then fail "--help points at repository paths"; fi
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
[[ "$(pkg-config --modversion shmesh)" == "$version" ]] || fail "pkg-config --modversion shmesh"

# A subscriber for every example: the installed meshd prints
# "<topic> <from> <payload>" per message.
run_dir="$(mktemp -d /tmp/shi.XXXXXX)"
meshd_pid=""
cleanup() {
  [[ -n "$meshd_pid" ]] && kill "$meshd_pid" 2>/dev/null && wait "$meshd_pid" 2>/dev/null
  rm -rf "$run_dir"
}
trap cleanup EXIT
printf 'name: "hub"\nrun_dir: "%s"\n' "$run_dir" >"$TMP/hub.textproto"
"$P/bin/meshd" --config "$TMP/hub.textproto" --subscribe='hello/**' >"$TMP/hub.out" 2>"$TMP/hub.err" &
meshd_pid=$!
for _ in $(seq 100); do [[ -S "$run_dir/hub.grpc" ]] && break; sleep 0.1; done
[[ -S "$run_dir/hub.grpc" ]] || { cat "$TMP/hub.err"; fail "meshd did not start"; }
seed="unix:$run_dir/hub.grpc"

# expect TOPIC FROM N: meshd printed messages 1..N on TOPIC from FROM.
expect() {
  local topic="$1" from="$2" n="$3" i
  for _ in $(seq 50); do
    [[ $(grep -c "^$topic $from " "$TMP/hub.out" || true) -ge $n ]] && break
    sleep 0.1
  done
  for i in $(seq "$n"); do
    grep -q "^$topic $from hello $i from " "$TMP/hub.out" || { cat "$TMP/hub.out"; fail "meshd did not get message $i on $topic from $from"; }
  done
}

src="$RUNFILES/examples/outoftree"
cd "$TMP"

step "C++ with pkg-config"
# shellcheck disable=SC2046
g++ -std=c++17 "${san[@]}" "$src/publisher.cc" -o pub_pkgconfig $(pkg-config --cflags --libs shmesh)
./pub_pkgconfig "$run_dir" "$seed" hello/pkgconfig 3
expect hello/pkgconfig cxx-publisher 3

step "C++ with CMake"
cp "$src/CMakeLists.txt" "$src/publisher.cc" "$TMP/"
mkdir -p cmake-src && mv CMakeLists.txt publisher.cc cmake-src/
cmake -S cmake-src -B cmake-build -DCMAKE_PREFIX_PATH="$P" -DCMAKE_CXX_FLAGS="${san[*]}" >cmake.log 2>&1 || { cat cmake.log; fail "cmake configure"; }
cmake --build cmake-build >>cmake.log 2>&1 || { cat cmake.log; fail "cmake build"; }
./cmake-build/publisher "$run_dir" "$seed" hello/cmake 2
expect hello/cmake cxx-publisher 2

step "C"
# shellcheck disable=SC2046
gcc -std=c11 -Wall -Wextra -Werror "${san[@]}" "$src/publisher.c" -o pub_c $(pkg-config --cflags --libs shmesh)
./pub_c "$run_dir" "$seed" hello/c 3
expect hello/c c-publisher 3

step "Python"
pydir="$(echo "$P"/lib/python3.*/dist-packages)"
[[ -f "$pydir/shmesh/__init__.py" ]] || fail "the Python package is not installed"
env "${py_env[@]}" PYTHONPATH="$pydir" python3 "$src/publisher.py" "$run_dir" "$seed" hello/python 3
expect hello/python py-publisher 3

echo "PASS: installed, moved, reinstalled; C++ (pkg-config, CMake), C and Python built against the install and heard by the installed meshd"
