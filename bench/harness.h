// Shared pieces of shmesh_bench: the wire protocol every transport's
// benchmark speaks, timing and percentile helpers, CPU pinning, and the
// child-process plumbing the orchestrator uses. Benchmark code only: errors
// end the process with a message (Die), since a half-run benchmark has
// nothing useful to return.
//
// Protocol between a benchmark client and its server, the same over every
// message transport (ring, mesh, Unix socket, ZeroMQ; gRPC has its own RPCs):
//   client -> server: Command{op, size, count}
//   kPing:       `count` times: client sends `size` bytes, server echoes them.
//   kThroughput: client sends messages of `size` bytes whose first byte is
//                kDataByte, then one whose first byte is kEndByte; the
//                server copies every payload out and, on the end message,
//                replies Ack{count of data messages}.
//   kPingSleep:  as kPing, but both sides wait with WaitOptions::NoSpin()
//                (raw ring only): every message goes through a doorbell.
//   kPingLoan:   as kPing with mesh loans both ways (pool roles only): the
//                client loans `size` bytes, writes the first, sends; the
//                server answers each with a loan of its own.
//   kThroughputLoan: as kThroughput with loaned messages (pool roles
//                only): the server reads the first byte of each, in place,
//                and copies nothing.
//   kQuit:       server exits.
// The client times everything, on CLOCK_MONOTONIC.
//
// Thread contract: the free functions are thread-safe; Child is
// thread-compatible (the orchestrator's main thread owns it).
#ifndef SHMESH_BENCH_HARNESS_H_
#define SHMESH_BENCH_HARNESS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace shmesh_bench {

enum class Op : uint32_t {
  kPing = 1,
  kThroughput = 2,
  kQuit = 3,
  kPingSleep = 4,
  kPingLoan = 5,
  kThroughputLoan = 6,
};

inline constexpr uint32_t kCommandMagic = 0x424d4348;  // "HCMB"
struct Command {
  uint32_t magic = kCommandMagic;
  Op op = Op::kQuit;
  uint64_t size = 0;
  uint64_t count = 0;
};

inline constexpr uint64_t kAckMagic = 0x4b434153484d5348ULL;
struct Ack {
  uint64_t magic = kAckMagic;
  uint64_t count = 0;
};

inline constexpr char kDataByte = 'D';
inline constexpr char kEndByte = 'E';
inline constexpr char kPingByte = 'P';

// Messages larger than this are not benchmarked through rings and sockets
// (the 64 KiB row is the largest).
inline constexpr size_t kMaxPayload = 64 * 1024;
// The largest payload of the pool rows (mesh_loan, mesh_copy_big,
// mesh_loan_fanout_*), as of the iceoryx rows.
inline constexpr size_t kMaxPoolPayload = size_t{8} << 20;

[[noreturn]] void Die(const std::string& what);
// Dies with `what` unless `status` is OK. `what` is a literal: no string is
// built on the success path.
void Check(const absl::Status& status, const char* what);

// CLOCK_MONOTONIC in nanoseconds (vDSO, no syscall).
int64_t NowNs();

// CPUs this process may run on.
int AllowedCpus();
// Pins the calling process (and threads it creates later) to the `index`-th
// allowed CPU. No-op for index < 0 or when there are not that many CPUs.
void PinToCpu(int index);

struct Percentiles {
  double p50 = 0, p99 = 0, p999 = 0;
};
// Sorts `samples` and returns p50/p99/p99.9.
Percentiles ComputePercentiles(std::vector<int64_t>& samples);

// Writes one line to stdout and flushes it (the role -> orchestrator pipe).
void Emit(const std::string& line);

// A ROW line for the orchestrator: "ROW name payload key=value ...".
std::string RowLine(absl::string_view name, uint64_t payload,
                    const std::vector<std::pair<std::string, double>>& fields);

// Reads exactly `n` bytes (borrowed fd); dies on EOF or error.
void ReadFull(int fd, void* data, size_t n);
// Writes exactly `n` bytes (borrowed fd); dies on error.
void WriteFull(int fd, const void* data, size_t n);

// The measuring side of a pair reads commands from stdin, one per line, and
// answers each with ROW line(s) and then "OK":
//   ping               one repetition of the 64 B ping-pong
//   ping_sleep         the same with both sides sleeping on every message
//                      (only the raw ring role; others die)
//   ping SIZE          the same with SIZE-byte messages (pool roles)
//   thru SIZE BATCHED  one repetition of the throughput test (BATCHED: 1
//                      to send through the batch API, where there is one)
//   thru SIZE 0 loan   the same with loaned messages (pool roles); "copy"
//                      in place of "loan" says copied sends (the default)
// EOF on stdin ends it (it then tells its server to quit).
struct ClientCommand {
  enum Kind { kPing, kPingSleep, kThroughput } kind = kPing;
  uint64_t size = 0;  // kPing: 64 unless the line gave a size
  bool batched = false;
  bool loan = false;
};
// The next command from stdin, with sizes of 1 to `max_size` bytes;
// nullopt at EOF. Dies on a malformed line.
std::optional<ClientCommand> NextCommand(uint64_t max_size = kMaxPayload);

// Unix stream sockets for the uds benchmark (owned fds returned).
int UnixListen(const std::string& path);
int UnixAccept(int listen_fd);
int UnixConnect(const std::string& path, absl::Duration timeout);

// utime + stime of `pid` from /proc/<pid>/stat, in clock ticks; -1 if the
// process is gone.
int64_t ProcessCpuTicks(pid_t pid);
int64_t ClockTicksPerSecond();
// Nanoseconds on CPU of each thread of `pid`, summed by thread name (from
// /proc/<pid>/task/*/schedstat and comm): exact, where /proc/<pid>/stat
// counts clock ticks. Empty if the process is gone.
std::map<std::string, int64_t> ThreadCpuNsByName(pid_t pid);

// A child process: this binary re-executed with `args`, its stdin and
// stdout connected to pipes. Killed (SIGKILL) and reaped on destruction if
// still running.
class Child {
 public:
  static Child Spawn(const std::vector<std::string>& args);
  // The same for another executable.
  static Child SpawnExe(const std::string& exe, const std::vector<std::string>& args);
  Child(Child&& other) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();

  pid_t pid() const { return pid_; }
  // Writes `line` and a newline to the child's stdin.
  void WriteLine(const std::string& line);
  int stdout_fd() const { return out_fd_; }

  // The next line from the child's stdout, waiting until `deadline`;
  // nullopt on EOF or timeout.
  std::optional<std::string> ReadLine(absl::Time deadline);
  // Reads lines until one starts with `prefix` (returned). Lines starting
  // with "ROW " met on the way are appended to `rows` (if given). Dies on
  // EOF or timeout, naming `what`.
  std::string WaitFor(absl::string_view prefix, absl::Time deadline, const std::string& what,
                      std::vector<std::string>* rows = nullptr);
  // Appends whatever is complete in the buffer + what is readable now
  // (non-blocking); true if a line is available.
  bool Poll();
  // Closes the child's stdin: the "quit" signal for servers.
  void CloseStdin();
  // Closes the child's stdin (the "quit" signal for servers) and waits up to
  // `timeout` for it to exit; kills it otherwise. Returns the exit status.
  int Finish(absl::Duration timeout);

 private:
  Child(pid_t pid, int in_fd, int out_fd) : pid_(pid), in_fd_(in_fd), out_fd_(out_fd) {}
  pid_t pid_ = -1;
  int in_fd_ = -1;
  int out_fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

// Path of this executable (for re-executing roles).
std::string SelfExe();

// A progress line on stderr ("shmesh_bench: <what>").
void Progress(const std::string& what);
// Makes the directory `parent`/`name` (mode 0700) and returns its path;
// dies if it cannot.
std::string MakeDir(const std::string& parent, const std::string& name);

// The shared memory resident in `pids` through memfd mappings, from
// /proc/<pid>/smaps: each memfd (device, inode) counted once, with the
// largest Rss of any of its mappings (the pages some process touched);
// also the sum of Pss over all those mappings (each page shared by k of
// these processes counts 1/k in each). Processes that are gone count 0.
struct MemfdResident {
  uint64_t rss_bytes = 0;
  uint64_t pss_bytes = 0;
  size_t memfds = 0;
  size_t mappings = 0;
};
MemfdResident MemfdResidentOf(const std::vector<pid_t>& pids);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_HARNESS_H_
