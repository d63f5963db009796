"""cc_grpc_proto: C++ messages and gRPC stubs from .proto files, offline.

gRPC's own Bazel rules cannot be fetched here, so this macro runs the system
`protoc` with the system `grpc_cpp_plugin` (both exported by @system) in a
genrule and wraps the generated sources in one cc_library. Generated headers
are included by their workspace path, e.g. "proto/mesh/v1/mesh.pb.h".
"""

def cc_grpc_proto(name, srcs, proto_deps = [], deps = [], grpc = True, visibility = None):
    """Generates and compiles C++ code for `srcs`.

    Args:
      name: the cc_library's name.
      srcs: .proto files in this package.
      proto_deps: .proto files (labels) that `srcs` import, from other packages.
      deps: cc_library targets generated for `proto_deps`.
      grpc: also generate gRPC service stubs (*.grpc.pb.{h,cc}).
      visibility: visibility of the cc_library.
    """
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]

    # protoc writes its outputs under --cpp_out by each input's path relative
    # to -I., which is the package path: exactly where Bazel expects `outs`.
    cmd = "$(location @system//:protoc) -I. -I$(GENDIR) --cpp_out=$(GENDIR)"
    tools = ["@system//:protoc"]
    if grpc:
        cmd += " --plugin=protoc-gen-grpc=$(location @system//:grpc_cpp_plugin) --grpc_out=$(GENDIR)"
        tools.append("@system//:grpc_cpp_plugin")
    cmd += " " + " ".join(["$(location {})".format(s) for s in srcs])

    native.genrule(
        name = name + "_gen",
        srcs = srcs + proto_deps,
        outs = outs,
        cmd = cmd,
        tools = tools,
        visibility = ["//visibility:private"],
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:grpcpp" if grpc else "@system//:protobuf"],
        visibility = visibility,
    )
