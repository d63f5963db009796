#include "tests/worker_fixture.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <filesystem>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace meshtest {
namespace {

// Failed checks inside the worker helpers (worker_process.h) are test
// failures here.
const bool kHelperFailuresFailTests = [] {
  SetFailureHandler([](const std::string& what) { ADD_FAILURE() << what; });
  return true;
}();

}  // namespace

std::vector<std::string> WithPrefix(const std::vector<std::string>& lines, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& l : lines) {
    if (StartsWith(l, prefix)) out.push_back(l);
  }
  return out;
}

void WorkerFixture::SetUp() {
  (void)kHelperFailuresFailTests;
  // Unix socket paths must fit in 107 bytes: TEST_TMPDIR is too long.
  char tmpl[] = "/tmp/mts-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  dir_ = tmpl;
  binary_ = WorkerBinary();
  ASSERT_TRUE(std::filesystem::exists(binary_)) << binary_;
}

void WorkerFixture::TearDown() {
  for (auto& w : workers_) w->Kill(SIGKILL);
  workers_.clear();  // reaps each and joins its reader
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string WorkerFixture::Target(const std::string& name) const {
  return absl::StrCat("unix:", dir_, "/", name, ".grpc");
}

Worker* WorkerFixture::Launch(const std::string& name, const std::vector<std::string>& seeds,
                              const std::vector<std::string>& extra) {
  std::vector<std::string> seed_targets;
  for (const auto& s : seeds) seed_targets.push_back(Target(s));
  std::vector<std::string> args = {
      "--name=" + name,
      "--run_dir=" + dir_,
      "--seeds=" + absl::StrJoin(seed_targets, ","),
      std::string("--log_level=") + (getenv("MESH_TEST_LOG") ? "info" : "warning"),
  };
  args.insert(args.end(), extra.begin(), extra.end());
  auto w = Worker::Launch(binary_, name, args);
  if (w == nullptr) {
    ADD_FAILURE() << "cannot launch " << name;
    return nullptr;
  }
  killed_.erase(name);
  workers_.push_back(std::move(w));
  return workers_.back().get();
}

Worker* WorkerFixture::LaunchReady(const std::string& name, const std::vector<std::string>& seeds,
                                   const std::vector<std::string>& extra) {
  Worker* w = Launch(name, seeds, extra);
  if (w == nullptr || !w->WaitReady()) return nullptr;
  return w;
}

int64_t WorkerFixture::KillHard(Worker* w) {
  const int64_t t = MonotonicNs();
  w->Kill(SIGKILL);
  auto status = w->WaitExit(kExitTimeout);
  EXPECT_TRUE(status.has_value() && WIFSIGNALED(*status) && WTERMSIG(*status) == SIGKILL) << w->name();
  killed_.insert(w->name());
  return t;
}

void WorkerFixture::StopAllAndCheckClean() {
  std::vector<Worker*> live;
  for (const auto& w : workers_) {
    if (w->running()) live.push_back(w.get());
  }
  for (Worker* w : live) w->Kill(SIGTERM);
  for (Worker* w : live) {
    auto status = w->WaitExit(kExitTimeout);
    ASSERT_TRUE(status.has_value()) << w->name() << " did not exit after SIGTERM";
    EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0)
        << w->name() << " exit status " << *status << "; output:\n"
        << w->Dump();
    EXPECT_TRUE(w->WaitForPrefix("EXITING", absl::Seconds(5))) << w->name();
  }
  std::vector<std::string> left;
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    const std::string f = e.path().filename().string();
    bool expected = false;
    for (const auto& k : killed_) expected |= f == k + ".link" || f == k + ".grpc";
    if (expected) {
      std::filesystem::remove(e.path());
    } else {
      left.push_back(f);
    }
  }
  EXPECT_TRUE(left.empty()) << "left in " << dir_ << ": " << absl::StrJoin(left, ", ");
}

std::vector<std::string> WorkerFixture::Report(Worker* w) {
  const size_t mark = w->LineCount();
  EXPECT_TRUE(w->Command("report")) << w->name();
  auto done = w->WaitFor([](const std::string& l) { return l == "REPORTED"; }, kStepTimeout, mark);
  EXPECT_TRUE(done) << w->name() << " did not report";
  if (!done) return {};
  return w->Lines(mark, *done);
}

bool WorkerFixture::ReportUntil(Worker* w, const std::function<bool(const std::vector<std::string>&)>& done,
                                absl::Duration timeout, std::vector<std::string>* last) {
  const absl::Time end = absl::Now() + timeout;
  for (;;) {
    std::vector<std::string> lines = Report(w);
    const bool ok = done(lines);
    if (last != nullptr) *last = lines;
    if (ok) return true;
    if (absl::Now() > end || ::testing::Test::HasFatalFailure()) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::string WorkerFixture::Expect(Worker* w, const std::string& prefix, const std::string& what,
                                  absl::Duration timeout, size_t from) {
  auto i = w->WaitFor([&](const std::string& l) { return StartsWith(l, prefix); }, timeout, from);
  if (!i.has_value()) {
    ADD_FAILURE() << w->name() << ": no '" << prefix << "' line (" << what << "); output:\n" << w->Dump();
    return "";
  }
  return w->Line(*i);
}

}  // namespace meshtest
