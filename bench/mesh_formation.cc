#include "bench/mesh_formation.h"

#include <algorithm>
#include <cstdio>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness.h"

namespace shmesh_bench {
namespace {

int64_t ParseTime(const std::string& line) {
  std::vector<std::string> parts = absl::StrSplit(line, ' ');
  int64_t t = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[1], &t)) Die(absl::StrCat("bad line: ", line));
  return t;
}

struct Formation {
  double from_last_start_ms = 0;  // last node's Start() -> every node linked to all
  double handshake_ms = 0;        // earliest handshake start -> last link up (pairs)
};

// Starts `n` member processes (member 0 first, the rest at once, all
// seeded with member 0) and waits until each has n-1 links. Member i is
// named n<i>, or with `seed_last` n<n-1-i>: the seed's name then sorts
// last, so the others dial it (the name that sorts first dials).
Formation FormMesh(const std::string& dir, int n, bool seed_last, std::vector<Child>& members) {
  auto name = [&](int i) { return absl::StrFormat("n%02d", seed_last ? n - 1 - i : i); };
  const std::string seed = "unix:" + dir + "/" + name(0) + ".grpc";
  auto args = [&](int i) {
    return std::vector<std::string>{"--role=mesh_member", "--run_dir=" + dir, "--name=" + name(i),
                                    i == 0 ? "--seed=" : "--seed=" + seed,
                                    absl::StrCat("--expect_peers=", n - 1)};
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  members.push_back(Child::Spawn(args(0)));
  int64_t last_start = ParseTime(members[0].WaitFor("STARTING", deadline, "member 0"));
  members[0].WaitFor("STARTED", deadline, "member 0");
  for (int i = 1; i < n; ++i) members.push_back(Child::Spawn(args(i)));
  int64_t last_linked = 0;
  int64_t first_handshake = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < n; ++i) {
    if (i > 0) last_start = std::max(last_start, ParseTime(members[i].WaitFor("STARTING", deadline, "member")));
    for (;;) {
      std::optional<std::string> line = members[i].ReadLine(deadline);
      if (!line.has_value()) Die("a mesh member ended or timed out before it linked");
      long long t = 0, handshake = 0;
      if (std::sscanf(line->c_str(), "PEER %lld %lld", &t, &handshake) == 2) {
        first_handshake = std::min<int64_t>(first_handshake, t - handshake);
        continue;
      }
      if (absl::StartsWith(*line, "LINKED")) {
        last_linked = std::max(last_linked, ParseTime(*line));
        break;
      }
    }
  }
  Formation f;
  f.from_last_start_ms = static_cast<double>(last_linked - last_start) / 1e6;
  f.handshake_ms = static_cast<double>(last_linked - first_handshake) / 1e6;
  return f;
}

void StopMembers(std::vector<Child>& members) {
  for (Child& m : members) m.CloseStdin();
  for (Child& m : members) m.Finish(absl::Seconds(10));
  members.clear();
}

}  // namespace

void RunSetup(Results& results, const FormationPlan& plan, const std::string& tmp) {
  Progress("mesh_link_setup_pair");
  for (int rep = 0; rep < plan.setup_reps; ++rep) {
    const std::string dir = MakeDir(tmp, absl::StrCat("p", rep));
    std::vector<Child> members;
    // The joining node's name sorts first, so it dials the seed once its
    // Join returned: the handshake does not overlap the discovery call.
    const Formation f = FormMesh(dir, 2, /*seed_last=*/true, members);
    results.AddValue("mesh_link_setup_pair", 0, "setup_ms", f.handshake_ms);
    results.AddValue("mesh_pair_join", 0, "setup_ms", f.from_last_start_ms);
    StopMembers(members);
  }
}

void RunMesh16(Results& results, const FormationPlan& plan, const std::string& tmp, std::string& idle_note) {
  const std::string name = absl::StrCat("mesh", plan.nodes);
  for (int rep = 0; rep < plan.mesh16_reps; ++rep) {
    Progress(absl::StrCat(name, "_formation ", rep + 1, "/", plan.mesh16_reps));
    const std::string dir = MakeDir(tmp, absl::StrCat("f", rep));
    std::vector<Child> members;
    results.AddValue(name + "_formation", 0, "setup_ms", FormMesh(dir, plan.nodes, /*seed_last=*/false, members).from_last_start_ms);
    if (rep + 1 == plan.mesh16_reps) {
      Progress(absl::StrCat(name, "_idle: ", plan.idle_s, " s"));
      absl::SleepFor(absl::Seconds(1));  // let the last handlers and logs settle
      auto total_ticks = [&] {
        int64_t sum = 0;
        for (const Child& m : members) {
          const int64_t t = ProcessCpuTicks(m.pid());
          if (t < 0) Die("a mesh member died while idle");
          sum += t;
        }
        return sum;
      };
      auto by_thread = [&] {
        std::map<std::string, int64_t> sum;
        for (const Child& m : members) {
          for (const auto& [thread, ns] : ThreadCpuNsByName(m.pid())) sum[thread] += ns;
        }
        return sum;
      };
      const std::map<std::string, int64_t> threads_before = by_thread();
      const int64_t before = total_ticks();
      const int64_t t0 = NowNs();
      absl::SleepFor(absl::Seconds(plan.idle_s));
      const int64_t after = total_ticks();
      const double seconds = static_cast<double>(NowNs() - t0) / 1e9;
      const std::map<std::string, int64_t> threads_after = by_thread();
      const double cpu_seconds = static_cast<double>(after - before) / ClockTicksPerSecond();
      results.AddValue(name + "_idle", 0, "cpu_percent", 100.0 * cpu_seconds / seconds);
      // The exact figure and who spends it, for the notes under the table.
      double total_ms = 0;
      std::vector<std::string> parts;
      for (const auto& [thread, ns] : threads_after) {
        auto it = threads_before.find(thread);
        const double ms = static_cast<double>(ns - (it == threads_before.end() ? 0 : it->second)) / 1e6;
        total_ms += ms;
        if (ms >= 0.05) parts.push_back(absl::StrFormat("%s %.1f ms", thread, ms));
      }
      idle_note = absl::StrFormat(
          "%s_idle from /proc/<pid>/task/*/schedstat (exact): %.2f%% of one core; by thread name, over %.0f s: "
          "%s (shmesh_bench = the nodes' own threads: main, control, link, receive).",
          name, 100.0 * total_ms / 1e3 / seconds, seconds, absl::StrJoin(parts, ", "));
      // The shared memory the idle mesh keeps resident (rings, and pool
      // segments if any): each memfd once.
      std::vector<pid_t> pids;
      for (const Child& m : members) pids.push_back(m.pid());
      const MemfdResident shm = MemfdResidentOf(pids);
      const double mib = static_cast<double>(shm.rss_bytes) / (1 << 20);
      results.AddValue(name + "_idle", 0, "shm_resident_mib", mib);
      absl::StrAppend(&idle_note, "\n",
                      absl::StrFormat("%s_idle shared memory resident: %.1f MiB (Rss of the memfd mappings of the %d "
                                      "processes from /proc/<pid>/smaps, each of the %d memfds counted once, by "
                                      "inode; %d mappings; their Pss sums to %.1f MiB).",
                                      name, mib, plan.nodes, shm.memfds, shm.mappings,
                                      static_cast<double>(shm.pss_bytes) / (1 << 20)));
    }
    StopMembers(members);
  }
}

}  // namespace shmesh_bench
