"""shmesh_deps(): what a workspace that depends on shmesh needs, in one call.

    # WORKSPACE of your project
    local_repository(name = "shmesh", path = "/path/to/shmesh")
    load("@shmesh//:deps.bzl", "shmesh_deps")
    shmesh_deps()

    # BUILD
    cc_binary(name = "app", srcs = ["app.cc"], deps = ["@shmesh//mesh"])

It defines, unless the workspace already has a repository of that name:
  - @system: gRPC, protobuf, Abseil and friends from the Debian -dev
    packages, through pkg-config (//third_party/system:system.bzl), which
    shmesh's BUILD files depend on;
  - @rules_cc, @rules_java, @remote_coverage_tools: the offline stand-ins
    that Bazel 4's own tools refer to (they would otherwise be downloaded).
Nothing is downloaded. With the internet, fetch shmesh itself instead of
`local_repository`, the rest staying the same: Bazel's `git_repository`
(from @bazel_tools//tools/build_defs/repo:git.bzl) with name "shmesh",
shmesh's git URL as `remote` and a `commit`, or `http_archive` with a
release tarball's `urls`, `sha256` and `strip_prefix`.

Your .bazelrc needs `build --cxxopt=-std=c++17`. The machine needs the
Debian packages of `./meshw setup` (pkg-config finds them).
"""

load("//third_party/system:system.bzl", "system_libraries")

def _copy_of_folder_impl(ctx):
    # The folder of shmesh's tree named `folder`, linked file by file (it
    # holds a WORKSPACE of its own, so it is not a package of @shmesh).
    root = ctx.path(ctx.attr.anchor).dirname
    src = root
    for part in ctx.attr.folder.split("/"):
        src = src.get_child(part)
    if not src.exists:
        fail("shmesh_deps: {} is missing from shmesh's tree at {}".format(ctx.attr.folder, root))
    for child in src.readdir():
        ctx.symlink(child, child.basename)

_copy_of_folder = repository_rule(
    implementation = _copy_of_folder_impl,
    attrs = {
        # Any file at the root of shmesh's tree: where to look from.
        "anchor": attr.label(mandatory = True),
        "folder": attr.string(mandatory = True),
    },
    local = True,
)

def shmesh_deps():
    """Defines the repositories shmesh needs (see the file's docstring)."""
    if not native.existing_rule("system"):
        system_libraries(name = "system")
    for name in ["rules_cc", "rules_java", "remote_coverage_tools"]:
        if not native.existing_rule(name):
            _copy_of_folder(
                name = name,
                anchor = Label("//:deps.bzl"),
                folder = "third_party/" + name,
            )
