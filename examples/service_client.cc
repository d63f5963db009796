// service_client: joins a mesh, calls "math/sum" once per argument and
// prints each answer. Its pair is service_server.cc.
//
//   bazel build //examples:service_server //examples:service_client
//   bazel-bin/examples/service_server --run_dir=/tmp/shmesh-examples &
//   bazel-bin/examples/service_client --run_dir=/tmp/shmesh-examples "1 2 3" "40 2"
//   # sum(1 2 3) = 6
//   # sum(40 2) = 42
//
// Exit status 0 if every call was answered with a sum, 1 otherwise (each
// failure printed with its status, e.g. INVALID_ARGUMENT for "1 x"). The
// node's config is built in code from the flags; --seed defaults to the
// server's address in --run_dir.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mesh/node.h"

ABSL_FLAG(std::string, run_dir, "/tmp/shmesh-examples",
          "Directory for the node's sockets (absolute; made if missing).");
ABSL_FLAG(std::string, name, "client", "This node's name.");
ABSL_FLAG(std::string, seed, "", "A member to join through (default: unix:RUN_DIR/server.grpc).");
ABSL_FLAG(int, timeout_ms, 1000, "Deadline of each call.");
ABSL_FLAG(int, wait_ms, 10000, "How long to wait for a server of math/sum.");

namespace {

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "service_client: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Calls math/sum for each argument; see the header of examples/service_client.cc.");
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);

  mesh::v1::NodeConfig config;
  config.set_name(absl::GetFlag(FLAGS_name));
  config.set_run_dir(absl::GetFlag(FLAGS_run_dir));
  std::string seed = absl::GetFlag(FLAGS_seed);
  if (seed.empty()) seed = absl::StrCat("unix:", config.run_dir(), "/server.grpc");
  config.add_seeds(seed);
  absl::StatusOr<std::unique_ptr<mesh::Node>> node = mesh::Node::Create(config);
  if (!node.ok()) return Fail("bad config", node.status());
  if (absl::Status s = (*node)->Start(); !s.ok()) return Fail("start", s);

  // A server announces its services over the link as it comes up: wait
  // until one is known.
  const absl::Time deadline = absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_wait_ms));
  while ((*node)->Servers("math/sum").empty()) {
    if (absl::Now() > deadline) return Fail("waiting for a server", absl::NotFoundError("no node serves math/sum"));
    absl::SleepFor(absl::Milliseconds(10));
  }

  int failed = 0;
  for (size_t i = 1; i < args.size(); ++i) {
    absl::StatusOr<std::string> sum =
        (*node)->Call("math/sum", args[i], absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
    if (sum.ok()) {
      std::printf("sum(%s) = %s\n", args[i], sum->c_str());
    } else {
      std::printf("sum(%s) failed: %s\n", args[i], sum.status().ToString().c_str());
      ++failed;
    }
  }
  (*node)->Stop();
  return failed == 0 ? 0 : 1;
}
