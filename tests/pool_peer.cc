// pool_peer: one mesh::Node in its own process for tests/pool_integration_test.
// It joins the test's node "t" and answers every message it receives (the
// pull forms, so pooled messages are held zero-copy as mesh::Message) with
// a small ring message to the sender: "sum <len> <hash>" for messages,
// "tsum <len> <hash>" for publications, hashing the bytes where they lie.
//
//   pool_peer --name=p --run_dir=DIR --seed=t
//
// Commands on stdin, one per line:
//   hold              keep every message received from now on (the pool
//                     blocks they sit in stay held by this node)
//   release           drop the kept messages
//   send SIZE COUNT   send COUNT loans of SIZE bytes to "t", byte i of
//                     loan k being (i * 31 + k) & 0xff; prints "sent"
//   sub TOPIC         subscribe to TOPIC (pull form); prints "subscribed"
// Prints "ready" once linked to "t". Exits at EOF on stdin.
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "mesh/node.h"
#include "tests/pool_hash.h"

ABSL_FLAG(std::string, name, "p", "this node's name");
ABSL_FLAG(std::string, run_dir, "", "the test's run directory");
ABSL_FLAG(std::string, seed, "t", "the node to join (its gRPC socket in run_dir)");

namespace {

void Say(const std::string& line) {
  std::cout << line << std::endl;  // flushes: the test reads the file
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  mesh::v1::NodeConfig c;
  c.set_name(absl::GetFlag(FLAGS_name));
  c.set_run_dir(absl::GetFlag(FLAGS_run_dir));
  c.add_seeds(absl::StrCat("unix:", c.run_dir(), "/", absl::GetFlag(FLAGS_seed), ".grpc"));
  c.set_ring_capacity_bytes(1 << 16);
  c.set_log_level(mesh::v1::WARNING);
  auto node = mesh::Node::Create(c);
  if (!node.ok() || !(*node)->Start().ok() || !(*node)->WaitForPeers(1, absl::Now() + absl::Seconds(20)).ok()) {
    Say("failed to start or link");
    return 1;
  }
  mesh::Node* n = node->get();
  absl::Mutex mu;
  bool holding = false;
  std::vector<mesh::Message> kept;
  std::vector<std::unique_ptr<mesh::Subscription>> subs;
  std::vector<std::thread> threads;
  bool done = false;

  auto answer = [&](mesh::Message m, const char* what) {
    const std::string reply = absl::StrCat(what, " ", m.data().size(), " ", pool_test::Hash(m.data()));
    (void)n->Send(m.from, reply, absl::Now() + absl::Seconds(10));
    absl::MutexLock lock(&mu);
    if (holding) kept.push_back(std::move(m));
  };
  auto stopped = [&] {
    absl::MutexLock lock(&mu);
    return done;
  };
  threads.emplace_back([&] {
    while (!stopped()) {
      absl::StatusOr<mesh::Message> m = n->Receive(absl::Now() + absl::Milliseconds(50));
      if (m.ok()) answer(std::move(*m), "sum");
    }
  });
  Say("ready");
  std::string line;
  while (std::getline(std::cin, line)) {
    std::vector<std::string> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty()) continue;
    if (words[0] == "hold") {
      absl::MutexLock lock(&mu);
      holding = true;
      Say("holding");
    } else if (words[0] == "release") {
      std::vector<mesh::Message> drop;
      {
        absl::MutexLock lock(&mu);
        holding = false;
        drop.swap(kept);
      }
      drop.clear();
      Say("released");
    } else if (words[0] == "send" && words.size() == 3) {
      uint64_t size = 0, count = 0;
      if (!absl::SimpleAtoi(words[1], &size) || !absl::SimpleAtoi(words[2], &count)) continue;
      for (uint64_t k = 0; k < count; ++k) {
        absl::StatusOr<mesh::Loan> loan = n->Loan(size);
        if (!loan.ok()) {
          Say(absl::StrCat("loan failed: ", loan.status().ToString()));
          break;
        }
        pool_test::Fill(loan->data(), loan->size(), k);
        absl::Status s = n->Send("t", std::move(*loan), absl::Now() + absl::Seconds(10));
        if (!s.ok()) Say(absl::StrCat("send failed: ", s.ToString()));
      }
      Say("sent");
    } else if (words[0] == "sub" && words.size() == 2) {
      auto sub = n->Subscribe(words[1]);
      if (!sub.ok()) {
        Say(absl::StrCat("subscribe failed: ", sub.status().ToString()));
        continue;
      }
      mesh::Subscription* raw = sub->get();
      subs.push_back(std::move(*sub));
      threads.emplace_back([&, raw] {
        while (!stopped()) {
          absl::StatusOr<mesh::Message> m = raw->Receive(absl::Now() + absl::Milliseconds(50));
          if (m.ok()) answer(std::move(*m), "tsum");
        }
      });
      Say("subscribed");
    }
  }
  {
    absl::MutexLock lock(&mu);
    done = true;
  }
  for (std::thread& t : threads) t.join();
  kept.clear();
  subs.clear();
  n->Stop();
  return 0;
}
