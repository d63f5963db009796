// publisher.cc: the smallest shmesh program, built against an installed
// shmesh (not inside this workspace). It joins a mesh through a seed,
// waits for a subscriber of its topic, publishes a few messages and leaves.
// Its twins in C (publisher.c) and Python (publisher.py) do the same.
//
//   g++ -std=c++17 publisher.cc -o publisher $(pkg-config --cflags --libs shmesh)
//   (or with CMake: see CMakeLists.txt here)
//
//   meshd --config a.textproto --subscribe='hello/**' &    # prints what comes
//   ./publisher /tmp/shmesh-demo unix:/tmp/shmesh-demo/a.grpc hello/cxx 3
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "mesh/node.h"

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s RUN_DIR SEED TOPIC COUNT\n", argv[0]);
    return 2;
  }
  mesh::v1::NodeConfig config;
  config.set_name("cxx-publisher");
  config.set_run_dir(argv[1]);
  config.add_seeds(argv[2]);
  absl::StatusOr<std::unique_ptr<mesh::Node>> node = mesh::Node::Create(config);
  if (!node.ok()) {
    std::fprintf(stderr, "publisher: %s\n", node.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<mesh::Publisher>> pub = (*node)->Advertise(argv[3]);
  absl::Status s = pub.ok() ? (*node)->Start() : pub.status();
  if (s.ok()) s = (*pub)->WaitForSubscribers(1, absl::Now() + absl::Seconds(20));
  for (int i = 1; s.ok() && i <= std::atoi(argv[4]); ++i) {
    s = (*pub)->Publish("hello " + std::to_string(i) + " from C++", absl::Now() + absl::Seconds(5)).status();
  }
  if (!s.ok()) {
    std::fprintf(stderr, "publisher: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("publisher: published %s messages on %s\n", argv[4], argv[3]);
  pub->reset();
  (*node)->Stop();
  return 0;
}
