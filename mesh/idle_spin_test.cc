// An ADAPTIVE receive thread spinning after traffic gives its CPU to other
// runnable threads (IdleWait's yielding phase): the whole test process,
// nodes included, runs on one CPU, and a CPU-bound thread there gets about
// as much CPU while a node's receive thread spins as while it sleeps. A
// receive thread that only paused would take half of it.
#include <sched.h>
#include <time.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mesh/node.h"
#include "mesh/test_util.h"
#include "testing/temp_dir.h"

namespace mesh {
namespace {

constexpr uint32_t kSpinUs = 300'000;
constexpr absl::Duration kWindow = absl::Milliseconds(120);

int64_t ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Runs a CPU-bound thread (on this thread's CPUs) for kWindow; returns the
// share of that wall time it got the CPU.
double BusyShare() {
  double share = 0;
  std::thread busy([&share] {
    const absl::Time start = absl::Now();
    const int64_t cpu0 = ThreadCpuNs();
    volatile uint64_t sink = 0;
    while (absl::Now() - start < kWindow) {
      for (int i = 0; i < 1000; ++i) sink = sink + i;
    }
    share = static_cast<double>(ThreadCpuNs() - cpu0) / absl::ToDoubleNanoseconds(absl::Now() - start);
  });
  busy.join();
  return share;
}

TEST(IdleSpinTest, AdaptiveSpinGivesTheCpuToARunnableThread) {
  // This thread, and every thread started from now on (the nodes' receive
  // and gRPC threads, the busy thread), on one CPU.
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  int cpu = 0;
  while (cpu < CPU_SETSIZE && !CPU_ISSET(cpu, &allowed)) ++cpu;
  ASSERT_LT(cpu, CPU_SETSIZE);
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);

  shmesh::testing::ShortTempDir dir("isp-");
  ASSERT_TRUE(dir.ok());
  std::vector<std::unique_ptr<Node>> nodes;
  for (const char* name : {"a", "b"}) {
    mesh::v1::NodeConfig c = testing_util::TestConfig(dir.path(), name, nodes.empty() ? std::vector<std::string>{}
                                                                                        : std::vector<std::string>{"a"});
    c.mutable_wait()->set_mode(mesh::v1::WaitPolicy::ADAPTIVE);
    c.mutable_wait()->set_spin_us(kSpinUs);
    auto node = Node::Create(c);
    ASSERT_TRUE(node.ok()) << node.status();
    nodes.push_back(std::move(*node));
  }
  for (auto& n : nodes) ASSERT_TRUE(n->Start().ok());
  for (auto& n : nodes) ASSERT_TRUE(n->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());

  // A pause-spinning receive thread halves the busy thread's share; a
  // yielding one leaves it about whole. The best of five tries, so that a
  // burst of other load on this CPU during one window does not decide.
  std::vector<std::string> tries;
  double best = 0;
  for (int attempt = 0; attempt < 5 && best < 0.75; ++attempt) {
    ASSERT_TRUE(nodes[1]->Send("a", "wake").ok());
    auto got = nodes[0]->Receive(absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(got.ok()) << got.status();
    const absl::Time received = absl::Now();
    // a's receive thread spins for kSpinUs from here.
    const double spinning = BusyShare();
    ASSERT_LT(absl::Now() - received, absl::Microseconds(kSpinUs)) << "the window outlasted the spin";
    // Then it sleeps.
    absl::SleepFor(received + absl::Microseconds(kSpinUs) + absl::Milliseconds(50) - absl::Now());
    const double sleeping = BusyShare();
    const double ratio = sleeping > 0 ? spinning / sleeping : 0;
    tries.push_back(absl::StrCat("spinning ", spinning, " / sleeping ", sleeping, " = ", ratio));
    best = std::max(best, ratio);
  }
  std::printf("busy thread's CPU share: %s\n", absl::StrJoin(tries, "; ").c_str());
  EXPECT_GE(best, 0.75) << "the busy thread's CPU share while a's receive thread spun, over its share while it "
                          "slept: "
                       << absl::StrJoin(tries, "; ");
  for (auto it = nodes.rbegin(); it != nodes.rend(); ++it) (*it)->Stop();
}

}  // namespace
}  // namespace mesh
