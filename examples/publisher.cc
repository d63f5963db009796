// publisher: the smallest useful shmesh program. It joins a mesh as a node
// (from a config file), waits for its peers, sends each of them a few
// numbered messages through the shared-memory rings, prints every reply it
// gets, and leaves.
//
//   bazel build //examples:publisher
//   bazel-bin/examples/publisher --config examples/publisher.textproto
//
// (`bazel run` runs the program in another directory, so give it an
// absolute path: `bazel run //examples:publisher -- --config
// $PWD/examples/publisher.textproto`.)
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mesh/node.h"

ABSL_FLAG(std::string, config, "", "Node config file (text format, or JSON if it ends in .json). Required.");
ABSL_FLAG(int, peers, 1, "Wait until this many peers are linked before publishing.");
ABSL_FLAG(int, count, 3, "Messages to send to each peer.");
ABSL_FLAG(int, wait_ms, 10000, "How long to wait for the peers, in milliseconds.");
ABSL_FLAG(int, linger_ms, 200, "How long to keep receiving replies after publishing, in milliseconds.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Joins a shmesh mesh from a config file and sends numbered messages to every peer.\n"
      "usage: publisher --config FILE [--peers N] [--count K] [--wait_ms MS] [--linger_ms MS]");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_config).empty()) {
    std::fprintf(stderr, "publisher: --config is required (see --help)\n");
    return 2;
  }
  auto node = mesh::Node::CreateFromFile(absl::GetFlag(FLAGS_config));
  if (!node.ok()) {
    std::fprintf(stderr, "publisher: %s\n", std::string(node.status().message()).c_str());
    return 2;
  }
  (void)(*node)->SetMessageHandler([](const mesh::MessageView& m) {
    std::printf("publisher got from %.*s: %.*s\n", static_cast<int>(m.from.size()), m.from.data(),
                static_cast<int>(m.payload.size()), m.payload.data());
    std::fflush(stdout);
  });
  if (absl::Status s = (*node)->Start(); !s.ok()) {
    std::fprintf(stderr, "publisher: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  absl::Status ready = (*node)->WaitForPeers(absl::GetFlag(FLAGS_peers),
                                             absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_wait_ms)));
  if (!ready.ok()) {
    std::fprintf(stderr, "publisher: %s\n", std::string(ready.message()).c_str());
    return 1;
  }
  int sent = 0;
  for (const std::string& peer : (*node)->Peers()) {
    for (int i = 1; i <= absl::GetFlag(FLAGS_count); ++i) {
      std::string text = absl::StrCat("hello #", i, " from ", (*node)->name(), " to ", peer);
      // Wait up to a second if the peer's ring is full.
      absl::Status s = (*node)->Send(peer, text, absl::Now() + absl::Seconds(1));
      if (!s.ok()) {
        std::fprintf(stderr, "publisher: send to %s failed: %s\n", peer.c_str(), std::string(s.message()).c_str());
        return 1;
      }
      ++sent;
    }
  }
  std::printf("publisher sent %d messages to %zu peers\n", sent, (*node)->Peers().size());
  std::fflush(stdout);
  absl::SleepFor(absl::Milliseconds(absl::GetFlag(FLAGS_linger_ms)));
  (*node)->Stop();
  return 0;
}
