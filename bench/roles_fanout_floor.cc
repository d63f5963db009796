// The fan-out floor rows: what this machine allows one publisher and N
// subscriber processes on shared memory, with nothing of shmesh but the
// idea, two ways:
//
//   fanout_floor_rings_<N>   one ring per subscriber (shmesh's layout: the
//                            publisher writes every message N times)
//   fanout_floor_shared_<N>  one ring for all N, a read cursor per
//                            subscriber (one write per message; the
//                            publisher waits for the slowest cursor)
//
// msgs/s and GB/s per subscriber, 64 B and 64 KiB, nothing pinned (as
// topic_fanout_<N>), from the first write to the last subscriber's end.
// No doorbells, envelopes or handlers: a frame is an 8-byte length and the
// payload, tails and cursors are published with release stores, and the
// subscribers copy each payload out (as fanout_sub does). An idle
// subscriber pauses for 5 us, then yields the CPU between polls (the
// receive thread's IdleWait), and never sleeps. So the pair of rows says
// what bounds topic_fanout_<N>: the rings row is the layout's ceiling, the
// shared row what one ring per publisher would allow.
//
// And beside them the real thing on the shared layout:
//
//   broadcast_ring_<N>       ringbuf::BroadcastProducer / BroadcastConsumer
//                            (broadcast.h): the same traffic with its copy-out
//                            and overwrite check, doorbells, and consumers
//                            that sleep after 50 us idle
//
// Per command "thru SIZE 0": the three rows, each with N subscriber
// processes forked for it (they exit at the end).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/harness.h"
#include "bench/roles.h"
#include "ringbuf/broadcast.h"
#include "ringbuf/region.h"
#include "ringbuf/wait.h"

namespace shmesh_bench {
namespace {

absl::StatusOr<base::UniqueFd> DupFd(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return absl::InternalError("dup failed");
  return base::UniqueFd(copy);
}

constexpr int64_t kPauseNs = 5'000;
constexpr uint64_t kHeaderBytes = 8;

// One counter alone on a 128-byte pair of lines (the adjacent-line
// prefetcher pairs them).
struct alignas(128) Counter {
  std::atomic<uint64_t> value{0};
};

// At the start of the shared region, then the rings' slots.
//   tails[r]     frames published in ring r (publisher)
//   end          total frames per subscriber, +1; 0 while running (publisher)
//   heads[i]     frames subscriber i has read (subscriber i)
//   finish[i]    NowNs() when subscriber i read the last frame (subscriber i)
template <int kMax>
struct Control {
  Counter tails[kMax];
  Counter end;
  Counter heads[kMax];
  Counter finish[kMax];
};
constexpr int kMaxSubscribers = 16;
using FanoutControl = Control<kMaxSubscribers>;

// Polls `ready` with the receive thread's idle policy: pause for kPauseNs,
// then yield between polls.
template <typename Ready>
void IdleUntil(Ready ready) {
  int64_t since = -1;
  while (!ready()) {
    if (since < 0) since = NowNs();
    if (NowNs() - since < kPauseNs) {
      ringbuf::CpuRelax();
    } else {
      sched_yield();
    }
  }
}

struct Layout {
  uint64_t slot_bytes;
  uint64_t slots;  // per ring
  int rings;
  char* base;      // the first ring's first slot
  char* Slot(int ring, uint64_t index) const {
    return base + (static_cast<uint64_t>(ring) * slots + index % slots) * slot_bytes;
  }
};

// Subscriber i: reads ring `ring` until the end marker, copying every
// payload out; checks each frame's length.
void Subscribe(FanoutControl& c, const Layout& l, int ring, int i, uint64_t size) {
  std::vector<char> sink(size);
  uint64_t head = 0;
  for (;;) {
    uint64_t tail = 0;
    // acquire: pairs with the publisher's release store of the tail; the
    // frames below it are written.
    IdleUntil([&] {
      tail = c.tails[ring].value.load(std::memory_order_acquire);
      // relaxed: `end` is only compared with our head; the frames it
      // counts are published by the tail store above.
      return tail != head || c.end.value.load(std::memory_order_relaxed) == head + 1;
    });
    if (tail == head) break;  // the end: every frame read
    for (; head < tail; ++head) {
      const char* frame = l.Slot(ring, head);
      uint64_t len = 0;
      std::memcpy(&len, frame, sizeof(len));
      if (len != size) Die(absl::StrCat("fanout_floor: frame ", head, " says ", len, " bytes"));
      std::memcpy(sink.data(), frame + kHeaderBytes, len);
    }
    // release: the publisher may reuse the slots below it once it sees it.
    c.heads[i].value.store(head, std::memory_order_release);
  }
  c.finish[i].value.store(NowNs(), std::memory_order_relaxed);
}

// Runs one measurement; returns msgs/s per subscriber.
double Measure(ringbuf::SharedRegion& region, int n, bool shared, uint64_t size, int64_t duration_ms,
               uint64_t ring_bytes) {
  auto& c = *new (region.data()) FanoutControl;  // zero-filled by the caller
  Layout l;
  l.slot_bytes = (kHeaderBytes + size + 7) / 8 * 8;
  l.slots = ring_bytes / l.slot_bytes;
  l.rings = shared ? 1 : n;
  l.base = reinterpret_cast<char*>(region.data()) + sizeof(FanoutControl);
  if (l.slots < 2) Die("fanout_floor: the ring holds under 2 frames");
  std::fflush(nullptr);
  std::vector<pid_t> pids;
  for (int i = 0; i < n; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) Die("fanout_floor: fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      Subscribe(c, l, shared ? 0 : i, i, size);
      std::_Exit(0);
    }
    pids.push_back(pid);
  }
  std::string payload(size, 'x');
  const uint64_t len = size;
  uint64_t sent = 0;
  uint64_t slowest = 0;  // shared: the lowest head seen so far
  const int64_t t0 = NowNs();
  const int64_t stop = t0 + duration_ms * 1'000'000;
  auto write = [&](int ring, uint64_t index) {
    char* frame = l.Slot(ring, index);
    std::memcpy(frame, &len, sizeof(len));
    std::memcpy(frame + kHeaderBytes, payload.data(), size);
    // release: pairs with the subscribers' acquire load of the tail.
    c.tails[ring].value.store(index + 1, std::memory_order_release);
  };
  do {
    for (int k = 0; k < 32; ++k, ++sent) {
      if (shared) {
        if (sent - slowest >= l.slots) {
          IdleUntil([&] {
            uint64_t low = UINT64_MAX;
            // acquire: pairs with each subscriber's release store of its head.
            for (int i = 0; i < n; ++i) low = std::min(low, c.heads[i].value.load(std::memory_order_acquire));
            slowest = low;
            return sent - slowest < l.slots;
          });
        }
        write(0, sent);
      } else {
        for (int r = 0; r < n; ++r) {
          // acquire: pairs with subscriber r's release store of its head.
          IdleUntil([&] { return sent - c.heads[r].value.load(std::memory_order_acquire) < l.slots; });
          write(r, sent);
        }
      }
    }
  } while (NowNs() < stop);
  // relaxed: read with the tails, which published every frame.
  c.end.value.store(sent + 1, std::memory_order_relaxed);
  int64_t last = t0;
  for (int i = 0; i < n; ++i) {
    int status = 0;
    if (::waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      Die("fanout_floor: a subscriber process failed");
    }
    // relaxed: waitpid ordered the subscriber's store before this load.
    last = std::max(last, static_cast<int64_t>(c.finish[i].value.load(std::memory_order_relaxed)));
  }
  return static_cast<double>(sent) / (static_cast<double>(last - t0) / 1e9);
}

// broadcast_ring_<N>: one BroadcastProducer, N BroadcastConsumers made and
// attached here and used by forked processes (which inherit the mappings
// and doorbell ends). Each records its count and finish time in `results`
// (a Counter pair per subscriber). Returns msgs/s per subscriber.
double MeasureBroadcast(int n, uint64_t size, int64_t duration_ms, uint64_t ring_bytes) {
  absl::StatusOr<ringbuf::SharedRegion> results =
      ringbuf::SharedRegion::Create("shmesh-bench-broadcast-results", sizeof(Counter) * 2 * kMaxSubscribers);
  Check(results.status(), "broadcast_ring: results page");
  auto* slots = new (results->data()) Counter[2 * kMaxSubscribers];
  ringbuf::BroadcastOptions options;
  options.capacity = ring_bytes;
  absl::StatusOr<ringbuf::BroadcastProducer> producer = ringbuf::BroadcastProducer::Create("shmesh-bench-broadcast",
                                                                                           options);
  Check(producer.status(), "broadcast_ring: create");
  std::vector<pid_t> pids;
  std::fflush(nullptr);
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<ringbuf::BroadcastProducer::NewConsumer> added = producer->AddConsumer(producer->tail());
    Check(added.status(), "broadcast_ring: add a consumer");
    absl::StatusOr<base::UniqueFd> region_fd = DupFd(producer->region_fd());
    Check(region_fd.status(), "broadcast_ring: dup");
    absl::StatusOr<ringbuf::BroadcastConsumer> consumer =
        ringbuf::BroadcastConsumer::Open(std::move(*region_fd), std::move(added->cursor_fd),
                                         std::move(added->doorbell_fd), ring_bytes, added->start);
    Check(consumer.status(), "broadcast_ring: open");
    const pid_t pid = ::fork();
    if (pid < 0) Die("broadcast_ring: fork failed");
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<char> sink(size);
      uint64_t count = 0;
      int64_t idle_since = -1;
      for (;;) {
        absl::StatusOr<size_t> got = consumer->Drain(256, [&](absl::Span<const uint8_t> f) {
          if (f.size() != size) Die("broadcast_ring: a frame of the wrong size");
          std::memcpy(sink.data(), f.data(), f.size());
          return true;
        });
        if (absl::IsOutOfRange(got.status())) break;
        Check(got.status(), "broadcast_ring: drain");
        if (*got > 0) {
          count += *got;
          idle_since = -1;
          continue;
        }
        const int64_t now = NowNs();
        if (idle_since < 0) idle_since = now;
        if (now - idle_since < kPauseNs) {
          ringbuf::CpuRelax();
        } else if (now - idle_since < 10 * kPauseNs) {
          sched_yield();
        } else if (consumer->PrepareToSleep()) {
          pollfd p{consumer->doorbell_fd(), POLLIN, 0};
          ::poll(&p, 1, 100);
          (void)consumer->ClearDoorbell();
        }
      }
      slots[2 * i].value.store(count, std::memory_order_relaxed);
      slots[2 * i + 1].value.store(NowNs(), std::memory_order_relaxed);
      std::_Exit(0);
    }
    pids.push_back(pid);
  }
  std::string payload(size, 'x');
  uint64_t sent = 0;
  const int64_t t0 = NowNs();
  const int64_t stop = t0 + duration_ms * 1'000'000;
  std::vector<ringbuf::BroadcastEviction> evicted;
  do {
    for (int k = 0; k < 32; ++k, ++sent) Check(producer->Write("", payload, absl::InfiniteFuture(), &evicted), "write");
  } while (NowNs() < stop);
  if (!evicted.empty()) Die("broadcast_ring: a subscriber was evicted");
  { ringbuf::BroadcastProducer closing = std::move(*producer); }  // closed: the consumers end
  int64_t last = t0;
  for (int i = 0; i < n; ++i) {
    int status = 0;
    if (::waitpid(pids[i], &status, 0) != pids[i] || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      Die("broadcast_ring: a subscriber process failed");
    }
    // relaxed: waitpid ordered the child's stores before these loads.
    if (slots[2 * i].value.load(std::memory_order_relaxed) != sent) Die("broadcast_ring: a subscriber missed frames");
    last = std::max(last, static_cast<int64_t>(slots[2 * i + 1].value.load(std::memory_order_relaxed)));
  }
  return static_cast<double>(sent) / (static_cast<double>(last - t0) / 1e9);
}

}  // namespace

int FanoutFloorRole(const RoleConfig& config) {
  const int n = config.expect_peers;
  if (n < 1 || n > kMaxSubscribers) Die(absl::StrCat("fanout_floor: 1 to ", kMaxSubscribers, " subscribers"));
  const size_t bytes = sizeof(FanoutControl) + static_cast<size_t>(n) * config.ring_bytes;
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind != ClientCommand::kThroughput) Die("fanout_floor: thru only");
    for (bool shared : {false, true}) {
      // A fresh, zero-filled memfd per measurement.
      absl::StatusOr<ringbuf::SharedRegion> region = ringbuf::SharedRegion::Create("shmesh-bench-fanout", bytes);
      Check(region.status(), "fanout_floor: create the shared region");
      const double rate = Measure(*region, n, shared, command->size, config.duration_ms, config.ring_bytes);
      Emit(RowLine(absl::StrCat(shared ? "fanout_floor_shared_" : "fanout_floor_rings_", n), command->size,
                   {{"msgs_per_s", rate}, {"gb_per_s", rate * command->size / 1e9}}));
    }
    const double rate = MeasureBroadcast(n, command->size, config.duration_ms, config.ring_bytes);
    Emit(RowLine(absl::StrCat("broadcast_ring_", n), command->size,
                 {{"msgs_per_s", rate}, {"gb_per_s", rate * command->size / 1e9}}));
    Emit("OK");
  }
  return 0;
}

}  // namespace shmesh_bench
