"""cc_grpc_proto: C++ messages and gRPC stubs from .proto files, offline.

gRPC's own Bazel rules cannot be fetched here, so this macro runs the system
`protoc` with the system `grpc_cpp_plugin` (both exported by @system) in a
genrule and wraps the generated sources in one cc_library.

Import paths are relative to `import_root`, a directory of the repository
(for shmesh's API protos, `proto/`): the file `proto/mesh/v1/mesh.proto` is
known to protoc, to gRPC server reflection and to C++ includes as
`mesh/v1/mesh.proto` / "mesh/v1/mesh.pb.h", the same names a client gets
when it generates code from the installed or checked-out `proto/` folder.
This works the same when shmesh is an external repository of another
workspace (its sources then live under external/<name>/).
"""

def cc_grpc_proto(name, srcs, proto_deps = [], deps = [], grpc = True, import_root = "", visibility = None):
    """Generates and compiles C++ code for `srcs`.

    Args:
      name: the cc_library's name.
      srcs: .proto files in this package.
      proto_deps: .proto files (labels) that `srcs` import, from other packages
        under the same import_root.
      deps: cc_library targets generated for `proto_deps`.
      grpc: also generate gRPC service stubs (*.grpc.pb.{h,cc}).
      import_root: the repository directory that import paths and C++
        include paths are relative to ("" for the repository root). This
        package must be under it.
      visibility: visibility of the cc_library.
    """
    pkg = native.package_name()
    if import_root and not (pkg + "/").startswith(import_root + "/"):
        fail("cc_grpc_proto: package {} is not under import_root {}".format(pkg, import_root))

    # The package's path below the import root: "mesh/v1" for proto/mesh/v1.
    rel = pkg[len(import_root) + 1:] if import_root else pkg
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]

    # Shell: the source and output roots are the package directories with
    # `rel` cut off the end. Inputs are named by their import path, so
    # protoc writes each output under <out root>/<rel>/, which is exactly
    # where Bazel expects `outs`.
    first = srcs[0]
    cmd = "SRC=./$$(dirname $(location {})); OUT=$(RULEDIR); ".format(first)
    cmd += "SRC_ROOT=$${{SRC%/{rel}}}; OUT_ROOT=$${{OUT%/{rel}}}; ".format(rel = rel)
    names = " ".join([rel + "/" + s for s in srcs])
    cmd += "$(location @system//:protoc) -I$$SRC_ROOT --cpp_out=$$OUT_ROOT"
    tools = ["@system//:protoc"]
    if grpc:
        cmd += " --plugin=protoc-gen-grpc=$(location @system//:grpc_cpp_plugin) --grpc_out=$$OUT_ROOT"
        tools.append("@system//:grpc_cpp_plugin")
    cmd += " " + names

    native.genrule(
        name = name + "_gen",
        srcs = srcs + proto_deps,
        outs = outs,
        cmd = cmd,
        tools = tools,
        # The generated files themselves (an installer ships the headers).
        visibility = visibility,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        strip_include_prefix = ("/" + import_root) if import_root else None,
        deps = deps + ["@system//:grpcpp" if grpc else "@system//:protobuf"],
        visibility = visibility,
    )
