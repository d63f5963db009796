// Eclipse iceoryx (Debian's 2.0.3) carrying the traffic of the shmesh rows,
// for comparison: rows iox_copy and iox_zero_copy, and the role that runs
// iceoryx's daemon, RouDi, for them.
//
// Processes. The guard (IoxRoudiRole, --role=iox_roudi) runs `iox-roudi -c
// CONFIG` (bench/iceoryx_roudi.toml) and prints READY once RouDi accepts
// clients, or "FAILED <why>" and exits. Then it waits for its stdin to
// close, which happens when the orchestrator finishes it or dies in any
// way (the guard outlives it on purpose), and stops RouDi: SIGTERM (RouDi
// then removes its shared memory and sockets), SIGKILL after 10 s, and
// removes whatever is left. Per mode, a server (IoxServerRole, CPU 1) and
// the measuring client (IoxClientRole, CPU 0) are iceoryx runtimes.
//
// Topics: service "shmesh_bench", instance = the row name, one publisher
// and one subscriber each:
//   cmd        client -> server  a Command (harness.h) per test
//   ping/pong  client -> server -> client: the 64 B ping-pong
//   data_64k, data_1m, data_8m   client -> server: throughput payloads of up
//              to 64 KiB, 1 MiB and 8 MiB, subscriber queues of 256, 32 and
//              8 chunks (iceoryx_roudi.toml has the chunks for them)
//   ack        server -> client  Ack{count} after the end message
// Reliability: every subscriber's queueFullPolicy is BLOCK_PRODUCER and
// every publisher's subscriberTooSlowPolicy WAIT_FOR_CONSUMER, so a full
// queue makes publish() wait (iceoryx yields in a loop) instead of dropping
// the oldest chunk, as a full shmesh ring makes Send wait. The server counts
// what it took; the client dies unless that is what it sent.
//
// Modes (--policy). copy: the publisher copies the payload into a loaned
// chunk and publishes it; the subscriber copies the sample (its
// userPayloadSize bytes) into its own buffer, then releases it. zero_copy:
// loan, write one byte, publish; take, read one byte, release. Both sides
// busy-poll take() with a CPU pause, as the spinning shmesh rows do; the
// server sleeps in a WaitSet between tests.
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "bench/harness.h"
#include "bench/roles.h"
#include "iceoryx_hoofs/internal/units/duration.hpp"
#include "iceoryx_hoofs/log/logmanager.hpp"
#include "iceoryx_posh/mepoo/chunk_header.hpp"
#include "iceoryx_posh/popo/untyped_publisher.hpp"
#include "iceoryx_posh/popo/untyped_subscriber.hpp"
#include "iceoryx_posh/popo/wait_set.hpp"
#include "iceoryx_posh/runtime/posh_runtime.hpp"
#include "ringbuf/wait.h"

// Defined with the orchestrator's flags (compare.cc), which passes them on.
ABSL_DECLARE_FLAG(std::string, iox_roudi);
ABSL_DECLARE_FLAG(std::string, iox_roudi_config);

namespace shmesh_bench {
namespace {

using iox::popo::UntypedPublisher;
using iox::popo::UntypedSubscriber;

enum class Mode { kCopy, kZeroCopy };

Mode ModeFor(const std::string& policy) {
  if (policy == "copy") return Mode::kCopy;
  if (policy == "zero_copy") return Mode::kZeroCopy;
  Die(absl::StrCat("iceoryx roles: unknown --policy '", policy, "' (copy or zero_copy)"));
}

constexpr char kService[] = "shmesh_bench";
// Runtime names start with this (RouDi makes /tmp/<name> a socket of each).
constexpr char kRuntimePrefix[] = "shb-iox-";
// The largest payload; iceoryx_roudi.toml's largest mempool.
constexpr uint64_t kMaxIoxPayload = uint64_t{8} << 20;
// A test that has not finished after this long has lost its peer.
constexpr int64_t kTestTimeoutNs = int64_t{120} * 1000 * 1000 * 1000;

// The data topics: the largest payload of each and its subscriber queue.
struct DataTopic {
  const char* event;
  uint64_t max_size;
  uint64_t queue;
};
constexpr DataTopic kDataTopics[] = {
    {"data_64k", uint64_t{64} << 10, 256}, {"data_1m", uint64_t{1} << 20, 32}, {"data_8m", kMaxIoxPayload, 8}};
constexpr size_t kDataTopicCount = sizeof(kDataTopics) / sizeof(kDataTopics[0]);
// Queue of the cmd, ping, pong and ack topics (at most one message waits).
constexpr uint64_t kSmallQueue = 4;

size_t DataTopicFor(uint64_t size) {
  for (size_t i = 0; i < kDataTopicCount; ++i) {
    if (size <= kDataTopics[i].max_size) return i;
  }
  Die(absl::StrCat("iceoryx roles: payload of ", size, " bytes is over the largest, ", kMaxIoxPayload));
}

iox::capro::ServiceDescription Topic(const std::string& row, const char* event) {
  return iox::capro::ServiceDescription(iox::capro::IdString_t(iox::cxx::TruncateToCapacity, kService),
                                        iox::capro::IdString_t(iox::cxx::TruncateToCapacity, row.c_str()),
                                        iox::capro::IdString_t(iox::cxx::TruncateToCapacity, event));
}

std::unique_ptr<UntypedPublisher> MakePublisher(const std::string& row, const char* event) {
  iox::popo::PublisherOptions options;
  options.historyCapacity = 0;
  // Wait while a subscriber's queue is full (with BLOCK_PRODUCER there).
  options.subscriberTooSlowPolicy = iox::popo::ConsumerTooSlowPolicy::WAIT_FOR_CONSUMER;
  return std::make_unique<UntypedPublisher>(Topic(row, event), options);
}

std::unique_ptr<UntypedSubscriber> MakeSubscriber(const std::string& row, const char* event, uint64_t queue) {
  iox::popo::SubscriberOptions options;
  options.queueCapacity = queue;
  options.historyRequest = 0;
  options.queueFullPolicy = iox::popo::QueueFullPolicy::BLOCK_PRODUCER;
  return std::make_unique<UntypedSubscriber>(Topic(row, event), options);
}

void InitRuntime(const std::string& row, const char* side) {
  // Debian's build logs every registration at debug level: warnings only,
  // before the first logger is made.
  iox::log::LogManager::GetLogManager().SetDefaultLogLevel(iox::log::LogLevel::kWarn,
                                                           iox::log::LogLevelOutput::kHideLogLevel);
  const std::string name = absl::StrCat(kRuntimePrefix, row, "-", side, "-", ::getpid());
  iox::runtime::PoshRuntime::initRuntime(iox::RuntimeName_t(iox::cxx::TruncateToCapacity, name.c_str()));
}

// A chunk for `size` payload bytes from `publisher`.
// Errors: RESOURCE_EXHAUSTED when no mempool has a free chunk that large.
absl::StatusOr<char*> Loan(UntypedPublisher& publisher, uint64_t size) {
  auto chunk = publisher.loan(static_cast<uint32_t>(size));
  if (chunk.has_error()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "iceoryx could not loan a chunk for ", size, " bytes (", iox::popo::asStringLiteral(chunk.get_error()),
        "): bench/iceoryx_roudi.toml needs a mempool at least that large with free chunks; raise its count"));
  }
  return static_cast<char*>(chunk.value());
}

// Busy-polls `subscriber` (with a CPU pause) for its next sample until
// `deadline_ns` (NowNs). The caller releases the sample.
// Errors: DEADLINE_EXCEEDED naming `what`; INTERNAL if iceoryx refuses.
absl::StatusOr<const char*> TakeSpin(UntypedSubscriber& subscriber, int64_t deadline_ns, const char* what) {
  for (uint32_t spins = 1;; ++spins) {
    auto sample = subscriber.take();
    if (!sample.has_error()) return static_cast<const char*>(sample.value());
    if (sample.get_error() != iox::popo::ChunkReceiveResult::NO_CHUNK_AVAILABLE) {
      return absl::InternalError(
          absl::StrCat("iceoryx take() of the ", what, " failed: ", iox::popo::asStringLiteral(sample.get_error())));
    }
    ringbuf::CpuRelax();
    if (spins % 1024 == 0 && NowNs() > deadline_ns) {
      return absl::DeadlineExceededError(absl::StrCat("no ", what, " from the iceoryx peer in ",
                                                      kTestTimeoutNs / 1000000000, " s: did it or iox-roudi die?"));
    }
  }
}

uint32_t PayloadSize(const char* sample) { return iox::mepoo::ChunkHeader::fromUserPayload(sample)->userPayloadSize(); }

// Loans a chunk and publishes `size` bytes from `data` (copy) or only its
// first byte (zero copy).
absl::Status Publish(UntypedPublisher& publisher, Mode mode, const char* data, uint64_t size) {
  SHMESH_ASSIGN_OR_RETURN(char* chunk, Loan(publisher, size));
  if (mode == Mode::kCopy) {
    std::memcpy(chunk, data, size);
  } else {
    chunk[0] = data[0];
  }
  publisher.publish(chunk);
  return absl::OkStatus();
}

// Takes the next sample, copies it into `sink` (copy) or reads its first
// byte (zero copy), releases it and returns that first byte.
absl::StatusOr<char> Consume(UntypedSubscriber& subscriber, Mode mode, std::vector<char>& sink, int64_t deadline_ns,
                             const char* what) {
  SHMESH_ASSIGN_OR_RETURN(const char* sample, TakeSpin(subscriber, deadline_ns, what));
  char first;
  if (mode == Mode::kCopy) {
    const uint32_t size = PayloadSize(sample);
    if (size == 0 || size > sink.size()) {
      subscriber.release(sample);
      return absl::InternalError(absl::StrCat("iceoryx delivered a ", what, " of ", size, " bytes"));
    }
    std::memcpy(sink.data(), sample, size);
    first = sink[0];
  } else {
    first = sample[0];
  }
  subscriber.release(sample);
  return first;
}

template <typename T>
absl::Status PublishStruct(UntypedPublisher& publisher, const T& value) {
  SHMESH_ASSIGN_OR_RETURN(char* chunk, Loan(publisher, sizeof(T)));
  std::memcpy(chunk, &value, sizeof(T));
  publisher.publish(chunk);
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> ReadStruct(UntypedSubscriber& subscriber, const char* sample, const char* what) {
  T value;
  const uint32_t size = PayloadSize(sample);
  if (size == sizeof(T)) std::memcpy(&value, sample, sizeof(T));
  subscriber.release(sample);
  if (size != sizeof(T)) {
    return absl::InternalError(absl::StrCat("iceoryx delivered a ", what, " of ", size, " bytes, not ", sizeof(T)));
  }
  return value;
}

// Waits until every subscriber is connected to its publisher and every
// publisher has its subscriber. RouDi connects them in its discovery loop.
// Errors: DEADLINE_EXCEEDED after `timeout`.
absl::Status WaitConnected(const std::vector<UntypedSubscriber*>& subscribers,
                           const std::vector<UntypedPublisher*>& publishers, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    bool all = true;
    for (UntypedSubscriber* s : subscribers) all &= s->getSubscriptionState() == iox::SubscribeState::SUBSCRIBED;
    for (UntypedPublisher* p : publishers) all &= p->hasSubscribers();
    if (all) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("the iceoryx topics of the client and the server did not connect in ",
                       absl::FormatDuration(timeout), ": is the server up, and iox-roudi still running?"));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

// The next command from stdin, as NextCommand (harness.h) reads it but with
// payloads up to kMaxIoxPayload (NextCommand stops at 64 KiB); nullopt at
// EOF. Dies on a malformed line.
std::optional<ClientCommand> NextIoxCommand() {
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
  if (line == "ping") return cmd;
  unsigned long long size = 0;
  int batched = 0;
  if (std::sscanf(line.c_str(), "thru %llu %d", &size, &batched) == 2 && size > 0 && size <= kMaxIoxPayload &&
      batched == 0) {
    cmd.kind = ClientCommand::kThroughput;
    cmd.size = size;
    return cmd;
  }
  Die(absl::StrCat("iceoryx client: bad command '", line, "' (ping, or thru SIZE 0 with SIZE <= 8 MiB)"));
}

// True once stdin (the orchestrator's pipe) is at EOF; never blocks.
bool StdinClosed() {
  pollfd p{0, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return false;
  char c;
  return ::read(0, &c, 1) == 0;
}

void WaitForStdinEof() {
  char buf[256];
  for (;;) {
    const ssize_t r = ::read(0, buf, sizeof(buf));
    if (r == 0 || (r < 0 && errno != EINTR)) return;
  }
}

// ------------------------------------------------------------ RouDi

// Strips terminal color sequences (RouDi's log has them) and keeps the last
// `lines` lines of `text`.
std::string LastLines(const std::string& text, size_t lines) {
  std::string plain;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\x1b') {
      while (i < text.size() && text[i] != 'm') ++i;
      continue;
    }
    plain.push_back(text[i]);
  }
  std::vector<std::string> all = absl::StrSplit(plain, '\n', absl::SkipWhitespace());
  if (all.size() > lines) all.erase(all.begin(), all.end() - lines);
  return absl::StrJoin(all, " | ");
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One running iox-roudi, started by the guard. Move-only owner of the
// process: the destructor kills (SIGKILL) and reaps it if it still runs.
// Thread-compatible (the guard's main thread).
class RoudiProcess {
 public:
  // Runs `exe -c config -k 1` with stdout and stderr into `log_path`, in a
  // process group of its own (a Ctrl-C in the terminal stops the
  // orchestrator, and the guard then stops RouDi cleanly), killed if the
  // guard dies; waits until its log says it is ready for clients.
  // Errors: FAILED_PRECONDITION if `exe` or `config` is missing or RouDi
  // exits first (the message has its last log lines: another RouDi on the
  // machine holds its lock, say); DEADLINE_EXCEEDED after `timeout`; the
  // errno of a failing open or fork.
  static absl::StatusOr<RoudiProcess> Start(const std::string& exe, const std::string& config,
                                            const std::string& log_path, absl::Duration timeout) {
    if (::access(exe.c_str(), X_OK) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          exe, " is not an executable: install Debian's iceoryx package (./meshw setup) or pass --iox_roudi=PATH"));
    }
    if (::access(config.c_str(), R_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot read the RouDi config ", config, ": pass --iox_roudi_config=PATH"));
    }
    base::UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!log.valid()) return absl::ErrnoToStatus(errno, absl::StrCat("open RouDi's log ", log_path));
    base::UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null.valid()) return absl::ErrnoToStatus(errno, "open /dev/null for RouDi's stdin");
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    if (pid < 0) return absl::ErrnoToStatus(errno, "fork for iox-roudi");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      ::setpgid(0, 0);
      ::signal(SIGINT, SIG_DFL);
      ::dup2(null.get(), 0);
      ::dup2(log.get(), 1);
      ::dup2(log.get(), 2);
      const char* argv[] = {exe.c_str(), "-c", config.c_str(), "-k", "1", nullptr};
      ::execv(exe.c_str(), const_cast<char* const*>(argv));
      std::_Exit(127);
    }
    RoudiProcess roudi(pid);
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      const std::string text = ReadFile(log_path);
      if (absl::StrContains(text, "RouDi is ready for clients")) return roudi;
      int status = 0;
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        roudi.pid_ = -1;
        return absl::FailedPreconditionError(
            absl::StrCat(exe, WIFSIGNALED(status) ? " died of signal " : " exited with status ",
                         WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
                         " before it was ready; its log ends: ", LastLines(text, 3),
                         " (if another RouDi runs on this machine, stop it, or leave the iox rows out: --only)"));
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(absl::StrCat(exe, " was not ready for clients after ",
                                                        absl::FormatDuration(timeout),
                                                        "; its log ends: ", LastLines(text, 3)));
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }

  RoudiProcess(RoudiProcess&& other) noexcept : pid_(std::exchange(other.pid_, -1)) {}
  RoudiProcess& operator=(RoudiProcess&&) = delete;
  RoudiProcess(const RoudiProcess&) = delete;
  RoudiProcess& operator=(const RoudiProcess&) = delete;
  ~RoudiProcess() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // SIGTERM (RouDi then tells its clients, removes its shared memory and
  // sockets and exits), SIGKILL after `timeout`. True if it had to be
  // killed.
  bool Stop(absl::Duration timeout) {
    if (pid_ <= 0) return false;
    ::kill(pid_, SIGTERM);
    const absl::Time deadline = absl::Now() + timeout;
    bool killed = false;
    while (::waitpid(pid_, nullptr, WNOHANG) != pid_) {
      if (absl::Now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
        killed = true;
        break;
      }
      absl::SleepFor(absl::Milliseconds(5));
    }
    pid_ = -1;
    return killed;
  }

 private:
  explicit RoudiProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;  // owned child process, or -1
};

// Removes what iox-roudi 2.0 leaves when it cannot stop cleanly: its shared
// memory (/dev/shm/iceoryx_mgmt and the data segment, named after the group
// RouDi runs as), its socket and lock files in /tmp, and the sockets and
// lock files of the bench's runtimes (/tmp/shb-iox-*; a runtime removes
// its own when it ends cleanly). Only called after this guard's RouDi ran:
// holding RouDi's lock, it owned them. Returns the paths removed.
std::vector<std::string> RemoveIceoryxLeftovers() {
  std::vector<std::string> paths = {"/dev/shm/iceoryx_mgmt", "/tmp/roudi", "/tmp/roudi.lock",
                                    "/tmp/iox-unique-roudi.lock"};
  if (const group* g = ::getgrgid(::getegid()); g != nullptr) paths.push_back(absl::StrCat("/dev/shm/", g->gr_name));
  if (DIR* d = ::opendir("/tmp")) {
    while (const dirent* e = ::readdir(d)) {
      if (absl::StartsWith(e->d_name, kRuntimePrefix)) paths.push_back(absl::StrCat("/tmp/", e->d_name));
    }
    ::closedir(d);
  }
  std::vector<std::string> removed;
  for (const std::string& path : paths) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) continue;
    if (absl::StartsWith(path, "/tmp/shb-iox-") && !S_ISSOCK(st.st_mode) && !absl::EndsWith(path, ".lock")) {
      continue;
    }
    if (::unlink(path.c_str()) == 0) removed.push_back(path);
  }
  return removed;
}

// ------------------------------------------------------------ pair

struct ServerPorts {
  std::unique_ptr<UntypedSubscriber> cmd, ping;
  std::unique_ptr<UntypedSubscriber> data[kDataTopicCount];
  std::unique_ptr<UntypedPublisher> pong, ack;
};

absl::Status ServePing(ServerPorts& ports, Mode mode, const Command& cmd, std::vector<char>& sink) {
  const int64_t deadline = NowNs() + kTestTimeoutNs;
  for (uint64_t i = 0; i < cmd.count; ++i) {
    SHMESH_ASSIGN_OR_RETURN(const char first, Consume(*ports.ping, mode, sink, deadline, "ping"));
    if (mode == Mode::kZeroCopy) sink[0] = first;
    SHMESH_RETURN_IF_ERROR(Publish(*ports.pong, mode, sink.data(), cmd.size));
  }
  return absl::OkStatus();
}

absl::Status ServeThroughput(ServerPorts& ports, Mode mode, const Command& cmd, std::vector<char>& sink) {
  UntypedSubscriber& data = *ports.data[DataTopicFor(cmd.size)];
  const int64_t deadline = NowNs() + kTestTimeoutNs;
  Ack ack;
  for (;;) {
    SHMESH_ASSIGN_OR_RETURN(const char first, Consume(data, mode, sink, deadline, "data message"));
    if (first == kEndByte) break;
    ++ack.count;
  }
  if (data.hasMissedData()) {
    std::fprintf(stderr, "shmesh_bench: iceoryx reports chunks lost on a BLOCK_PRODUCER queue\n");
  }
  return PublishStruct(*ports.ack, ack);
}

struct ClientPorts {
  std::unique_ptr<UntypedPublisher> cmd, ping;
  std::unique_ptr<UntypedPublisher> data[kDataTopicCount];
  std::unique_ptr<UntypedSubscriber> pong, ack;
};

// Payloads of one size (first byte: the kind, harness.h).
struct Payloads {
  explicit Payloads(size_t size) : ping(size, 'x'), data(size, 'x'), end(size, 'x') {
    ping[0] = kPingByte;
    data[0] = kDataByte;
    end[0] = kEndByte;
  }
  std::string ping, data, end;
};

absl::Status SendCommand(ClientPorts& ports, Op op, uint64_t size, uint64_t count) {
  Command cmd;
  cmd.op = op;
  cmd.size = size;
  cmd.count = count;
  return PublishStruct(*ports.cmd, cmd);
}

absl::Status RunPing(ClientPorts& ports, Mode mode, const RoleConfig& config, const std::string& row,
                     std::vector<char>& sink) {
  const Payloads p(64);
  const uint64_t total = config.warmup + config.samples;
  SHMESH_RETURN_IF_ERROR(SendCommand(ports, Op::kPing, 64, total));
  std::vector<int64_t> one_way;
  one_way.reserve(config.samples);
  const int64_t deadline = NowNs() + kTestTimeoutNs;
  for (uint64_t i = 0; i < total; ++i) {
    const int64_t t0 = NowNs();
    SHMESH_RETURN_IF_ERROR(Publish(*ports.ping, mode, p.ping.data(), 64));
    SHMESH_ASSIGN_OR_RETURN(const char first, Consume(*ports.pong, mode, sink, deadline, "pong"));
    const int64_t t1 = NowNs();
    if (first != kPingByte) return absl::InternalError("iceoryx client: the pong is not the ping");
    if (i >= config.warmup) one_way.push_back((t1 - t0) / 2);
  }
  const Percentiles pc = ComputePercentiles(one_way);
  Emit(RowLine(row, 64, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
  return absl::OkStatus();
}

// Streams `size`-byte messages for `duration_ns`, then the end message,
// and waits for the server's count. Returns the messages sent and the time
// from the first send to the ack.
// Errors: DATA_LOSS if the server took another count; those of Publish
// and TakeSpin.
absl::StatusOr<std::pair<uint64_t, int64_t>> Stream(ClientPorts& ports, Mode mode, const RoleConfig& config,
                                                    uint64_t size, int64_t duration_ns) {
  UntypedPublisher& data = *ports.data[DataTopicFor(size)];
  const Payloads p(size);
  SHMESH_RETURN_IF_ERROR(SendCommand(ports, Op::kThroughput, size, 0));
  uint64_t sent = 0;
  const int64_t t0 = NowNs();
  const int64_t end_at = t0 + duration_ns;
  do {
    for (int k = 0; k < config.batch; ++k) SHMESH_RETURN_IF_ERROR(Publish(data, mode, p.data.data(), size));
    sent += config.batch;
  } while (NowNs() < end_at);
  SHMESH_RETURN_IF_ERROR(Publish(data, mode, p.end.data(), size));
  SHMESH_ASSIGN_OR_RETURN(const char* sample, TakeSpin(*ports.ack, NowNs() + kTestTimeoutNs, "ack"));
  SHMESH_ASSIGN_OR_RETURN(const Ack ack, ReadStruct<Ack>(*ports.ack, sample, "ack"));
  const int64_t t1 = NowNs();
  if (ack.magic != kAckMagic || ack.count != sent) {
    return absl::DataLossError(absl::StrCat("the iceoryx server took ", ack.count, " of the ", sent, " messages of ",
                                            size, " bytes (BLOCK_PRODUCER / WAIT_FOR_CONSUMER should lose none)"));
  }
  return std::make_pair(sent, t1 - t0);
}

// One throughput repetition. The first one of each size is preceded by an
// unmeasured one: each process's first touch of a chunk page-faults its
// pages in (2048 per 8 MiB chunk, in both processes), a cost a shmesh ring,
// reused from the first message on, pays once at its start.
absl::Status RunThroughput(ClientPorts& ports, Mode mode, const RoleConfig& config, const std::string& row,
                           uint64_t size, std::set<uint64_t>& warm) {
  const int64_t duration_ns = config.duration_ms * 1000000;
  if (warm.insert(size).second) SHMESH_RETURN_IF_ERROR(Stream(ports, mode, config, size, duration_ns).status());
  SHMESH_ASSIGN_OR_RETURN(const auto result, Stream(ports, mode, config, size, duration_ns));
  const auto [sent, ns] = result;
  const double seconds = static_cast<double>(ns) / 1e9;
  Emit(RowLine(row, size, {{"msgs_per_s", sent / seconds}, {"gb_per_s", sent * size / seconds / 1e9}}));
  return absl::OkStatus();
}

}  // namespace

int IoxRoudiRole(const RoleConfig& config) {
  // Outlive the orchestrator (Child sets PR_SET_PDEATHSIG) and its Ctrl-C:
  // however it ends, stdin then reaches EOF and RouDi is stopped cleanly.
  ::prctl(PR_SET_PDEATHSIG, 0);
  ::signal(SIGINT, SIG_IGN);
  absl::StatusOr<RoudiProcess> roudi =
      RoudiProcess::Start(absl::GetFlag(FLAGS_iox_roudi), absl::GetFlag(FLAGS_iox_roudi_config),
                          config.run_dir + "/roudi.log", absl::Seconds(20));
  if (!roudi.ok()) {
    Emit(absl::StrCat("FAILED ", roudi.status().message()));
    return 1;
  }
  Emit("READY");
  WaitForStdinEof();
  const bool killed = roudi->Stop(absl::Seconds(10));
  const std::vector<std::string> removed = RemoveIceoryxLeftovers();
  if (killed || !removed.empty()) {
    std::fprintf(stderr, "shmesh_bench: iox-roudi %s; removed what it left: %s\n",
                 killed ? "did not stop in 10 s after SIGTERM and was killed" : "stopped",
                 removed.empty() ? "nothing" : absl::StrJoin(removed, " ").c_str());
  }
  return 0;
}

int IoxServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  const Mode mode = ModeFor(config.policy);
  InitRuntime(config.name, "s");
  ServerPorts ports;
  ports.cmd = MakeSubscriber(config.name, "cmd", kSmallQueue);
  ports.ping = MakeSubscriber(config.name, "ping", kSmallQueue);
  for (size_t i = 0; i < kDataTopicCount; ++i) {
    ports.data[i] = MakeSubscriber(config.name, kDataTopics[i].event, kDataTopics[i].queue);
  }
  ports.pong = MakePublisher(config.name, "pong");
  ports.ack = MakePublisher(config.name, "ack");
  // Between tests: asleep until a command arrives (or 200 ms pass, to see
  // stdin close if the client died without sending kQuit).
  iox::popo::WaitSet<1> idle;
  if (idle.attachState(*ports.cmd, iox::popo::SubscriberState::HAS_DATA).has_error()) {
    Die("iceoryx server: cannot attach the cmd subscriber to a WaitSet");
  }
  std::vector<char> sink(kMaxIoxPayload);
  Emit("READY");  // the client waits for the topics to connect
  for (;;) {
    auto taken = ports.cmd->take();
    if (taken.has_error()) {
      (void)idle.timedWait(iox::units::Duration::fromMilliseconds(200));
      if (StdinClosed()) break;
      continue;
    }
    absl::StatusOr<Command> cmd = ReadStruct<Command>(*ports.cmd, static_cast<const char*>(taken.value()), "command");
    Check(cmd.status(), "iceoryx server: command");
    if (cmd->magic != kCommandMagic) Die("iceoryx server: bad command");
    if (cmd->op == Op::kQuit) break;
    if (cmd->op == Op::kPing) {
      Check(ServePing(ports, mode, *cmd, sink), "iceoryx server: ping-pong");
    } else if (cmd->op == Op::kThroughput) {
      Check(ServeThroughput(ports, mode, *cmd, sink), "iceoryx server: throughput");
    } else {
      Die("iceoryx server: unexpected command");
    }
  }
  idle.detachState(*ports.cmd, iox::popo::SubscriberState::HAS_DATA);
  return 0;
}

int IoxClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  const Mode mode = ModeFor(config.policy);
  const std::string& row = config.name;
  InitRuntime(row, "c");
  ClientPorts ports;
  ports.cmd = MakePublisher(row, "cmd");
  ports.ping = MakePublisher(row, "ping");
  for (size_t i = 0; i < kDataTopicCount; ++i) ports.data[i] = MakePublisher(row, kDataTopics[i].event);
  ports.pong = MakeSubscriber(row, "pong", kSmallQueue);
  ports.ack = MakeSubscriber(row, "ack", kSmallQueue);
  std::vector<UntypedPublisher*> publishers = {ports.cmd.get(), ports.ping.get()};
  for (auto& d : ports.data) publishers.push_back(d.get());
  Check(WaitConnected({ports.pong.get(), ports.ack.get()}, publishers, absl::Seconds(20)), "iceoryx client: connect");
  std::vector<char> sink(kMaxIoxPayload);
  std::set<uint64_t> warm;  // sizes streamed once already
  Emit("READY");
  while (std::optional<ClientCommand> command = NextIoxCommand()) {
    if (command->kind == ClientCommand::kPing) {
      Check(RunPing(ports, mode, config, row, sink), "iceoryx client: ping-pong");
    } else {
      Check(RunThroughput(ports, mode, config, row, command->size, warm), "iceoryx client: throughput");
    }
    Emit("OK");
  }
  Check(SendCommand(ports, Op::kQuit, 0, 0), "iceoryx client: quit");
  return 0;
}

}  // namespace shmesh_bench
