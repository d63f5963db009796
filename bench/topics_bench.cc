#include "bench/topics_bench.h"

#include <sys/stat.h>

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness.h"

namespace shmesh_bench {
namespace {

constexpr absl::Duration kStartTimeout = absl::Seconds(60);
constexpr absl::Duration kCommandTimeout = absl::Minutes(3);

std::string NewDir(const std::string& parent, const std::string& name) {
  const std::string dir = parent + "/" + name;
  if (::mkdir(dir.c_str(), 0700) != 0) Die(absl::StrCat("mkdir ", dir, " failed"));
  return dir;
}

void Progress(const std::string& what) { std::fprintf(stderr, "shmesh_bench: %s\n", what.c_str()); }

}  // namespace

std::vector<std::string> RunTopicFanout(const TopicsPlan& plan, const std::string& tmp) {
  std::vector<std::string> rows;
  for (int n : plan.subscribers) {
    Progress(absl::StrCat("topic_fanout_", n));
    const std::string dir = NewDir(tmp, absl::StrCat("fan", n));
    const std::string seed = "unix:" + dir + "/p.grpc";
    // Nothing pinned: 1 + n processes share the CPUs, as they would.
    Child pub = Child::Spawn({"--role=fanout_pub", "--run_dir=" + dir, absl::StrCat("--name=topic_fanout_", n),
                              "--policy=adaptive", absl::StrCat("--expect_peers=", n),
                              absl::StrCat("--duration_ms=", plan.duration_ms), absl::StrCat("--batch=", plan.batch),
                              absl::StrCat("--ring_bytes=", plan.ring_bytes)});
    const absl::Time deadline = absl::Now() + kStartTimeout;
    pub.WaitFor("STARTED", deadline, "fan-out publisher");
    std::vector<Child> subs;
    for (int i = 0; i < n; ++i) {
      subs.push_back(Child::Spawn({"--role=fanout_sub", "--run_dir=" + dir, absl::StrCat("--name=f", i),
                                   "--seed=" + seed, "--policy=adaptive",
                                   absl::StrCat("--ring_bytes=", plan.ring_bytes)}));
    }
    for (Child& s : subs) s.WaitFor("READY", deadline, "fan-out subscriber");
    pub.WaitFor("READY", deadline, "fan-out publisher");
    for (int rep = 0; rep < plan.reps; ++rep) {
      for (uint64_t size : plan.sizes) {
        pub.WriteLine(absl::StrCat("thru ", size, " 0"));
        pub.WaitFor("OK", absl::Now() + kCommandTimeout, "fan-out", &rows);
      }
    }
    pub.CloseStdin();
    pub.Finish(absl::Seconds(10));
    for (Child& s : subs) s.CloseStdin();
    for (Child& s : subs) s.Finish(absl::Seconds(10));
  }
  return rows;
}

std::vector<std::string> RunTopicFirstMessage(const TopicsPlan& plan, const std::string& tmp) {
  Progress("topic_sub_first_msg");
  std::vector<std::string> rows;
  const std::string dir = NewDir(tmp, "first");
  Child pub = Child::Spawn({"--role=first_pub", "--cpu=1", "--run_dir=" + dir, "--policy=adaptive"});
  const absl::Time deadline = absl::Now() + kStartTimeout;
  pub.WaitFor("READY", deadline, "first-message publisher");
  Child sub = Child::Spawn({"--role=first_sub", "--cpu=0", "--run_dir=" + dir, "--seed=unix:" + dir + "/p.grpc",
                            "--policy=adaptive", "--name=topic_sub_first_msg"});
  sub.WaitFor("READY", deadline, "first-message subscriber");
  for (int rep = 0; rep < plan.reps; ++rep) {
    sub.WriteLine("ping");
    sub.WaitFor("OK", absl::Now() + kCommandTimeout, "first message", &rows);
  }
  sub.Finish(absl::Seconds(10));
  pub.Finish(absl::Seconds(10));
  return rows;
}

}  // namespace shmesh_bench
