#include "bench/harness.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"

namespace shmesh_bench {

void Die(const std::string& what) {
  std::fprintf(stderr, "shmesh_bench[%d]: %s\n", ::getpid(), what.c_str());
  std::fflush(stderr);
  std::_Exit(1);
}

void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) Die(absl::StrCat(what, ": ", status.ToString()));
}

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

int AllowedCpus() {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return 1;
  return CPU_COUNT(&allowed);
}

void PinToCpu(int index) {
  if (index < 0) return;
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == index) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      if (sched_setaffinity(0, sizeof(one), &one) != 0) Die("sched_setaffinity failed");
      return;
    }
  }
}

Percentiles ComputePercentiles(std::vector<int64_t>& samples) {
  Percentiles p;
  if (samples.empty()) return p;
  std::sort(samples.begin(), samples.end());
  auto at = [&](double q) {
    const size_t i = std::min(samples.size() - 1, static_cast<size_t>(q * samples.size()));
    return static_cast<double>(samples[i]);
  };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.p999 = at(0.999);
  return p;
}

void Emit(const std::string& line) {
  // One fputs per line: stdio locks the stream per call, so lines from
  // different threads never interleave.
  const std::string with_newline = line + "\n";
  std::fputs(with_newline.c_str(), stdout);
  std::fflush(stdout);
}

std::string RowLine(absl::string_view name, uint64_t payload,
                    const std::vector<std::pair<std::string, double>>& fields) {
  std::string line = absl::StrCat("ROW ", name, " ", payload);
  for (const auto& [key, value] : fields) {
    absl::StrAppend(&line, " ", key, "=", absl::StrFormat("%.6g", value));
  }
  return line;
}

void ReadFull(int fd, void* data, size_t n) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) Die(r == 0 ? "read: unexpected EOF" : absl::StrCat("read: ", std::strerror(errno)));
    p += r;
    n -= static_cast<size_t>(r);
  }
}

void WriteFull(int fd, const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) Die(absl::StrCat("write: ", std::strerror(errno)));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

std::optional<ClientCommand> NextCommand(uint64_t max_size) {
  std::string line;
  for (;;) {
    char c;
    const ssize_t r = ::read(0, &c, 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return std::nullopt;
    if (c == '\n') break;
    line.push_back(c);
  }
  ClientCommand cmd;
  cmd.size = 64;
  if (line == "ping") return cmd;
  if (line == "ping_sleep") {
    cmd.kind = ClientCommand::kPingSleep;
    return cmd;
  }
  unsigned long long size = 0;
  int batched = 0;
  char mode[8] = "";
  char extra = 0;
  if (std::sscanf(line.c_str(), "ping %llu %c", &size, &extra) == 1 && size > 0 && size <= max_size) {
    cmd.size = size;
    return cmd;
  }
  const int fields = std::sscanf(line.c_str(), "thru %llu %d %7s %c", &size, &batched, mode, &extra);
  const std::string send = fields >= 3 ? mode : "copy";
  if ((fields == 2 || fields == 3) && size > 0 && size <= max_size && (send == "loan" || send == "copy")) {
    cmd.kind = ClientCommand::kThroughput;
    cmd.size = size;
    cmd.batched = batched != 0;
    cmd.loan = send == "loan";
    return cmd;
  }
  Die(absl::StrCat("bad command '", line, "' (sizes up to ", max_size, " bytes)"));
}

namespace {
sockaddr_un UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) Die(absl::StrCat("socket path too long: ", path));
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}
}  // namespace

int UnixListen(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(absl::StrCat("socket: ", std::strerror(errno)));
  ::unlink(path.c_str());
  sockaddr_un addr = UnixAddress(path);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 4) != 0) {
    Die(absl::StrCat("bind/listen ", path, ": ", std::strerror(errno)));
  }
  return fd;
}

int UnixAccept(int listen_fd) {
  for (;;) {
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    if (errno != EINTR) Die(absl::StrCat("accept: ", std::strerror(errno)));
  }
}

int UnixConnect(const std::string& path, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) Die(absl::StrCat("socket: ", std::strerror(errno)));
    sockaddr_un addr = UnixAddress(path);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) return fd;
    const int err = errno;
    ::close(fd);
    if (absl::Now() >= deadline) Die(absl::StrCat("connect ", path, ": ", std::strerror(err)));
    absl::SleepFor(absl::Milliseconds(5));
  }
}

int64_t ProcessCpuTicks(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat;
  if (!std::getline(in, stat)) return -1;
  // Fields after the command name (which is in parentheses and may hold
  // spaces): state is field 3, utime 14, stime 15.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  int64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {
    if (i == 14) utime = std::strtoll(field.c_str(), nullptr, 10);
    if (i == 15) stime = std::strtoll(field.c_str(), nullptr, 10);
  }
  return utime + stime;
}

int64_t ClockTicksPerSecond() { return ::sysconf(_SC_CLK_TCK); }

std::map<std::string, int64_t> ThreadCpuNsByName(pid_t pid) {
  std::map<std::string, int64_t> by_name;
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return by_name;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream comm(absl::StrCat(dir, "/", e->d_name, "/comm"));
    std::ifstream schedstat(absl::StrCat(dir, "/", e->d_name, "/schedstat"));
    std::string name;
    int64_t ns = 0;
    if (std::getline(comm, name) && (schedstat >> ns)) by_name[name] += ns;
  }
  ::closedir(d);
  return by_name;
}

std::string SelfExe() {
  char buf[4096];
  const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) Die("readlink /proc/self/exe failed");
  return std::string(buf, static_cast<size_t>(n));
}

MemfdResident MemfdResidentOf(const std::vector<pid_t>& pids) {
  MemfdResident total;
  std::map<std::pair<std::string, uint64_t>, uint64_t> rss_by_memfd;  // (device, inode) -> largest Rss
  for (pid_t pid : pids) {
    std::ifstream smaps(absl::StrCat("/proc/", pid, "/smaps"));
    std::string line;
    bool in_memfd = false;  // the current mapping is of a memfd
    std::pair<std::string, uint64_t> key;
    while (std::getline(smaps, line)) {
      // A mapping's header: "start-end perms offset dev inode [path]";
      // its fields follow, one "Name:  value kB" per line.
      char range[64], perms[8], offset[32], dev[32];
      unsigned long long inode = 0;
      int path_at = 0;
      if (std::sscanf(line.c_str(), "%63s %7s %31s %31s %llu %n", range, perms, offset, dev, &inode, &path_at) ==
              5 &&
          std::strchr(range, '-') != nullptr) {
        in_memfd = absl::StartsWith(absl::string_view(line).substr(path_at), "/memfd:");
        key = {dev, inode};
        if (in_memfd) ++total.mappings;
        continue;
      }
      if (!in_memfd) continue;
      unsigned long long kb = 0;
      if (std::sscanf(line.c_str(), "Rss: %llu kB", &kb) == 1) {
        uint64_t& rss = rss_by_memfd[key];
        rss = std::max<uint64_t>(rss, kb * 1024);
      } else if (std::sscanf(line.c_str(), "Pss: %llu kB", &kb) == 1) {
        total.pss_bytes += kb * 1024;
      }
    }
  }
  for (const auto& [memfd, rss] : rss_by_memfd) total.rss_bytes += rss;
  total.memfds = rss_by_memfd.size();
  return total;
}

// ------------------------------------------------------------------ Child

Child Child::Spawn(const std::vector<std::string>& args) { return SpawnExe(SelfExe(), args); }

Child Child::SpawnExe(const std::string& exe, const std::vector<std::string>& args) {
  int in_pipe[2], out_pipe[2];
  if (::pipe2(in_pipe, O_CLOEXEC) != 0 || ::pipe2(out_pipe, O_CLOEXEC) != 0) {
    Die(absl::StrCat("pipe: ", std::strerror(errno)));
  }
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(exe.c_str()));
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) Die(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // A benchmark child must not outlive the orchestrator (spinning ones
    // would burn a core forever).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(in_pipe[0], 0);
    ::dup2(out_pipe[1], 1);
    ::execv(exe.c_str(), argv.data());
    std::_Exit(127);
  }
  ::close(in_pipe[0]);
  ::close(out_pipe[1]);
  return Child(pid, in_pipe[1], out_pipe[0]);
}

Child::Child(Child&& other) noexcept
    : pid_(other.pid_),
      in_fd_(other.in_fd_),
      out_fd_(other.out_fd_),
      buffer_(std::move(other.buffer_)),
      eof_(other.eof_) {
  other.pid_ = -1;
  other.in_fd_ = other.out_fd_ = -1;
}

Child::~Child() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (in_fd_ >= 0) ::close(in_fd_);
  if (out_fd_ >= 0) ::close(out_fd_);
}

bool Child::Poll() {
  if (buffer_.find('\n') != std::string::npos) return true;
  while (!eof_) {
    char chunk[4096];
    pollfd p{out_fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    const ssize_t n = ::read(out_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      break;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
    if (buffer_.find('\n') != std::string::npos) return true;
  }
  return buffer_.find('\n') != std::string::npos;
}

std::optional<std::string> Child::ReadLine(absl::Time deadline) {
  for (;;) {
    const size_t nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (eof_) return std::nullopt;
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return std::nullopt;
    pollfd p{out_fd_, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::read(out_fd_, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      continue;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

std::string Child::WaitFor(absl::string_view prefix, absl::Time deadline, const std::string& what,
                           std::vector<std::string>* rows) {
  for (;;) {
    std::optional<std::string> line = ReadLine(deadline);
    if (!line.has_value()) {
      Die(absl::StrCat(what, ": child ", pid_, " ended or timed out before '", prefix, "'"));
    }
    if (absl::StartsWith(*line, prefix)) return *line;
    if (rows != nullptr && line->rfind("ROW ", 0) == 0) rows->push_back(*line);
  }
}

void Child::WriteLine(const std::string& line) {
  if (in_fd_ < 0) Die("WriteLine after CloseStdin");
  const std::string with_newline = line + "\n";
  WriteFull(in_fd_, with_newline.data(), with_newline.size());
}

void Child::CloseStdin() {
  if (in_fd_ >= 0) {
    ::close(in_fd_);
    in_fd_ = -1;
  }
}

int Child::Finish(absl::Duration timeout) {
  CloseStdin();
  if (pid_ <= 0) return 0;
  const absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  for (;;) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (absl::Now() >= deadline) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      break;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  pid_ = -1;
  return status;
}

void Progress(const std::string& what) {
  std::fprintf(stderr, "shmesh_bench: %s\n", what.c_str());
}

std::string MakeDir(const std::string& parent, const std::string& name) {
  const std::string dir = parent + "/" + name;
  if (::mkdir(dir.c_str(), 0700) != 0) Die(absl::StrCat("mkdir ", dir, " failed"));
  return dir;
}

}  // namespace shmesh_bench
