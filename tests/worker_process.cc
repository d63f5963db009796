#include "tests/worker_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"

namespace meshtest {
namespace {

struct FailureHandler {
  absl::Mutex mu;
  std::function<void(const std::string&)> fn ABSL_GUARDED_BY(mu);
};

FailureHandler& GetFailureHandler() {
  static FailureHandler* h = new FailureHandler;
  return *h;
}

}  // namespace

void SetFailureHandler(std::function<void(const std::string&)> handler) {
  FailureHandler& h = GetFailureHandler();
  absl::MutexLock lock(&h.mu);
  h.fn = std::move(handler);
}

void ReportFailure(const std::string& what) {
  std::function<void(const std::string&)> fn;
  {
    FailureHandler& h = GetFailureHandler();
    absl::MutexLock lock(&h.mu);
    fn = h.fn;
  }
  if (fn) {
    fn(what);
  } else {
    std::fprintf(stderr, "worker_process: %s\n", what.c_str());
  }
}

int CountFds(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it(absl::StrCat("/proc/", pid, "/fd"), ec);
  if (ec) return -1;
  int n = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) ++n;
  return n;
}

int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

uint64_t Fields::U64(const std::string& key) const {
  uint64_t v = 0;
  auto it = kv.find(key);
  if (it == kv.end() || !absl::SimpleAtoi(it->second, &v)) {
    ReportFailure(absl::StrCat("no numeric ", key, "= in line"));
  }
  return v;
}

uint64_t Fields::Id() const {
  uint64_t v = 0;
  auto it = kv.find("id");
  if (it == kv.end() || !absl::SimpleHexAtoi(it->second, &v)) ReportFailure("no id= in line");
  return v;
}

Fields Parse(const std::string& line) {
  Fields f;
  for (absl::string_view w : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    size_t eq = w.find('=');
    if (eq == absl::string_view::npos) {
      f.words.emplace_back(w);
    } else {
      f.kv[std::string(w.substr(0, eq))] = std::string(w.substr(eq + 1));
    }
  }
  return f;
}

bool StartsWith(const std::string& line, const std::string& prefix) { return absl::StartsWith(line, prefix); }

std::unique_ptr<Worker> Worker::Launch(const std::string& binary, const std::string& name,
                                       const std::vector<std::string>& args) {
  return Launch(binary, name, args, Options());
}

std::unique_ptr<Worker> Worker::Launch(const std::string& binary, const std::string& name,
                                       const std::vector<std::string>& args, const Options& options) {
  int err_fd = -1;
  if (!options.stderr_path.empty()) {
    err_fd = open(options.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (err_fd < 0) {
      ReportFailure(absl::StrCat("cannot create ", options.stderr_path, ": ", strerror(errno)));
      return nullptr;
    }
  }
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0) {
    if (err_fd >= 0) close(err_fd);
    ReportFailure("pipe2 failed");
    return nullptr;
  }
  if (pipe2(out, O_CLOEXEC) != 0) {
    close(in[0]);
    close(in[1]);
    if (err_fd >= 0) close(err_fd);
    ReportFailure("pipe2 failed");
    return nullptr;
  }
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls until exec.
  std::vector<std::string> argv_storage = {binary};
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    // dup2 clears O_CLOEXEC on the new descriptors only.
    if (dup2(in[0], STDIN_FILENO) < 0 || dup2(out[1], STDOUT_FILENO) < 0) _exit(127);
    if (err_fd >= 0 && dup2(err_fd, STDERR_FILENO) < 0) _exit(127);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  if (err_fd >= 0) close(err_fd);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    ReportFailure("fork failed");
    return nullptr;
  }
  return std::unique_ptr<Worker>(new Worker(name, pid, in[1], out[0], options.echo_lines));
}

Worker::Worker(std::string name, pid_t pid, int stdin_fd, int stdout_fd, bool echo_lines)
    : name_(std::move(name)), pid_(pid), stdin_fd_(stdin_fd), stdout_fd_(stdout_fd), echo_lines_(echo_lines) {
  // A worker that exits while we write a command must not kill us.
  signal(SIGPIPE, SIG_IGN);
  reader_ = std::thread([this] { ReadLoop(); });
}

Worker::~Worker() {
  Kill(SIGKILL);
  (void)WaitExit(absl::Seconds(10));
  if (reader_.joinable()) reader_.join();
  close(stdin_fd_);
  close(stdout_fd_);
}

std::optional<size_t> Worker::WaitFor(const std::function<bool(const std::string&)>& pred, absl::Duration timeout,
                                      size_t from) {
  absl::Time deadline = absl::Now() + timeout;
  absl::MutexLock lock(&mu_);
  size_t scanned = from;
  std::optional<size_t> found;
  auto done = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (; scanned < lines_.size(); ++scanned) {
      if (pred(lines_[scanned])) {
        found = scanned;
        return true;
      }
    }
    return eof_;
  };
  mu_.AwaitWithDeadline(absl::Condition(&done), deadline);
  return found;
}

std::optional<std::string> Worker::WaitForPrefix(const std::string& prefix, absl::Duration timeout, size_t from) {
  auto i = WaitFor([&](const std::string& l) { return StartsWith(l, prefix); }, timeout, from);
  if (!i) return std::nullopt;
  return Line(*i);
}

bool Worker::WaitReady(absl::Duration timeout) {
  auto started = WaitForPrefix("STARTED ", timeout);
  if (!started) {
    ReportFailure(absl::StrCat(name_, " never printed STARTED; output:\n", Dump()));
    return false;
  }
  id_ = Parse(*started).Id();
  auto ready = WaitForPrefix("READY ", timeout);
  if (!ready) {
    ReportFailure(absl::StrCat(name_, " never printed READY; output:\n", Dump()));
    return false;
  }
  return true;
}

bool Worker::WaitStarted(absl::Duration timeout) {
  auto started = WaitForPrefix("STARTED ", timeout);
  if (!started) {
    ReportFailure(absl::StrCat(name_, " never printed STARTED; output:\n", Dump()));
    return false;
  }
  id_ = Parse(*started).Id();
  return true;
}

std::string Worker::Line(size_t i) const {
  absl::MutexLock lock(&mu_);
  return lines_.at(i);
}

size_t Worker::LineCount() const {
  absl::MutexLock lock(&mu_);
  return lines_.size();
}

std::vector<std::string> Worker::Lines(size_t from, size_t to) const {
  absl::MutexLock lock(&mu_);
  to = std::min(to, lines_.size());
  if (from >= to) return {};
  return std::vector<std::string>(lines_.begin() + from, lines_.begin() + to);
}

std::vector<std::string> Worker::LinesWithPrefix(const std::string& prefix) const {
  std::vector<std::string> out;
  for (auto& l : Lines()) {
    if (StartsWith(l, prefix)) out.push_back(l);
  }
  return out;
}

std::string Worker::Dump() const { return absl::StrJoin(Lines(), "\n"); }

bool Worker::Command(const std::string& cmd) {
  std::string line = cmd + "\n";
  return write(stdin_fd_, line.data(), line.size()) == static_cast<ssize_t>(line.size());
}

void Worker::Kill(int sig) {
  if (!exited_) ::kill(pid_, sig);
}

std::optional<int> Worker::WaitExit(absl::Duration timeout) {
  if (exited_) return status_;
  absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      status_ = status;
      return status;
    }
    if (r < 0) {  // not our child any more: nothing to reap
      exited_ = true;
      status_ = -1;
      return status_;
    }
    if (absl::Now() >= deadline) return std::nullopt;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

void Worker::ReadLoop() {
  std::string buf;
  char chunk[4096];
  while (true) {
    ssize_t n = read(stdout_fd_, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (echo_lines_) std::fprintf(stderr, "[%s] %s\n", name_.c_str(), line.c_str());
      absl::MutexLock lock(&mu_);
      lines_.push_back(std::move(line));
    }
  }
  absl::MutexLock lock(&mu_);
  eof_ = true;
}

CountMap ParseCounts(const std::vector<std::string>& lines, const std::string& prefix) {
  CountMap out;
  const bool sent = prefix == "SENT ";
  for (const auto& l : lines) {
    if (!StartsWith(l, prefix)) continue;
    Fields f = Parse(l);
    if (f.words.size() < 2) {
      ReportFailure(absl::StrCat("bad line: ", l));
      continue;
    }
    Counts c;
    c.n = f.U64(sent ? "sent" : "received");
    c.failed_or_errors = f.U64(sent ? "failed" : "errors");
    c.bytes = f.U64("bytes");
    out[{f.words[1], f.Id()}] = c;
  }
  return out;
}

std::string WorkerBinary() {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* workspace = getenv("TEST_WORKSPACE");
  if (srcdir != nullptr) {
    return absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "shmesh", "/tests/mesh_worker");
  }
  // Run by hand: the runfiles tree beside this binary.
  return std::filesystem::read_symlink("/proc/self/exe").string() + ".runfiles/shmesh/tests/mesh_worker";
}

}  // namespace meshtest
