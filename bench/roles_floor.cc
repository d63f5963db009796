// The floor row: one cache line bounced between two processes pinned to
// different CPUs, through a shared memfd mapping. Nothing is cheaper for
// any shared-memory transport between those CPUs, so every latency row's
// p50 is also printed as a multiple of this one (compare.h), and runs on
// different vCPU placements compare.
//
// Protocol, per round trip i = 1, 2, ...: A (the measuring client, CPU 0)
// stores 2i-1 into the line's counter and spins until it reads 2i; B
// (forked once, CPU 1) spins until it reads 2i-1 and stores 2i. One-way
// latency = round trip / 2, p50/p99/p99.9, with the sample counts of the
// other shared-memory rows. Both spin with the CPU pause the ring's
// busy-poll uses (ringbuf::CpuRelax). Between commands B sleeps in read()
// on a pipe that carries each command's round-trip count, so no process
// spins while other rows measure.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <new>
#include <optional>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/unique_fd.h"
#include "bench/harness.h"
#include "bench/roles.h"
#include "ringbuf/region.h"
#include "ringbuf/wait.h"

namespace shmesh_bench {
namespace {

// The shared page: the counter alone on its cache line (and the next one,
// which the adjacent-line prefetcher pairs with it, left empty).
//
//   offset  size  field                    written by      read by
//        0     8  counter (atomic u64)     A (odd), B (even)  both
//        8   120  reserved
struct alignas(128) FloorLine {
  std::atomic<uint64_t> counter{0};
  char reserved[120];
};
static_assert(std::is_standard_layout_v<FloorLine>);
static_assert(sizeof(FloorLine) == 128);
static_assert(offsetof(FloorLine, counter) == 0);
static_assert(std::atomic<uint64_t>::is_always_lock_free);

constexpr size_t kRegionBytes = 4096;

// B: answers `total` round trips.
void Echo(FloorLine& line, uint64_t total) {
  for (uint64_t i = 1; i <= total; ++i) {
    // [floor] acquire pairs with A's release store of 2i-1: what A wrote
    // before it would be visible to B, as it must be for a message; on x86
    // both are plain moves, so the row measures the cache-line transfer.
    while (line.counter.load(std::memory_order_acquire) != 2 * i - 1) ringbuf::CpuRelax();
    // [floor-back] release pairs with A's acquire load of 2i.
    line.counter.store(2 * i, std::memory_order_release);
  }
}

// B: reads the number of round trips of each command from `commands`
// (blocking, so it sleeps between commands) and answers them; returns at
// EOF.
void EchoLoop(FloorLine& line, int commands) {
  for (;;) {
    uint64_t total = 0;
    const ssize_t n = ::read(commands, &total, sizeof(total));
    if (n < 0 && errno == EINTR) continue;
    if (n != static_cast<ssize_t>(sizeof(total))) return;
    Echo(line, total);
  }
}

}  // namespace

int FloorRole(const RoleConfig& config) {
  absl::StatusOr<ringbuf::SharedRegion> region = ringbuf::SharedRegion::Create("shmesh-bench-floor", kRegionBytes);
  Check(region.status(), "floor: create the shared page");
  // The memfd is zero-filled; the object is created once, here, before the
  // fork, and lives as long as the region (whose mapping the child shares).
  FloorLine& line = *new (region->data()) FloorLine;
  int ends[2];
  if (::pipe2(ends, O_CLOEXEC) != 0) Die("floor: pipe2 failed");
  base::UniqueFd command_in(ends[0]);
  base::UniqueFd command_out(ends[1]);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) Die("floor: fork failed");
  if (pid == 0) {
    // A spinning echo must not outlive its client.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    PinToCpu(1);
    command_out.reset();
    EchoLoop(line, command_in.get());
    std::_Exit(0);
  }
  command_in.reset();
  PinToCpu(0);
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind != ClientCommand::kPing) Die("floor: latency only (ping)");
    const uint64_t total = config.warmup + config.samples;
    // relaxed: B is asleep in read(); the pipe write below orders this
    // store before B's next load.
    line.counter.store(0, std::memory_order_relaxed);
    WriteFull(command_out.get(), &total, sizeof(total));
    std::vector<int64_t> one_way;
    one_way.reserve(config.samples);
    for (uint64_t i = 1; i <= total; ++i) {
      const int64_t t0 = NowNs();
      // [floor] release: pairs with B's acquire load of 2i-1.
      line.counter.store(2 * i - 1, std::memory_order_release);
      // [floor-back] acquire: pairs with B's release store of 2i.
      for (uint32_t spins = 1; line.counter.load(std::memory_order_acquire) != 2 * i; ++spins) {
        ringbuf::CpuRelax();
        // B died: do not spin forever. Checked rarely (a syscall).
        if (spins % (1u << 22) == 0 && ::waitpid(pid, nullptr, WNOHANG) == pid) {
          Die(absl::StrCat("floor: the echo process ended at round trip ", i, " of ", total));
        }
      }
      const int64_t t1 = NowNs();
      if (i > config.warmup) one_way.push_back((t1 - t0) / 2);
    }
    const Percentiles pc = ComputePercentiles(one_way);
    Emit(RowLine("floor", 64, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
    Emit("OK");
  }
  command_out.reset();  // B's read() sees EOF and it exits
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    Die("floor: the echo process failed");
  }
  return 0;
}

}  // namespace shmesh_bench
