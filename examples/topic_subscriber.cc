// topic_subscriber: joins a mesh, subscribes to a topic pattern, prints
// --count messages and leaves. Its pair is topic_publisher.cc: run that
// first; this one still gets the readings published before it came,
// through the publisher's history.
//
//   bazel build //examples:topic_publisher //examples:topic_subscriber
//   bazel-bin/examples/topic_publisher --run_dir=/tmp/shmesh-examples &
//   bazel-bin/examples/topic_subscriber --run_dir=/tmp/shmesh-examples
//
// The node's config is built in code from the flags (an absolute run
// directory, so `bazel run` works too). --seed defaults to the publisher's
// address in that directory.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mesh/node.h"

ABSL_FLAG(std::string, run_dir, "/tmp/shmesh-examples",
          "Directory for the node's sockets (absolute; made if missing).");
ABSL_FLAG(std::string, name, "subscriber", "This node's name.");
ABSL_FLAG(std::string, seed, "", "A member to join through (default: unix:RUN_DIR/publisher.grpc).");
ABSL_FLAG(std::string, pattern, "sensors/*", "Topic pattern: '*' is one segment, '**' any number.");
ABSL_FLAG(int, count, 5, "Messages to print before leaving.");
ABSL_FLAG(int, wait_ms, 10000, "How long to wait for them.");

namespace {

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "topic_subscriber: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Prints messages of a topic pattern; see the header of examples/topic_subscriber.cc.");
  absl::ParseCommandLine(argc, argv);

  mesh::v1::NodeConfig config;
  config.set_name(absl::GetFlag(FLAGS_name));
  config.set_run_dir(absl::GetFlag(FLAGS_run_dir));
  std::string seed = absl::GetFlag(FLAGS_seed);
  if (seed.empty()) seed = absl::StrCat("unix:", config.run_dir(), "/publisher.grpc");
  config.add_seeds(seed);
  absl::StatusOr<std::unique_ptr<mesh::Node>> node = mesh::Node::Create(config);
  if (!node.ok()) return Fail("bad config", node.status());

  // The pull form: messages queue until Receive takes them.
  absl::StatusOr<std::unique_ptr<mesh::Subscription>> sub = (*node)->Subscribe(absl::GetFlag(FLAGS_pattern));
  if (!sub.ok()) return Fail("subscribe", sub.status());
  // A seed that is not up yet is retried in the background.
  if (absl::Status s = (*node)->Start(); !s.ok()) return Fail("start", s);

  const absl::Time deadline = absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_wait_ms));
  for (int i = 0; i < absl::GetFlag(FLAGS_count); ++i) {
    absl::StatusOr<mesh::Message> m = (*sub)->Receive(deadline);
    if (!m.ok()) return Fail(absl::StrCat("message ", i + 1).c_str(), m.status());
    std::printf("subscriber: %s from %s: %.*s\n", m->topic.c_str(), m->from.c_str(),
                static_cast<int>(m->data().size()), m->data().data());
    std::fflush(stdout);
  }
  sub->reset();
  (*node)->Stop();
  return 0;
}
