"""cc_whole_shared_library: one .so holding every library of this workspace
that `deps` need, whole (each archive's every object), with a soname.

A cc_binary(linkshared = 1) only pulls in the objects something references,
and nothing references a library's API from inside the library, so it comes
out empty. This rule re-links the same archives as "alwayslink" (the
--whole-archive of Bazel) into one shared object. Libraries of the system
(gRPC, protobuf, Abseil: only link flags in @system) stay shared.
"""

load("@bazel_tools//tools/cpp:toolchain_utils.bzl", "find_cpp_toolchain")

def _impl(ctx):
    cc_toolchain = find_cpp_toolchain(ctx)
    feature_configuration = cc_common.configure_features(
        ctx = ctx,
        cc_toolchain = cc_toolchain,
        requested_features = ctx.features,
        unsupported_features = ctx.disabled_features,
    )
    libraries = []
    flags = []
    seen_flags = {}
    for dep in ctx.attr.deps:
        for li in dep[CcInfo].linking_context.linker_inputs.to_list():
            for f in li.user_link_flags:
                if f not in seen_flags:
                    seen_flags[f] = True
                    flags.append(f)
            for lib in li.libraries:
                static = lib.pic_static_library or lib.static_library
                if static == None:
                    fail("{}: no static archive to put in the shared library".format(li.owner))
                libraries.append(cc_common.create_library_to_link(
                    actions = ctx.actions,
                    feature_configuration = feature_configuration,
                    cc_toolchain = cc_toolchain,
                    pic_static_library = static,
                    alwayslink = True,
                ))
    linker_input = cc_common.create_linker_input(
        owner = ctx.label,
        libraries = depset(libraries),
        user_link_flags = depset(flags),
    )
    linking_context = cc_common.create_linking_context(linker_inputs = depset([linker_input]))
    out = cc_common.link(
        actions = ctx.actions,
        name = ctx.attr.library_name,
        feature_configuration = feature_configuration,
        cc_toolchain = cc_toolchain,
        linking_contexts = [linking_context],
        output_type = "dynamic_library",
        user_link_flags = ["-Wl,-soname," + ctx.attr.soname] +
                          (["-Wl,--version-script=" + ctx.file.version_script.path] if ctx.file.version_script else []),
        additional_inputs = [ctx.file.version_script] if ctx.file.version_script else [],
    )
    so = out.library_to_link.resolved_symlink_dynamic_library or out.library_to_link.dynamic_library
    return [DefaultInfo(files = depset([so]), runfiles = ctx.runfiles(files = [so]))]

cc_whole_shared_library = rule(
    implementation = _impl,
    attrs = {
        "deps": attr.label_list(providers = [CcInfo]),
        # The output is lib<library_name>.so.
        "library_name": attr.string(mandatory = True),
        "soname": attr.string(mandatory = True),
        # A linker version script: which symbols the library exports.
        "version_script": attr.label(allow_single_file = True),
        "_cc_toolchain": attr.label(default = Label("@bazel_tools//tools/cpp:current_cc_toolchain")),
    },
    fragments = ["cpp"],
    toolchains = ["@bazel_tools//tools/cpp:toolchain_type"],
)
