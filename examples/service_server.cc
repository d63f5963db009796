// service_server: serves "math/sum" (request: integers separated by
// spaces; response: their sum, or INVALID_ARGUMENT naming the word that is
// not an integer) until SIGINT or SIGTERM. Its pair is service_client.cc.
//
//   bazel build //examples:service_server //examples:service_client
//   bazel-bin/examples/service_server --run_dir=/tmp/shmesh-examples &
//   bazel-bin/examples/service_client --run_dir=/tmp/shmesh-examples "1 2 3" "40 2"
//   kill %1
//
// The node's config is built in code from the flags (an absolute run
// directory, so `bazel run` works too). The server starts the mesh unless
// --seed names a member to join through.
#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "mesh/node.h"

ABSL_FLAG(std::string, run_dir, "/tmp/shmesh-examples",
          "Directory for the node's sockets (absolute; made if missing).");
ABSL_FLAG(std::string, name, "server", "This node's name.");
ABSL_FLAG(std::string, seed, "", "A member to join through (empty: start a new mesh).");

namespace {

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "service_server: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

// The service itself: a pure function of the request. It runs on the node's
// receive thread, so it must be quick and must not Call() anything.
absl::StatusOr<std::string> Sum(const mesh::RequestView& request) {
  // The payload lives in shared memory that the caller can still write to:
  // copy it before parsing.
  const std::string text(request.payload);
  int64_t sum = 0;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    int64_t n = 0;
    if (!absl::SimpleAtoi(word, &n)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", word, "\" is not an integer"));
    }
    sum += n;
  }
  return absl::StrCat(sum);
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Serves math/sum until SIGTERM; see the header of examples/service_server.cc.");
  absl::ParseCommandLine(argc, argv);

  // Before the node starts any thread, so that every thread inherits the
  // mask and the signals wait for sigwait below.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  mesh::v1::NodeConfig config;
  config.set_name(absl::GetFlag(FLAGS_name));
  config.set_run_dir(absl::GetFlag(FLAGS_run_dir));
  if (!absl::GetFlag(FLAGS_seed).empty()) config.add_seeds(absl::GetFlag(FLAGS_seed));
  absl::StatusOr<std::unique_ptr<mesh::Node>> node = mesh::Node::Create(config);
  if (!node.ok()) return Fail("bad config", node.status());

  absl::StatusOr<std::unique_ptr<mesh::ServiceRegistration>> sum = (*node)->Serve("math/sum", Sum);
  if (!sum.ok()) return Fail("serve", sum.status());
  if (absl::Status s = (*node)->Start(); !s.ok()) return Fail("start", s);
  std::printf("server: serving math/sum on %s\n", (*node)->grpc_address().c_str());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  const uint64_t handled = (*sum)->handled();
  sum->reset();  // stop serving: the handler never runs after this
  (*node)->Stop();
  std::printf("server: answered %llu requests\n", static_cast<unsigned long long>(handled));
  return 0;
}
