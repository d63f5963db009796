// A program of another Bazel workspace that depends on @shmesh (see
// run.sh): a node starts, reports its own topology through the generated
// protobuf types, and stops. It proves that the C++ API and the generated
// code (included by their import paths, "mesh/v1/...") build from an
// external repository.
#include <cstdio>
#include <memory>

#include "mesh/node.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "mesh/v1/mesh.pb.h"
#include "mesh/version.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: hello RUN_DIR\n");
    return 2;
  }
  mesh::v1::NodeConfig config;
  config.set_name("external-hello");
  config.set_run_dir(argv[1]);
  auto node = mesh::Node::Create(config);
  absl::Status s = node.ok() ? (*node)->Start() : node.status();
  if (!s.ok()) {
    std::fprintf(stderr, "hello: %s\n", s.ToString().c_str());
    return 1;
  }
  absl::StatusOr<mesh::v1::TopologySnapshot> t = (*node)->Topology(/*local_only=*/true);
  if (!t.ok()) {
    std::fprintf(stderr, "hello: %s\n", t.status().ToString().c_str());
    return 1;
  }
  std::printf("hello from %s (shmesh %s): %d member(s), service %s\n", (*node)->name().c_str(), SHMESH_VERSION,
              t->members_size(), mesh::v1::Topology::service_full_name());
  (*node)->Stop();
  return 0;
}
