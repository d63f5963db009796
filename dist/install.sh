#!/usr/bin/env bash
# Lays out an installed shmesh under PREFIX from files that are already
# built: `./meshw install` runs it after `bazel build -c opt`, and
# dist/install_test.sh runs it on a test's runfiles.
#
#   dist/install.sh PREFIX ROOT...
#
# Each file is looked up by its workspace path (e.g. mesh/node.h,
# dist/libshmesh.so, mesh/v1 generated headers under proto/) in the ROOTs in
# order: the source tree and bazel-bin for meshw, the runfiles tree for a
# test. The layout (see dist/README.md):
#   bin/meshd, bin/meshctl
#   lib/libshmesh.so.X.Y.Z, lib/libshmesh.so.X (soname), lib/libshmesh.so
#   include/shmesh/shmesh.h (C), include/shmesh/mesh/*.h (C++),
#   include/shmesh/mesh/v1/*.pb.h and *.proto
#   lib/pkgconfig/shmesh.pc, lib/cmake/shmesh/shmeshConfig*.cmake
#   lib/python3.N/dist-packages/shmesh/ (when the Python binding is built)
#   share/shmesh/install_manifest.txt: every file installed, so that the
#   next install into the same PREFIX first removes what this one put there.
# Nothing in the installed files names PREFIX: shmesh.pc and the CMake
# files find the prefix from where they are, so the tree can be moved.
set -euo pipefail

die() { echo "install.sh: $*" >&2; exit 1; }
[[ $# -ge 2 ]] || die "usage: install.sh PREFIX ROOT... (see the header of dist/install.sh)"
PREFIX="$1"
shift
ROOTS=("$@")
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The first ROOT that has workspace path $1, or nothing.
find_in_roots() {
  local r
  for r in "${ROOTS[@]}"; do
    if [[ -e "$r/$1" ]]; then
      echo "$r/$1"
      return 0
    fi
  done
  return 1
}
need() { find_in_roots "$1" || die "$1 not found in ${ROOTS[*]} (build it first: ./meshw build)"; }

version_h="$(need mesh/version.h)" || exit 1
VERSION="$(sed -n 's/^#define SHMESH_VERSION "\(.*\)"$/\1/p' "$version_h")"
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "no SHMESH_VERSION \"X.Y.Z\" in $version_h"
MAJOR="${VERSION%%.*}"

mkdir -p "$PREFIX" || die "cannot create $PREFIX"
PREFIX="$(cd "$PREFIX" && pwd)"
MANIFEST="$PREFIX/share/shmesh/install_manifest.txt"

# What the previous install put here goes first (a file list relative to
# PREFIX; only plain files and links below PREFIX are removed).
if [[ -f "$MANIFEST" ]]; then
  while IFS= read -r rel; do
    [[ -n "$rel" && "$rel" != /* && "$rel" != *..* ]] || continue
    rm -f "$PREFIX/$rel"
  done <"$MANIFEST"
fi

installed=()
# put SRC DEST_REL MODE: copies one file (replacing, never writing through
# an old link).
put() {
  local src="$1" rel="$2" mode="$3"
  mkdir -p "$(dirname "$PREFIX/$rel")"
  rm -f "$PREFIX/$rel"
  cp "$src" "$PREFIX/$rel"
  chmod "$mode" "$PREFIX/$rel"
  installed+=("$rel")
}
# ship WORKSPACE_PATH DEST_REL MODE: put, from the first ROOT that has it.
ship() {
  local src
  src="$(need "$1")" || exit 1
  put "$src" "$2" "$3"
}
link() {
  rm -f "$PREFIX/$2"
  ln -s "$1" "$PREFIX/$2"
  installed+=("$2")
}

# Binaries and the library.
ship mesh/cmd/meshd bin/meshd 0755
ship mesh/cmd/meshctl bin/meshctl 0755
ship dist/libshmesh.so "lib/libshmesh.so.$VERSION" 0755
link "libshmesh.so.$VERSION" "lib/libshmesh.so.$MAJOR"
link "libshmesh.so.$MAJOR" lib/libshmesh.so

# Headers: the C++ API, the generated protobuf code it includes, the protos
# themselves (what a gRPC client of the control plane generates from), and
# the C API when it is built.
for h in node.h message.h topic.h rpc.h config.h version.h loan.h; do
  ship "mesh/$h" "include/shmesh/mesh/$h" 0644
done
for f in config.pb.h mesh.pb.h mesh.grpc.pb.h config.proto mesh.proto; do
  ship "proto/mesh/v1/$f" "include/shmesh/mesh/v1/$f" 0644
done
if c_api="$(find_in_roots capi/shmesh.h)"; then
  put "$c_api" include/shmesh/shmesh.h 0644
fi

# pkg-config and CMake files, from templates next to this script.
gen() {
  local template="$1" rel="$2"
  mkdir -p "$(dirname "$PREFIX/$rel")"
  sed -e "s/@VERSION@/$VERSION/g" -e "s/@MAJOR@/$MAJOR/g" "$template" >"$PREFIX/$rel"
  chmod 0644 "$PREFIX/$rel"
  installed+=("$rel")
}
gen "$HERE/shmesh.pc.in" lib/pkgconfig/shmesh.pc
gen "$HERE/shmeshConfig.cmake.in" lib/cmake/shmesh/shmeshConfig.cmake
gen "$HERE/shmeshConfigVersion.cmake.in" lib/cmake/shmesh/shmeshConfigVersion.cmake

# The Python package, when the binding is built: where Debian's python3
# looks for a prefix's packages (/usr/local/lib/python3.N/dist-packages).
if py_ext="$(find_in_roots python/_shmesh.so)"; then
  pyver="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  pydir="lib/python$pyver/dist-packages/shmesh"
  put "$py_ext" "$pydir/_shmesh.so" 0755
  py_src="$(need python/shmesh/__init__.py)" || exit 1
  for f in "$(dirname "$py_src")"/*.py; do
    put "$f" "$pydir/$(basename "$f")" 0644
  done
fi

mkdir -p "$(dirname "$MANIFEST")"
printf '%s\n' "${installed[@]}" share/shmesh/install_manifest.txt >"$MANIFEST"
echo "install.sh: shmesh $VERSION installed in $PREFIX (${#installed[@]} files; list in share/shmesh/install_manifest.txt)"
