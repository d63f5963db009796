// soak: a long chaos run of a real mesh. It starts --nodes mesh_worker
// processes (tests/mesh_worker.cc) that stream numbered, checksummed
// messages to every peer, then for --seconds picks random events: kill -9 a
// node and restart it (same name) after a short random delay; SIGSTOP a node
// for 0.1-3 s, then SIGCONT; graceful restart (SIGTERM, wait for a clean exit,
// relaunch). At least --min_live nodes always run.
//
// What it checks (any failure ends the run with `soak: FAIL <reason>`):
//   * no worker exits on its own (a crash, an ASan/LSan report): the tail of
//     its stderr is printed; a graceful stop exits 0 with its sockets removed;
//   * no worker ever reports a bad message (BAD line, errors= > 0): the
//     workers check sequence numbers and checksums of every message, so
//     loss, duplication, reordering and corruption all count;
//   * every checkpoint (every --check_s, and at the end) resumes and restarts
//     everything, waits until the mesh is whole again (every node has every
//     other node's current incarnation up, every earlier one reported down,
//     and traffic from each), checks every node's RESULT counters, then
//     counts each worker's descriptors (/proc/<pid>/fd), mappings
//     (/proc/<pid>/maps lines) and shared mappings (its rings). In a whole
//     mesh every node holds the same links, so these counts must stay within
//     --fd_slack / --map_slack / --shared_map_slack of the warm-up
//     checkpoint's maximum: a leak of one descriptor or ring mapping per peer
//     event grows past that. Between checkpoints any count above
//     --bound_factor times the warm-up maximum fails at once;
//   * no zombie child of the driver or of a worker stays unreaped;
//   * at the end: stop every stream, then for every ordered pair of the
//     final incarnations, received == sent (messages and bytes), no errors;
//     then SIGTERM everything: each exits 0, and the run directory is empty.
//
// Output: the seed (replay a run with --seed), a progress line per
// checkpoint, and one final verdict line. Exit status 0 on PASS, 1 on FAIL,
// 2 on bad flags. Worker stderr and stdout logs stay in --run_dir on FAIL.
//
// Thread contract: everything runs on the main thread (it forks every
// worker, so PR_SET_PDEATHSIG ties the workers' lives to it); each Worker's
// reader thread only collects that worker's stdout lines.
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/worker_process.h"

ABSL_FLAG(int32_t, seconds, 300, "How long to run events (the checks before and after come on top).");
ABSL_FLAG(int32_t, nodes, 8, "Mesh nodes (worker processes), 2 to 26.");
ABSL_FLAG(uint64_t, seed, 0, "Random seed; 0 picks one. The seed is printed so a run can be replayed.");
ABSL_FLAG(std::string, worker, "", "Path of mesh_worker (default: the one in this binary's runfiles).");
ABSL_FLAG(std::string, run_dir, "",
          "Working directory: node sockets in <run_dir>/m, worker logs in <run_dir>/logs (default: a fresh "
          "/tmp/soak-XXXXXX, removed on PASS). Socket paths must fit in 107 bytes.");
ABSL_FLAG(bool, naive_seeds, false,
          "Start all nodes at once and give every node its seeds in name order: exercises join races (a "
          "mesh that split at join and never merged, before seeds were re-asked; see README.md). By default "
          "n0 starts first, and a node's seeds are the longest-running nodes first.");
ABSL_FLAG(bool, keep, false, "Keep the run directory and logs on PASS too.");
ABSL_FLAG(int32_t, event_ms, 2000, "Mean time between events (each gap is uniform in 0.5x-1.5x of it).");
ABSL_FLAG(int32_t, restart_ms, 1500, "A killed node restarts after a uniform 0..restart_ms delay.");
ABSL_FLAG(int32_t, pause_min_ms, 100, "Shortest SIGSTOP.");
ABSL_FLAG(int32_t, pause_max_ms, 3000, "Longest SIGSTOP.");
ABSL_FLAG(int32_t, min_live, 0,
          "Never take a node down or stop it if fewer would run (0: half the nodes, at least 2).");
ABSL_FLAG(int32_t, spare, 0,
          "Nodes n0..n<spare-1> are only ever paused, never killed or restarted, so they see every event (the "
          "leak check's own test uses one).");
ABSL_FLAG(int32_t, check_s, 30, "Seconds between checkpoints (whole-mesh checks and a progress line).");
ABSL_FLAG(int32_t, settle_s, 60, "How long a checkpoint waits for the mesh to become whole again.");
ABSL_FLAG(int32_t, exit_timeout_s, 30, "How long a worker may take to exit after SIGTERM.");
ABSL_FLAG(int32_t, fd_slack, 8,
          "Descriptors a node may hold at a checkpoint beyond the warm-up maximum (and its own first checkpoint).");
ABSL_FLAG(int32_t, map_slack, 48,
          "Mappings a node may hold at a checkpoint beyond the warm-up maximum (and its own first checkpoint).");
ABSL_FLAG(int32_t, shared_map_slack, 4,
          "Shared mappings (rings) a node may hold at a checkpoint beyond the warm-up maximum (and its own first).");
ABSL_FLAG(double, bound_factor, 2.0, "Between checkpoints, fail at once above this times the warm-up maximum.");
ABSL_FLAG(int32_t, interval_us, 20000, "Workers: pause between send rounds.");
ABSL_FLAG(int32_t, batch, 4, "Workers: messages to each peer per round.");
ABSL_FLAG(int32_t, payload_bytes, 64, "Workers: payload bytes per message.");
ABSL_FLAG(int32_t, pooled_every, 64,
          "Workers: every Nth message is 200000 bytes, so it goes through the sender's shared-memory pool "
          "(a loan-sized block and a reference in the ring); 0: none.");
ABSL_FLAG(std::vector<std::string>, worker_args, {},
          "Extra mesh_worker flags, comma-separated (e.g. --leak_on_peer_down=fd for the leak check's test).");
ABSL_FLAG(bool, verbose, false, "Echo every worker line and print every event.");

namespace {

using meshtest::CountFds;
using meshtest::CountMap;
using meshtest::Counts;
using meshtest::Fields;
using meshtest::Parse;
using meshtest::ParseCounts;
using meshtest::PeerKey;
using meshtest::StartsWith;
using meshtest::Worker;

std::string Hex(uint64_t v) { return absl::StrFormat("%016x", v); }

// Set by SIGINT/SIGTERM: the run ends as a FAIL, cleaning up as usual.
volatile sig_atomic_t g_interrupted = 0;
extern "C" void OnInterrupt(int) { g_interrupted = 1; }

// What a process holds. Shared mappings are the ones a leak of the mesh's
// own would show first: its rings are shared memfd mappings, a handful per
// link, while the other mappings (libraries, heap, thread stacks, ASan's
// allocator regions) move with thread pools and allocation patterns.
struct Usage {
  int fds = -1;          // entries of /proc/<pid>/fd
  int maps = -1;         // lines of /proc/<pid>/maps
  int shared_maps = -1;  // those of them mapped shared (`s` in the permissions)
  bool ok() const { return fds >= 0 && maps >= 0; }
};

// The fields of Usage, and their names.
struct Metric {
  int Usage::*field;
  const char* what;
};
constexpr Metric kMetrics[] = {
    {&Usage::fds, "descriptors"},
    {&Usage::maps, "mappings"},
    {&Usage::shared_maps, "shared mappings"},
};

// The counts of `pid`; !ok() if the process is gone.
Usage Measure(pid_t pid) {
  Usage u;
  std::ifstream in(absl::StrCat("/proc/", pid, "/maps"));
  if (!in) return u;
  u.maps = u.shared_maps = 0;
  std::string line;
  // start-end perms offset dev inode [path]; perms are rwxp or rwxs.
  while (std::getline(in, line)) {
    ++u.maps;
    size_t sp = line.find(' ');
    if (sp != std::string::npos && sp + 4 < line.size() && line[sp + 4] == 's') ++u.shared_maps;
  }
  u.fds = CountFds(pid);
  if (u.fds < 0) u.maps = -1;
  return u;
}

// The field-wise maximum.
void Max(Usage& into, const Usage& u) {
  for (const auto& m : kMetrics) into.*m.field = std::max(into.*m.field, u.*m.field);
}

// Zombies among the children of `parents` (pid -> its ppid is in the set).
std::vector<pid_t> Zombies(const std::set<pid_t>& parents) {
  std::vector<pid_t> out;
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc", ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    pid_t pid;
    if (!absl::SimpleAtoi(it->path().filename().string(), &pid)) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string stat;
    if (!std::getline(in, stat)) continue;
    // pid (comm) state ppid ...; comm may hold spaces and parentheses.
    size_t close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::vector<std::string> f = absl::StrSplit(stat.substr(close + 1), ' ', absl::SkipEmpty());
    pid_t ppid;
    if (f.size() < 2 || !absl::SimpleAtoi(f[1], &ppid)) continue;
    if (f[0] == "Z" && parents.count(ppid)) out.push_back(pid);
  }
  return out;
}

std::string DescribeStatus(int status) {
  if (status == -1) return "status unknown (not our child)";
  if (WIFEXITED(status)) return absl::StrCat("exit status ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("wait status ", status);
}

// The last `n` lines of a file.
std::vector<std::string> Tail(const std::string& path, size_t n) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (lines.size() > n) lines.erase(lines.begin());
  }
  return lines;
}

// The first sanitizer report line of a file ("" if none).
std::string SanitizerReport(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StrContains(line, "ERROR: AddressSanitizer") || absl::StrContains(line, "ERROR: LeakSanitizer") ||
        absl::StrContains(line, "runtime error:") || absl::StrContains(line, "WARNING: ThreadSanitizer")) {
      return line;
    }
  }
  return "";
}

// What one worker incarnation said so far, from its stdout lines. Unknown
// lines are ignored (the protocol may grow).
struct Tracker {
  size_t parsed = 0;
  uint64_t id = 0;
  pid_t pid = 0;
  std::map<std::string, uint64_t> up;  // peer name -> node id of the incarnation up now
  std::set<PeerKey> first;             // incarnations that sent us something
  // Incarnations replaced by a new one of the same name (PEER_UP) before
  // their PEER_DOWN came; cleared when it comes.
  std::set<PeerKey> down_missing;
  int peer_downs = 0;
  std::string problem;  // the first BAD or ERROR line
};

enum class State {
  kDown,      // no process; launched at `at`
  kRunning,   // alive
  kPaused,    // SIGSTOPped; SIGCONT at `at`
  kKilled,    // SIGKILL sent, not reaped yet; relaunched at `at`
  kStopping,  // SIGTERM sent; must exit 0 before `at`
};

struct Slot {
  std::string name;
  int incarnations = 0;  // launches so far
  State state = State::kDown;
  absl::Time at = absl::InfinitePast();
  absl::Time launched;  // of this incarnation
  std::unique_ptr<Worker> w;
  Tracker t;
  std::string err_path;
  std::string out_path;
  // What this incarnation held at its first checkpoint (!ok(): none yet).
  Usage base;
  int base_downs = 0;
  CountMap last_rx;  // this incarnation's latest RESULT counters
  bool tails_printed = false;
};

class Soak {
 public:
  int Run();

 private:
  bool failed() const { return !failure_.empty(); }
  // Records the first failure; later ones are printed only.
  void Fail(const std::string& why);
  void Say(const std::string& line);

  std::string Target(const Slot& s) const { return absl::StrCat("unix:", mesh_dir_, "/", s.name, ".grpc"); }
  std::string Label(const Slot& s) const;
  void Launch(Slot& s);
  // Parses the new stdout lines of `s`.
  void Update(Slot& s);
  // After the worker of `s` was reaped: keeps its logs and counters, frees it.
  void Retire(Slot& s);
  // Prints the stderr tail and last stdout lines of `s` (once per incarnation).
  void PrintTails(Slot& s);
  void HandleExit(Slot& s, int status);
  // One pass of the main loop: exits, resumes, relaunches, samples, and an
  // event when `events` and one is due.
  void Tick(bool events);
  void Sample();
  void Event();
  int LiveCount() const;
  // Resumes and relaunches everything, then waits until the mesh is whole.
  bool Settle();
  // Why the mesh is not whole yet ("" if it is).
  std::string Missing();
  void Checkpoint();
  bool Report(Slot& s, CountMap* rx);
  void CheckCounts(const Slot& s, const CountMap& rx);
  void Finish();
  uint64_t Verified() const;
  absl::Duration Uniform(absl::Duration lo, absl::Duration hi);

  std::mt19937_64 rng_;
  std::string worker_;
  std::string run_dir_;
  bool made_run_dir_ = false;
  std::string mesh_dir_;
  std::string logs_dir_;
  std::vector<std::string> extra_args_;
  std::vector<Slot> slots_;
  int min_live_ = 0;
  int spare_ = 0;
  bool naive_seeds_ = false;
  bool verbose_ = false;
  std::string failure_;
  absl::Time start_;
  absl::Time next_event_;
  absl::Time next_sample_;
  // Counters for the verdict.
  int kills_ = 0, pauses_ = 0, restarts_ = 0, checkpoints_ = 0;
  int fewest_live_ = 0;  // fewest running nodes since the last progress line
  uint64_t retired_verified_ = 0;
  uint64_t lost_ = 0, errors_ = 0;
  // Descriptor and mapping counts: warm-up checkpoint maxima, overall maxima.
  Usage warm_, max_;
  int slack_[std::size(kMetrics)] = {};  // flags, by kMetrics index
};

void Soak::Fail(const std::string& why) {
  if (failure_.empty()) {
    failure_ = why;
  } else if (verbose_) {
    Say(absl::StrCat("also: ", why));
  }
}

void Soak::Say(const std::string& line) {
  std::printf("soak: %s\n", line.c_str());
  std::fflush(stdout);
}

absl::Duration Soak::Uniform(absl::Duration lo, absl::Duration hi) {
  std::uniform_int_distribution<int64_t> d(absl::ToInt64Microseconds(lo), absl::ToInt64Microseconds(hi));
  return absl::Microseconds(d(rng_));
}

std::string Soak::Label(const Slot& s) const {
  return absl::StrCat(s.name, " (incarnation ", s.incarnations, ", pid ", s.w ? s.w->pid() : s.t.pid, ")");
}

void Soak::Launch(Slot& s) {
  ++s.incarnations;
  // Every other node is a seed. A node joins through the first one that
  // answers and no other (Membership::JoinSeeds, mesh/membership/membership.cc), so two nodes starting
  // together that list each other first would join each other and never
  // the rest: list the longest-running nodes first, then stopped ones (a
  // Join to them times out), then the rest.
  std::vector<const Slot*> order;
  for (const Slot& o : slots_) {
    if (&o != &s) order.push_back(&o);
  }
  if (!naive_seeds_) {
    auto rank = [](const Slot* o) {
      if (o->state == State::kRunning && o->t.id != 0) return 0;
      if (o->state == State::kPaused) return 1;
      return 2;
    };
    std::stable_sort(order.begin(), order.end(), [&](const Slot* a, const Slot* b) {
      if (rank(a) != rank(b)) return rank(a) < rank(b);
      return rank(a) < 2 && a->launched < b->launched;
    });
  }
  std::vector<std::string> seeds;
  for (const Slot* o : order) seeds.push_back(Target(*o));
  std::vector<std::string> args = {
      "--name=" + s.name,
      "--run_dir=" + mesh_dir_,
      "--seeds=" + absl::StrJoin(seeds, ","),
      "--peers=0",
      "--count=0",
      absl::StrCat("--interval_us=", absl::GetFlag(FLAGS_interval_us)),
      absl::StrCat("--batch=", absl::GetFlag(FLAGS_batch)),
      absl::StrCat("--payload_bytes=", absl::GetFlag(FLAGS_payload_bytes)),
      absl::StrCat("--pooled_every=", absl::GetFlag(FLAGS_pooled_every)),
      "--log_level=warning",
  };
  args.insert(args.end(), extra_args_.begin(), extra_args_.end());
  const std::string base = absl::StrCat(logs_dir_, "/", s.name, ".", s.incarnations);
  s.err_path = base + ".err";
  s.out_path = base + ".out";
  Worker::Options options;
  options.echo_lines = verbose_;
  options.stderr_path = s.err_path;
  s.w = Worker::Launch(worker_, s.name, args, options);
  s.t = Tracker();
  s.base = Usage();
  s.base_downs = 0;
  s.last_rx.clear();
  s.tails_printed = false;
  if (s.w == nullptr) {
    Fail(absl::StrCat("cannot launch ", s.name));
    s.state = State::kDown;
    s.at = absl::InfiniteFuture();
    return;
  }
  s.t.pid = s.w->pid();
  s.launched = absl::Now();
  s.state = State::kRunning;
  if (verbose_) Say(absl::StrCat("launched ", Label(s)));
}

void Soak::Update(Slot& s) {
  if (s.w == nullptr) return;
  std::vector<std::string> lines = s.w->Lines(s.t.parsed);
  s.t.parsed += lines.size();
  for (const std::string& l : lines) {
    if (StartsWith(l, "STARTED ")) {
      s.t.id = Parse(l).Id();
    } else if (StartsWith(l, "PEER_UP ") || StartsWith(l, "PEER_DOWN ")) {
      Fields f = Parse(l);
      if (f.words.size() < 2) continue;
      const std::string& peer = f.words[1];
      const uint64_t id = f.Id();
      auto it = s.t.up.find(peer);
      if (f.words[0] == "PEER_UP") {
        if (it != s.t.up.end() && it->second != id) s.t.down_missing.insert({peer, it->second});
        s.t.up[peer] = id;
      } else {
        ++s.t.peer_downs;
        s.t.down_missing.erase({peer, id});
        if (it != s.t.up.end() && it->second == id) s.t.up.erase(it);
      }
    } else if (StartsWith(l, "FIRST ")) {
      Fields f = Parse(l);
      if (f.words.size() >= 2) s.t.first.insert({f.words[1], f.Id()});
    } else if (StartsWith(l, "BAD ") || StartsWith(l, "ERROR ")) {
      if (s.t.problem.empty()) {
        s.t.problem = l;
        Fail(absl::StrCat(Label(s), " printed: ", l));
      }
    }
  }
}

void Soak::Retire(Slot& s) {
  Update(s);
  s.last_rx = ParseCounts(s.w->Lines(), "RESULT ");
  for (const auto& [from, c] : s.last_rx) {
    retired_verified_ += c.n;
    errors_ += c.failed_or_errors;
  }
  {
    std::ofstream out(s.out_path);
    out << s.w->Dump() << "\n";
  }
  std::string report = SanitizerReport(s.err_path);
  if (!report.empty()) {
    PrintTails(s);
    Fail(absl::StrCat(Label(s), ": ", report));
  }
  s.t.pid = s.w->pid();
  s.w.reset();
}

void Soak::PrintTails(Slot& s) {
  if (s.tails_printed) return;
  s.tails_printed = true;
  std::printf("soak: --- %s: last stderr lines (%s) ---\n", Label(s).c_str(), s.err_path.c_str());
  for (const std::string& l : Tail(s.err_path, 40)) std::printf("  %s\n", l.c_str());
  if (s.w != nullptr) {
    std::vector<std::string> out = s.w->Lines();
    size_t from = out.size() > 10 ? out.size() - 10 : 0;
    std::printf("soak: --- %s: last stdout lines ---\n", Label(s).c_str());
    for (size_t i = from; i < out.size(); ++i) std::printf("  %s\n", out[i].c_str());
  }
  std::fflush(stdout);
}

void Soak::HandleExit(Slot& s, int status) {
  Update(s);
  switch (s.state) {
    case State::kKilled:
      if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
        PrintTails(s);
        Fail(absl::StrCat(Label(s), " ended with ", DescribeStatus(status), " instead of SIGKILL"));
      }
      Retire(s);
      s.state = State::kDown;  // `at` is its relaunch time, set at the kill
      break;
    case State::kStopping: {
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        PrintTails(s);
        std::string report = SanitizerReport(s.err_path);
        Fail(absl::StrCat(Label(s), " ended with ", DescribeStatus(status), " after SIGTERM",
                          report.empty() ? "" : ": ", report));
      } else if (!s.w->WaitForPrefix("EXITING", absl::Seconds(5))) {
        PrintTails(s);
        Fail(absl::StrCat(Label(s), " exited 0 after SIGTERM without printing EXITING"));
      }
      for (const char* ext : {".link", ".grpc"}) {
        std::string f = absl::StrCat(mesh_dir_, "/", s.name, ext);
        if (std::filesystem::exists(f)) Fail(absl::StrCat(Label(s), " left ", f, " behind after a graceful stop"));
      }
      Retire(s);
      for (const auto& [from, c] : s.last_rx) {
        if (c.failed_or_errors != 0) {
          Fail(absl::StrCat(s.name, " got ", c.failed_or_errors, " bad messages from ", from.first, " (id ",
                            Hex(from.second), "): lost, duplicated, reordered or corrupt"));
        }
      }
      s.state = State::kDown;
      s.at = absl::Now() + Uniform(absl::ZeroDuration(), absl::Milliseconds(500));
      break;
    }
    default:
      PrintTails(s);
      Fail(absl::StrCat(Label(s), " exited on its own: ", DescribeStatus(status), [&] {
        std::string r = SanitizerReport(s.err_path);
        return r.empty() ? std::string() : absl::StrCat(": ", r);
      }()));
      Retire(s);
      s.state = State::kDown;
      s.at = absl::InfiniteFuture();
      break;
  }
}

int Soak::LiveCount() const {
  int n = 0;
  for (const Slot& s : slots_) n += s.state == State::kRunning;
  return n;
}

void Soak::Tick(bool events) {
  if (g_interrupted) Fail("interrupted (SIGINT or SIGTERM)");
  const absl::Time now = absl::Now();
  for (Slot& s : slots_) {
    if (s.w != nullptr) {
      Update(s);
      if (auto status = s.w->WaitExit(absl::ZeroDuration())) {
        HandleExit(s, *status);
        continue;
      }
    }
    switch (s.state) {
      case State::kPaused:
        if (now >= s.at) {
          s.w->Kill(SIGCONT);
          s.state = State::kRunning;
          if (verbose_) Say(absl::StrCat("resumed ", Label(s)));
        }
        break;
      case State::kStopping:
        if (now >= s.at) {
          PrintTails(s);
          Fail(absl::StrCat(Label(s), " did not exit within ", absl::GetFlag(FLAGS_exit_timeout_s), " s of SIGTERM"));
        }
        break;
      case State::kDown:
        if (now >= s.at) Launch(s);
        break;
      default:
        break;
    }
  }
  if (now >= next_sample_) {
    Sample();
    next_sample_ = now + absl::Seconds(1);
  }
  fewest_live_ = std::min(fewest_live_, LiveCount());
  if (events && now >= next_event_ && !failed()) {
    Event();
    const absl::Duration mean = absl::Milliseconds(absl::GetFlag(FLAGS_event_ms));
    next_event_ = absl::Now() + Uniform(mean / 2, mean * 3 / 2);
  }
}

void Soak::Sample() {
  std::set<pid_t> parents = {getpid()};
  std::set<pid_t> tracked;
  for (Slot& s : slots_) {
    if (s.w == nullptr) continue;
    tracked.insert(s.w->pid());
    if (s.state != State::kRunning && s.state != State::kPaused) continue;
    parents.insert(s.w->pid());
    const Usage u = Measure(s.w->pid());
    if (!u.ok()) continue;  // it just died: Tick reports it
    Max(max_, u);
    if (!warm_.ok()) continue;
    const double factor = absl::GetFlag(FLAGS_bound_factor);
    for (const auto& m : kMetrics) {
      if (u.*m.field > factor * std::max(warm_.*m.field, 1)) {
        Fail(absl::StrCat(Label(s), " holds ", u.*m.field, " ", m.what, ", over ", factor, "x the warm-up maximum ",
                          warm_.*m.field));
      }
    }
  }
  for (pid_t z : Zombies(parents)) {
    // A worker that just died is reaped (and reported) by the next Tick.
    if (tracked.count(z)) continue;
    Fail(absl::StrCat("zombie process ", z, " left unreaped"));
  }
}

void Soak::Event() {
  const int live = LiveCount();
  const bool may_take = live - 1 >= min_live_;
  std::vector<Slot*> running, killable;
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    const bool spare = static_cast<int>(i) < spare_;
    if (s.state == State::kRunning && may_take) running.push_back(&s);
    if (!spare && (s.state == State::kPaused || (s.state == State::kRunning && may_take))) killable.push_back(&s);
  }
  std::vector<Slot*> restartable;
  for (Slot* s : running) {
    // SIGTERM is a clean stop only once the worker blocks it (STARTED
    // comes after that); before, it would simply die of it.
    if (s - slots_.data() >= spare_ && s->t.id != 0) restartable.push_back(s);
  }
  auto pick = [&](std::vector<Slot*>& from) {
    return from[std::uniform_int_distribution<size_t>(0, from.size() - 1)(rng_)];
  };
  // 45% kill, 35% stop, 20% graceful restart, among the kinds that have a
  // candidate now (with min_live nodes running, only a stopped node can go).
  const double weights[3] = {killable.empty() ? 0.0 : 0.45, running.empty() ? 0.0 : 0.35,
                             restartable.empty() ? 0.0 : 0.2};
  if (weights[0] + weights[1] + weights[2] == 0) return;
  const int kind = std::discrete_distribution<int>(std::begin(weights), std::end(weights))(rng_);
  if (kind == 0) {
    Slot& s = *pick(killable);
    s.w->Kill(SIGKILL);
    s.state = State::kKilled;
    s.at = absl::Now() + Uniform(absl::ZeroDuration(), absl::Milliseconds(absl::GetFlag(FLAGS_restart_ms)));
    ++kills_;
    if (verbose_) Say(absl::StrCat("kill -9 ", Label(s)));
  } else if (kind == 1) {
    Slot& s = *pick(running);
    s.w->Kill(SIGSTOP);
    s.state = State::kPaused;
    s.at = absl::Now() + Uniform(absl::Milliseconds(absl::GetFlag(FLAGS_pause_min_ms)),
                                 absl::Milliseconds(absl::GetFlag(FLAGS_pause_max_ms)));
    ++pauses_;
    if (verbose_) Say(absl::StrCat("SIGSTOP ", Label(s)));
  } else {
    Slot& s = *pick(restartable);
    s.w->Kill(SIGTERM);
    s.state = State::kStopping;
    s.at = absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_exit_timeout_s));
    ++restarts_;
    if (verbose_) Say(absl::StrCat("SIGTERM ", Label(s)));
  }
}

std::string Soak::Missing() {
  for (Slot& s : slots_) {
    if (s.state != State::kRunning) return absl::StrCat(s.name, " is not running yet");
    Update(s);
    if (s.t.id == 0) return absl::StrCat(Label(s), " has not started");
  }
  for (const Slot& a : slots_) {
    for (const Slot& b : slots_) {
      if (&a == &b) continue;
      auto it = a.t.up.find(b.name);
      if (it == a.t.up.end() || it->second != b.t.id) {
        return absl::StrCat(Label(a), " does not have ", b.name, " (id ", Hex(b.t.id), ") up");
      }
      if (!a.t.first.count({b.name, b.t.id})) {
        return absl::StrCat(Label(a), " got nothing from ", b.name, " (id ", Hex(b.t.id), ")");
      }
    }
    if (!a.t.down_missing.empty()) {
      const PeerKey& k = *a.t.down_missing.begin();
      return absl::StrCat(Label(a), " never reported ", k.first, " (id ", Hex(k.second),
                          ") down, though a newer incarnation came up");
    }
  }
  return "";
}

bool Soak::Settle() {
  const absl::Time now = absl::Now();
  for (Slot& s : slots_) {
    if (s.state == State::kPaused || s.state == State::kDown || s.state == State::kKilled) s.at = now;
  }
  const absl::Time deadline = now + absl::Seconds(absl::GetFlag(FLAGS_settle_s));
  while (!failed()) {
    Tick(/*events=*/false);
    std::string missing = Missing();
    if (missing.empty()) return true;
    if (absl::Now() > deadline) {
      Fail(absl::StrCat("the mesh was not whole ", absl::GetFlag(FLAGS_settle_s),
                        " s after a checkpoint began: ", missing));
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

bool Soak::Report(Slot& s, CountMap* rx) {
  const size_t mark = s.w->LineCount();
  auto done = s.w->Command("report")
                  ? s.w->WaitFor([](const std::string& l) { return l == "REPORTED"; }, absl::Seconds(30), mark)
                  : std::nullopt;
  if (!done) {
    PrintTails(s);
    Fail(absl::StrCat(Label(s), " did not answer 'report' within 30 s"));
    return false;
  }
  *rx = ParseCounts(s.w->Lines(mark, *done), "RESULT ");
  s.last_rx = *rx;
  return true;
}

void Soak::CheckCounts(const Slot& s, const CountMap& rx) {
  for (const auto& [from, c] : rx) {
    if (c.failed_or_errors != 0) {
      Fail(absl::StrCat(Label(s), " got ", c.failed_or_errors, " bad messages from ", from.first, " (id ",
                        Hex(from.second), "): lost, duplicated, reordered or corrupt (BAD lines in ", s.out_path, ")"));
    }
  }
}

void Soak::Checkpoint() {
  if (!Settle()) return;
  // The mesh is whole: every node holds a link to every other one. Take the
  // smallest of a few samples so a descriptor that is only passing through
  // (an accepted connection being set up) does not count; a leak stays.
  std::map<Slot*, Usage> quiet;
  for (int round = 0; round < 4; ++round) {
    absl::SleepFor(absl::Milliseconds(250));
    for (Slot& s : slots_) {
      const Usage u = Measure(s.w->pid());
      if (!u.ok()) continue;
      auto [it, inserted] = quiet.emplace(&s, u);
      if (inserted) continue;
      for (const auto& m : kMetrics) it->second.*m.field = std::min(it->second.*m.field, u.*m.field);
    }
  }
  Tick(/*events=*/false);  // a worker that died meanwhile is reported
  if (failed()) return;
  const bool warmup = !warm_.ok();
  for (auto& [s, u] : quiet) {
    Max(max_, u);
    if (warmup) {
      Max(warm_, u);
      s->base = u;
      s->base_downs = 0;
      continue;
    }
    const int downs = s->t.peer_downs;
    for (size_t i = 0; i < std::size(kMetrics); ++i) {
      const Metric& m = kMetrics[i];
      const int now = u.*m.field, warm = warm_.*m.field, slack = slack_[i];
      // A node fresh in the mesh may hold less than a settled one (gRPC
      // connections between members come with their first call), so its own
      // first count is the reference only where it is above the warm-up's.
      const int base = s->base.ok() ? s->base.*m.field : -1;
      if (now <= std::max(base, warm) + slack) continue;
      if (base > warm) {
        Fail(absl::StrCat(Label(*s), " went from ", base, " to ", now, " ", m.what, " in a whole mesh while ",
                          downs - s->base_downs, " peers went down: a leak"));
      } else {
        Fail(absl::StrCat(Label(*s), " holds ", now, " ", m.what, " in a whole mesh, ", now - warm,
                          " over the warm-up maximum ", warm, " (it saw ", downs, " peers go down): a leak"));
      }
    }
    if (!s->base.ok()) {
      s->base = u;
      s->base_downs = downs;
    }
  }
  if (verbose_) {
    for (auto& [s, u] : quiet) {
      Say(absl::StrCat("  ", Label(*s), ": ", u.fds, " fds, ", u.maps, " maps (", u.shared_maps, " shared), ",
                       s->t.peer_downs, " peer downs seen"));
    }
  }
  for (Slot& s : slots_) {
    CountMap rx;
    if (!Report(s, &rx)) return;
    CheckCounts(s, rx);
  }
  ++checkpoints_;
}

uint64_t Soak::Verified() const {
  uint64_t n = retired_verified_;
  for (const Slot& s : slots_) {
    if (s.w == nullptr) continue;
    for (const auto& [from, c] : s.last_rx) n += c.n;
  }
  return n;
}

void Soak::Finish() {
  Checkpoint();
  if (failed()) return;
  // Stop every stream, then wait until every receiver has what was sent.
  std::map<Slot*, CountMap> tx, rx;
  std::map<Slot*, size_t> marks;
  for (Slot& s : slots_) {
    marks[&s] = s.w->LineCount();
    s.w->Command("stop");
  }
  for (Slot& s : slots_) {
    auto stopped = s.w->WaitFor([](const std::string& l) { return l == "STOPPED"; }, absl::Seconds(30), marks[&s]);
    if (!stopped) {
      PrintTails(s);
      return Fail(absl::StrCat(Label(s), " did not stop sending within 30 s"));
    }
    tx[&s] = ParseCounts(s.w->Lines(marks[&s], *stopped), "SENT ");
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (true) {
    for (Slot& s : slots_) {
      if (!Report(s, &rx[&s])) return;
    }
    bool caught_up = true;
    for (Slot& a : slots_) {
      for (Slot& b : slots_) {
        if (&a != &b && rx[&b][{a.name, a.t.id}].n < tx[&a][{b.name, b.t.id}].n) caught_up = false;
      }
    }
    if (caught_up || absl::Now() > deadline) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  uint64_t failed_sends = 0;
  for (Slot& a : slots_) {
    for (Slot& b : slots_) {
      if (&a == &b) continue;
      const Counts& s = tx[&a][{b.name, b.t.id}];
      const Counts& r = rx[&b][{a.name, a.t.id}];
      failed_sends += s.failed_or_errors;
      const std::string pair = absl::StrCat(a.name, " -> ", b.name);
      if (s.n == 0) Fail(absl::StrCat(pair, ": nothing sent"));
      if (r.n < s.n) {
        lost_ += s.n - r.n;
        Fail(absl::StrCat(pair, ": sent ", s.n, ", received ", r.n, " (", s.n - r.n, " lost)"));
      } else if (r.n > s.n) {
        Fail(absl::StrCat(pair, ": sent ", s.n, ", received ", r.n, " (duplicates)"));
      } else if (r.bytes != s.bytes) {
        Fail(absl::StrCat(pair, ": sent ", s.bytes, " bytes, received ", r.bytes));
      }
    }
    CheckCounts(a, rx[&a]);
  }
  if (failed_sends > 0)
    Say(absl::StrCat(failed_sends,
                     " sends between final incarnations failed (not lost: a failed send is not numbered)"));
  // Graceful stop of everything: exit 0, sockets removed.
  for (Slot& s : slots_) {
    s.w->Kill(SIGTERM);
    s.state = State::kStopping;
  }
  for (Slot& s : slots_) {
    auto status = s.w->WaitExit(absl::Seconds(absl::GetFlag(FLAGS_exit_timeout_s)));
    if (!status) {
      PrintTails(s);
      Fail(absl::StrCat(Label(s), " did not exit within ", absl::GetFlag(FLAGS_exit_timeout_s), " s of SIGTERM"));
      continue;
    }
    HandleExit(s, *status);
    s.at = absl::InfiniteFuture();
  }
  std::vector<std::string> left;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(mesh_dir_, ec)) left.push_back(e.path().filename());
  if (!left.empty())
    Fail(absl::StrCat("left in ", mesh_dir_, " after every node stopped: ", absl::StrJoin(left, ", ")));
}

int Soak::Run() {
  const int nodes = absl::GetFlag(FLAGS_nodes);
  const int seconds = absl::GetFlag(FLAGS_seconds);
  if (nodes < 2 || nodes > 26 || seconds < 0 || absl::GetFlag(FLAGS_check_s) <= 0 ||
      absl::GetFlag(FLAGS_event_ms) <= 0 || absl::GetFlag(FLAGS_pause_min_ms) > absl::GetFlag(FLAGS_pause_max_ms)) {
    std::fprintf(stderr,
                 "soak: bad flags: need 2 <= --nodes <= 26, --seconds >= 0, --check_s > 0, --event_ms > 0, "
                 "--pause_min_ms <= --pause_max_ms (see --help)\n");
    return 2;
  }
  verbose_ = absl::GetFlag(FLAGS_verbose);
  min_live_ = absl::GetFlag(FLAGS_min_live);
  if (min_live_ <= 0) min_live_ = std::max(2, (nodes + 1) / 2);
  min_live_ = std::min(min_live_, nodes);
  spare_ = absl::GetFlag(FLAGS_spare);
  naive_seeds_ = absl::GetFlag(FLAGS_naive_seeds);
  uint64_t seed = absl::GetFlag(FLAGS_seed);
  if (seed == 0) seed = std::random_device()() ^ static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  rng_.seed(seed);
  worker_ = absl::GetFlag(FLAGS_worker);
  if (worker_.empty()) worker_ = meshtest::WorkerBinary();
  if (access(worker_.c_str(), X_OK) != 0) {
    std::fprintf(stderr, "soak: no mesh_worker at %s: build //tests:mesh_worker and pass --worker=PATH\n",
                 worker_.c_str());
    return 2;
  }
  for (const std::string& a : absl::GetFlag(FLAGS_worker_args)) {
    if (!a.empty()) extra_args_.push_back(a);
  }
  run_dir_ = absl::GetFlag(FLAGS_run_dir);
  if (run_dir_.empty()) {
    char tmpl[] = "/tmp/soak-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::fprintf(stderr, "soak: mkdtemp in /tmp failed: %s\n", strerror(errno));
      return 2;
    }
    run_dir_ = tmpl;
    made_run_dir_ = true;
  }
  mesh_dir_ = run_dir_ + "/m";
  logs_dir_ = run_dir_ + "/logs";
  // sockaddr_un holds 108 bytes with the NUL; the longest name is nXX.link.
  if (mesh_dir_.size() + std::string("/n25.link").size() > 107) {
    std::fprintf(stderr, "soak: --run_dir %s is too long for Unix socket paths (107 bytes); pick a shorter one\n",
                 run_dir_.c_str());
    return 2;
  }
  std::error_code ec;
  std::filesystem::create_directories(logs_dir_, ec);
  if (ec) {
    std::fprintf(stderr, "soak: cannot create %s: %s\n", logs_dir_.c_str(), ec.message().c_str());
    return 2;
  }
  if (std::filesystem::exists(mesh_dir_) && !std::filesystem::is_empty(mesh_dir_)) {
    std::fprintf(stderr, "soak: %s is not empty: pick a fresh --run_dir\n", mesh_dir_.c_str());
    return 2;
  }
  meshtest::SetFailureHandler([this](const std::string& what) { Fail(what); });
  // Reset to the default in the workers by exec.
  signal(SIGINT, OnInterrupt);
  signal(SIGTERM, OnInterrupt);
  const int own_fds = CountFds(getpid());
  // In kMetrics' order.
  slack_[0] = absl::GetFlag(FLAGS_fd_slack);
  slack_[1] = absl::GetFlag(FLAGS_map_slack);
  slack_[2] = absl::GetFlag(FLAGS_shared_map_slack);

  Say(absl::StrCat("seed ", seed, " (replay: --seed=", seed, " --nodes=", nodes, " --seconds=", seconds, "), ", nodes,
                   " nodes, run dir ", run_dir_, ", worker ", worker_));
  start_ = absl::Now();
  slots_.resize(nodes);
  for (int i = 0; i < nodes; ++i) {
    slots_[i].name = absl::StrCat("n", i);
    slots_[i].at = start_;
  }
  if (!naive_seeds_) {
    // n0 first; the others once it serves, so they all join its mesh.
    for (size_t i = 1; i < slots_.size(); ++i) slots_[i].at = absl::InfiniteFuture();
    const absl::Time deadline = start_ + absl::Seconds(absl::GetFlag(FLAGS_settle_s));
    while (!failed() && slots_[0].t.id == 0) {
      if (absl::Now() > deadline) Fail(absl::StrCat(Label(slots_[0]), " did not print STARTED in time"));
      Tick(/*events=*/false);
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  Checkpoint();  // warm-up: the first whole mesh sets the descriptor and mapping baselines
  if (!failed()) {
    Say(absl::StrCat("mesh whole after ",
                     absl::FormatDuration(absl::Trunc(absl::Now() - start_, absl::Milliseconds(100))),
                     "; warm-up: fds max ", warm_.fds, ", maps max ", warm_.maps, " (", warm_.shared_maps, " shared)"));
  }
  const absl::Time events_start = absl::Now();
  const absl::Time end = events_start + absl::Seconds(seconds);
  const absl::Duration check_every = absl::Seconds(absl::GetFlag(FLAGS_check_s));
  absl::Time next_check = events_start + check_every;
  fewest_live_ = nodes;
  next_event_ = events_start;
  while (!failed() && absl::Now() < end) {
    Tick(/*events=*/true);
    if (absl::Now() >= next_check && absl::Now() + check_every / 2 < end) {
      Checkpoint();
      if (failed()) break;
      Say(absl::StrFormat(
          "%d s: %d kills, %d stops, %d restarts; %d of %d nodes live (fewest since the last line: %d); %d "
          "checkpoints passed; fds max %d, maps max %d; %d messages verified",
          static_cast<int>(absl::ToInt64Seconds(absl::Now() - events_start)), kills_, pauses_, restarts_, LiveCount(),
          nodes, fewest_live_, checkpoints_, max_.fds, max_.maps, Verified()));
      fewest_live_ = nodes;
      next_check = absl::Now() + check_every;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (!failed()) Finish();
  // Whatever happened: no worker outlives the driver.
  for (Slot& s : slots_) {
    if (s.w != nullptr) {
      s.w->Kill(SIGCONT);
      Retire(s);  // ~Worker kills and reaps it
    }
  }
  const int own_fds_after = CountFds(getpid());
  if (!failed() && own_fds_after != own_fds) {
    Fail(absl::StrCat("the driver itself holds ", own_fds_after, " descriptors after the run, ", own_fds, " before"));
  }
  if (!failed() && errors_ != 0) Fail(absl::StrCat(errors_, " bad messages reported"));
  const int64_t ran = absl::ToInt64Seconds(absl::Now() - start_);
  if (failed()) {
    Say(absl::StrCat("logs kept in ", run_dir_, " (<node>.<incarnation>.out: stdout lines, .err: stderr)"));
    Say(absl::StrCat("FAIL after ", ran, " s (seed ", seed, "): ", failure_));
    return 1;
  }
  if (!absl::GetFlag(FLAGS_keep)) {
    std::filesystem::remove_all(logs_dir_, ec);
    std::filesystem::remove_all(mesh_dir_, ec);
    if (made_run_dir_) std::filesystem::remove(run_dir_, ec);
  }
  Say(
      absl::StrFormat("PASS %d s, %d nodes, %d kills, %d stops, %d restarts, %d messages verified, %d lost, "
                      "%d errors, fds max %d, maps max %d",
                      seconds, nodes, kills_, pauses_, restarts_, Verified(), lost_, errors_, max_.fds, max_.maps));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "a chaos run of a real mesh of mesh_worker processes (kill -9, SIGSTOP/SIGCONT, graceful\n"
      "restarts) that checks per-pair delivery, descriptor and mapping counts, zombies and clean exits,\n"
      "then prints one verdict line. See tests/soak/README.md.\n"
      "usage: soak [--seconds=300] [--nodes=8] [--seed=N] [--worker=PATH] [--run_dir=DIR] ...");
  absl::ParseCommandLine(argc, argv);
  Soak soak;
  return soak.Run();
}
