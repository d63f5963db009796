// topic_publisher: publishes a few temperature readings on a topic and keeps
// them (history) for subscribers that come later, then waits until a
// subscriber has come and gone (PublisherOptions::on_matched). Its pair is topic_subscriber.cc.
//
//   bazel build //examples:topic_publisher //examples:topic_subscriber
//   bazel-bin/examples/topic_publisher --run_dir=/tmp/shmesh-examples &
//   bazel-bin/examples/topic_subscriber --run_dir=/tmp/shmesh-examples
//
// (or `bazel run //examples:topic_publisher -- --run_dir=/tmp/shmesh-examples`:
// the run directory is an absolute path, so the working directory that
// `bazel run` picks does not matter). The node's config is built in code
// from the flags: no config file. The publisher starts the mesh (no seed)
// unless --seed names a member to join through.
#include <cstdio>
#include <memory>
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "mesh/node.h"

ABSL_FLAG(std::string, run_dir, "/tmp/shmesh-examples",
          "Directory for the node's sockets (absolute; made if missing).");
ABSL_FLAG(std::string, name, "publisher", "This node's name.");
ABSL_FLAG(std::string, seed, "", "A member to join through (empty: start a new mesh).");
ABSL_FLAG(std::string, topic, "sensors/temperature", "The topic to publish.");
ABSL_FLAG(int, count, 5, "Readings to publish.");
ABSL_FLAG(int, interval_ms, 100, "Time between two readings.");
ABSL_FLAG(int, history, 5, "Readings kept for late subscribers (at most 4096).");
ABSL_FLAG(int, wait_ms, 20000, "How long to wait for a subscriber to come, and then to leave.");

namespace {

int Fail(const char* what, const absl::Status& status) {
  std::fprintf(stderr, "topic_publisher: %s: %s\n", what, status.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage("Publishes readings on a topic with history; see the header of examples/topic_publisher.cc.");
  absl::ParseCommandLine(argc, argv);

  mesh::v1::NodeConfig config;
  config.set_name(absl::GetFlag(FLAGS_name));
  config.set_run_dir(absl::GetFlag(FLAGS_run_dir));
  if (!absl::GetFlag(FLAGS_seed).empty()) config.add_seeds(absl::GetFlag(FLAGS_seed));
  absl::StatusOr<std::unique_ptr<mesh::Node>> node = mesh::Node::Create(config);
  if (!node.ok()) return Fail("bad config", node.status());

  // Whether a subscriber matched at some point, and how many match now:
  // on_matched reports every change (on the node's events thread), so even
  // a subscriber that comes and goes within a millisecond is seen.
  struct Matches {
    absl::Mutex mu;
    bool seen ABSL_GUARDED_BY(mu) = false;
    size_t now ABSL_GUARDED_BY(mu) = 0;
  };
  auto matches = std::make_shared<Matches>();

  // Advertise before Start: the publisher exists from the node's first link.
  mesh::PublisherOptions options;
  options.history = static_cast<size_t>(absl::GetFlag(FLAGS_history));
  options.on_matched = [matches](size_t n) {
    absl::MutexLock lock(&matches->mu);
    matches->now = n;
    if (n > 0) matches->seen = true;
  };
  absl::StatusOr<std::unique_ptr<mesh::Publisher>> pub = (*node)->Advertise(absl::GetFlag(FLAGS_topic), options);
  if (!pub.ok()) return Fail("advertise", pub.status());
  if (absl::Status s = (*node)->Start(); !s.ok()) return Fail("start", s);
  std::printf("publisher: %s on %s\n", (*pub)->topic().c_str(), (*node)->grpc_address().c_str());

  // Nobody may be listening yet: Publish then reaches no one and returns OK,
  // and the history keeps the reading for whoever subscribes later.
  for (int i = 1; i <= absl::GetFlag(FLAGS_count); ++i) {
    const std::string reading = absl::StrFormat("reading #%d: %.1f C", i, 20.0 + 0.5 * i);
    absl::StatusOr<mesh::PublishResult> sent = (*pub)->Publish(reading, absl::Now() + absl::Seconds(1));
    if (!sent.ok()) return Fail("publish", sent.status());
    std::printf("publisher: published \"%s\" (%zu subscribers now)\n", reading.c_str(), sent->delivered);
    std::fflush(stdout);
    absl::SleepFor(absl::Milliseconds(absl::GetFlag(FLAGS_interval_ms)));
  }

  // Wait for a subscriber to come, and then to leave (its node stops: the
  // link goes down and it no longer matches).
  {
    absl::MutexLock lock(&matches->mu);
    auto came_and_went = [&matches]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(matches->mu) {
      return matches->seen && matches->now == 0;
    };
    if (!matches->mu.AwaitWithTimeout(absl::Condition(&came_and_went),
                                      absl::Milliseconds(absl::GetFlag(FLAGS_wait_ms)))) {
      return Fail("waiting for a subscriber to come and go",
                  absl::DeadlineExceededError(matches->seen ? "it is still there" : "none came"));
    }
  }
  std::printf("publisher: the subscriber came and went; %d readings published\n", absl::GetFlag(FLAGS_count));
  pub->reset();
  (*node)->Stop();
  return 0;
}
