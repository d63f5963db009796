// ring_bench: two processes, one ringbuf ring per direction.
//
// The parent creates both rings and forks a child that attaches to them
// through its own mappings and dups of its doorbell ends (as a peer that
// received the fds over a socket would). With two or more CPUs, parent and child are
// pinned to different CPUs. The parent drives the child with command
// frames and measures:
//   * ping-pong: the parent sends a 64-byte frame, the child echoes it;
//     one-way latency = round trip / 2, p50/p99/p99.9 after a warm-up, for
//     several wait policies (busy-poll, the default adaptive wait, and two
//     that show the sleep cascade: never spin, and a fixed 5 us spin);
//   * throughput: the child streams frames (64 B, 64 KiB) as fast as it
//     can with busy-poll; the parent copies every payload out. Frames/s and
//     payload GB/s.
// Each measurement runs a few times; the table shows the median of each
// statistic over the repetitions.
//
// Usage: ring_bench [--quick] [--json FILE] [--reps N]
#include <fcntl.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"

namespace {

using ringbuf::Ring;
using ringbuf::RingConsumer;
using ringbuf::RingProducer;
using ringbuf::WaitOptions;

constexpr size_t kRingCapacity = size_t{1} << 20;

enum class Op : uint32_t { kPingPong = 1, kProduce = 2, kProduceBatch = 3, kExit = 4 };
enum class Mode : uint32_t { kBusyPoll = 0, kAdaptive = 1, kNoSpin = 2, kFixedSpin5us = 3 };

struct Command {
  Op op;
  Mode mode;
  uint64_t count;
  uint64_t size;
};

struct Done {
  uint64_t magic;
  uint64_t sleeps;  // child's sleeps during the command (both endpoints)
};
constexpr uint64_t kDoneMagic = 0xd0d0d0d0d0d0d0d0ULL;

WaitOptions OptionsFor(Mode mode) {
  switch (mode) {
    case Mode::kBusyPoll:
      return WaitOptions::BusyPoll();
    case Mode::kNoSpin:
      return WaitOptions::NoSpin();
    case Mode::kFixedSpin5us:
      return WaitOptions::FixedSpin(absl::Microseconds(5));
    case Mode::kAdaptive:
      break;
  }
  return WaitOptions();
}

const char* ModeName(Mode mode) {
  switch (mode) {
    case Mode::kBusyPoll:
      return "busy_poll";
    case Mode::kNoSpin:
      return "no_spin";
    case Mode::kFixedSpin5us:
      return "fixed_spin_5us";
    case Mode::kAdaptive:
      break;
  }
  return "adaptive";
}

[[noreturn]] void Die(const std::string& what, const absl::Status& status) {
  std::fprintf(stderr, "ring_bench: %s: %s\n", what.c_str(), status.ToString().c_str());
  std::exit(1);
}

void Check(const absl::Status& status, const std::string& what) {
  if (!status.ok()) Die(what, status);
}

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Pins the calling process to the `index`-th CPU it may run on. Returns
// the CPU number, or -1 if there are fewer CPUs.
int PinToAllowedCpu(int index) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return -1;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == index) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      if (sched_setaffinity(0, sizeof(one), &one) != 0) return -1;
      return cpu;
    }
  }
  return -1;
}

int AllowedCpus() {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return 1;
  return CPU_COUNT(&allowed);
}

base::UniqueFd Dup(int fd) {
  const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    std::perror("dup");
    std::exit(1);
  }
  return base::UniqueFd(copy);
}

// Attaches to `ring` through its own mapping and a dup of the doorbell end
// of `end`, as the peer process that received them would.
Ring AttachCopy(const Ring& ring, ringbuf::RingEnd end) {
  absl::StatusOr<ringbuf::SharedRegion> region =
      ringbuf::SharedRegion::Map(Dup(ring.region_fd()), ring.region_size());
  if (!region.ok()) Die("map", region.status());
  const int doorbell = end == ringbuf::RingEnd::kProducer ? ring.producer_doorbell_fd()
                                                          : ring.consumer_doorbell_fd();
  absl::StatusOr<Ring> attached = Ring::Attach(std::move(*region), Dup(doorbell), end);
  if (!attached.ok()) Die("attach", attached.status());
  return std::move(*attached);
}

uint64_t Sleeps(RingProducer& p, RingConsumer& c) { return p.stats().sleeps + c.stats().sleeps; }

// ------------------------------------------------------------------ child

int ChildMain(Ring& to_child_shared, Ring& to_parent_shared) {
  Ring in_ring = AttachCopy(to_child_shared, ringbuf::RingEnd::kConsumer);
  Ring out_ring = AttachCopy(to_parent_shared, ringbuf::RingEnd::kProducer);
  RingConsumer& in = in_ring.consumer();
  RingProducer& out = out_ring.producer();
  std::vector<uint8_t> payload(kRingCapacity / 2, 0x5a);
  for (;;) {
    in.set_wait_options(WaitOptions());
    out.set_wait_options(WaitOptions());
    absl::StatusOr<std::string> frame = in.Read(absl::InfiniteFuture());
    if (!frame.ok()) Die("child: read command", frame.status());
    if (frame->size() != sizeof(Command)) Die("child", absl::InternalError("bad command"));
    Command cmd;
    std::memcpy(&cmd, frame->data(), sizeof(cmd));
    if (cmd.op == Op::kExit) return 0;
    in.set_wait_options(OptionsFor(cmd.mode));
    out.set_wait_options(OptionsFor(cmd.mode));
    const uint64_t sleeps_before = Sleeps(out, in);
    switch (cmd.op) {
      case Op::kPingPong:
        for (uint64_t i = 0; i < cmd.count; ++i) {
          Check(in.Wait(absl::InfiniteFuture()), "child: wait");
          absl::StatusOr<std::optional<absl::Span<const uint8_t>>> request = in.Peek();
          if (!request.ok() || !request->has_value()) Die("child: peek", request.status());
          const absl::Span<const uint8_t> req = **request;
          absl::StatusOr<absl::Span<uint8_t>> reply =
              out.Reserve(req.size(), absl::InfiniteFuture());
          if (!reply.ok()) Die("child: reserve", reply.status());
          std::memcpy(reply->data(), req.data(), req.size());
          Check(out.Commit(req.size()), "child: commit");
          Check(in.Release(), "child: release");
        }
        break;
      case Op::kProduce: {
        const absl::string_view view(reinterpret_cast<const char*>(payload.data()), cmd.size);
        for (uint64_t i = 0; i < cmd.count; ++i) {
          Check(out.Write(view, absl::InfiniteFuture()), "child: write");
        }
        break;
      }
      case Op::kProduceBatch: {
        constexpr uint64_t kBatch = 32;
        for (uint64_t i = 0; i < cmd.count;) {
          const uint64_t end = std::min(cmd.count, i + kBatch);
          for (; i < end; ++i) {
            absl::StatusOr<absl::Span<uint8_t>> span =
                out.Reserve(cmd.size, absl::InfiniteFuture());
            if (!span.ok()) Die("child: reserve", span.status());
            std::memcpy(span->data(), payload.data(), cmd.size);
            Check(out.CommitNoPublish(cmd.size), "child: commit");
          }
          Check(out.Publish(), "child: publish");
        }
        break;
      }
      default:
        Die("child", absl::InternalError("unknown op"));
    }
    const Done done{kDoneMagic, Sleeps(out, in) - sleeps_before};
    out.set_wait_options(WaitOptions());
    Check(out.Write(absl::string_view(reinterpret_cast<const char*>(&done), sizeof(done)),
                    absl::InfiniteFuture()),
          "child: done");
  }
}

// ------------------------------------------------------------------ parent

struct Result {
  std::string name;
  uint64_t payload_bytes = 0;
  std::optional<double> p50_ns, p99_ns, p999_ns, msgs_per_s, gb_per_s;
  double sleeps_per_msg = 0;
};

class Parent {
 public:
  Parent(Ring& to_child, Ring& to_parent) : out_(to_child.producer()), in_(to_parent.consumer()) {}

  void Send(const Command& cmd) {
    out_.set_wait_options(WaitOptions());
    Check(out_.Write(absl::string_view(reinterpret_cast<const char*>(&cmd), sizeof(cmd)),
                     absl::InfiniteFuture()),
          "send command");
  }

  // Reads the child's Done frame; returns its sleep count.
  uint64_t AwaitDone() {
    in_.set_wait_options(WaitOptions());
    absl::StatusOr<std::string> frame = in_.Read(absl::InfiniteFuture());
    if (!frame.ok()) Die("read done", frame.status());
    Done done;
    if (frame->size() != sizeof(done)) Die("done", absl::InternalError("bad done frame"));
    std::memcpy(&done, frame->data(), sizeof(done));
    if (done.magic != kDoneMagic) Die("done", absl::InternalError("bad done magic"));
    return done.sleeps;
  }

  Result PingPong(Mode mode, uint64_t warmup, uint64_t samples, size_t size) {
    Send(Command{Op::kPingPong, mode, warmup + samples, size});
    out_.set_wait_options(OptionsFor(mode));
    in_.set_wait_options(OptionsFor(mode));
    const uint64_t sleeps_before = Sleeps(out_, in_);
    std::vector<uint8_t> message(size, 0xab);
    std::vector<int64_t> one_way;
    one_way.reserve(samples);
    for (uint64_t i = 0; i < warmup + samples; ++i) {
      const int64_t t0 = NowNs();
      absl::StatusOr<absl::Span<uint8_t>> span = out_.Reserve(size, absl::InfiniteFuture());
      if (!span.ok()) Die("reserve", span.status());
      std::memcpy(span->data(), message.data(), size);
      Check(out_.Commit(size), "commit");
      Check(in_.Wait(absl::InfiniteFuture()), "wait");
      absl::StatusOr<std::optional<absl::Span<const uint8_t>>> reply = in_.Peek();
      if (!reply.ok() || !reply->has_value() || (**reply).size() != size) {
        Die("reply", reply.status());
      }
      Check(in_.Release(), "release");
      const int64_t t1 = NowNs();
      if (i >= warmup) one_way.push_back((t1 - t0) / 2);
    }
    const uint64_t parent_sleeps = Sleeps(out_, in_) - sleeps_before;
    const uint64_t child_sleeps = AwaitDone();
    std::sort(one_way.begin(), one_way.end());
    auto pct = [&](double p) {
      const size_t index = std::min(one_way.size() - 1, static_cast<size_t>(p * one_way.size()));
      return static_cast<double>(one_way[index]);
    };
    Result r;
    r.name = absl::StrCat("pingpong_", ModeName(mode));
    r.payload_bytes = size;
    r.p50_ns = pct(0.50);
    r.p99_ns = pct(0.99);
    r.p999_ns = pct(0.999);
    r.sleeps_per_msg =
        static_cast<double>(parent_sleeps + child_sleeps) / static_cast<double>(warmup + samples);
    return r;
  }

  Result Throughput(Op op, uint64_t count, size_t size) {
    in_.set_wait_options(WaitOptions::BusyPoll());
    std::vector<uint8_t> sink(size);
    const int64_t t0 = NowNs();
    Send(Command{op, Mode::kBusyPoll, count, size});
    in_.set_wait_options(WaitOptions::BusyPoll());
    uint64_t received = 0;
    uint64_t bad = 0;
    while (received < count) {
      Check(in_.Wait(absl::InfiniteFuture()), "wait");
      // Bounded batches: head is published (room handed back to the
      // producer) at least every kDrainBatch frames.
      constexpr uint64_t kDrainBatch = 256;
      const uint64_t max_frames = std::min(count - received, kDrainBatch);
      absl::StatusOr<size_t> n = in_.Drain(max_frames, [&](absl::Span<const uint8_t> frame) {
        if (frame.size() != size) ++bad;
        std::memcpy(sink.data(), frame.data(), std::min(frame.size(), sink.size()));
      });
      if (!n.ok()) Die("drain", n.status());
      received += *n;
    }
    const int64_t t1 = NowNs();
    if (bad != 0) Die("throughput", absl::InternalError("wrong frame size"));
    (void)AwaitDone();
    const double seconds = static_cast<double>(t1 - t0) / 1e9;
    Result r;
    r.name = op == Op::kProduceBatch ? "throughput_batch32_busy_poll" : "throughput_busy_poll";
    r.payload_bytes = size;
    r.msgs_per_s = static_cast<double>(count) / seconds;
    r.gb_per_s = static_cast<double>(count) * static_cast<double>(size) / seconds / 1e9;
    return r;
  }

  void Exit() { Send(Command{Op::kExit, Mode::kAdaptive, 0, 0}); }

 private:
  RingProducer& out_;
  RingConsumer& in_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// The median of each statistic over the repetitions.
Result MedianOf(const std::vector<Result>& reps) {
  Result r = reps.front();
  auto median_of = [&](std::optional<double> Result::*field) -> std::optional<double> {
    if (!(reps.front().*field).has_value()) return std::nullopt;
    std::vector<double> values;
    for (const Result& rep : reps) values.push_back(*(rep.*field));
    return Median(values);
  };
  r.p50_ns = median_of(&Result::p50_ns);
  r.p99_ns = median_of(&Result::p99_ns);
  r.p999_ns = median_of(&Result::p999_ns);
  r.msgs_per_s = median_of(&Result::msgs_per_s);
  r.gb_per_s = median_of(&Result::gb_per_s);
  std::vector<double> sleeps;
  for (const Result& rep : reps) sleeps.push_back(rep.sleeps_per_msg);
  r.sleeps_per_msg = Median(sleeps);
  return r;
}

std::string Fmt(const std::optional<double>& v, const char* format) {
  if (!v.has_value()) return "-";
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), format, *v);
  return buffer;
}

std::string HumanSize(uint64_t bytes) {
  if (bytes >= 1024 && bytes % 1024 == 0) return absl::StrCat(bytes / 1024, " KiB");
  return absl::StrCat(bytes, " B");
}

void PrintTable(const std::vector<Result>& results) {
  std::printf(
      "| benchmark | payload | p50 ns | p99 ns | p99.9 ns | msgs/s | GB/s | sleeps/msg |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const Result& r : results) {
    const std::optional<double> sleeps =
        r.msgs_per_s.has_value() ? std::nullopt : std::optional<double>(r.sleeps_per_msg);
    std::printf("| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.name.c_str(),
                HumanSize(r.payload_bytes).c_str(), Fmt(r.p50_ns, "%.0f").c_str(),
                Fmt(r.p99_ns, "%.0f").c_str(), Fmt(r.p999_ns, "%.0f").c_str(),
                Fmt(r.msgs_per_s, "%.3g").c_str(), Fmt(r.gb_per_s, "%.2f").c_str(),
                Fmt(sleeps, "%.3f").c_str());
  }
}

bool WriteJson(const std::string& path, const std::vector<Result>& results) {
  std::string out = "[\n";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    absl::StrAppend(&out, "  {\"name\": \"", r.name, "\", \"payload_bytes\": ", r.payload_bytes);
    auto field = [&](const char* name, const std::optional<double>& v) {
      if (v.has_value()) absl::StrAppend(&out, ", \"", name, "\": ", absl::StrFormat("%.6g", *v));
    };
    field("p50_ns", r.p50_ns);
    field("p99_ns", r.p99_ns);
    field("p999_ns", r.p999_ns);
    field("msgs_per_s", r.msgs_per_s);
    field("gb_per_s", r.gb_per_s);
    absl::StrAppend(&out, "}", i + 1 < results.size() ? "," : "", "\n");
  }
  out += "]\n";
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) return false;
  const bool ok = std::fwrite(out.data(), 1, out.size(), f) == out.size();
  return std::fclose(f) == 0 && ok;
}

constexpr char kUsage[] =
    "Usage: ring_bench [--quick] [--json FILE] [--reps N]\n"
    "\n"
    "Two processes (pinned to different CPUs when there are two or more),\n"
    "one shared-memory ring per direction. Measures 64-byte ping-pong one-way\n"
    "latency (round trip / 2; p50, p99, p99.9) for several wait policies and\n"
    "one-way throughput (64 B, 64 KiB; msgs/s, GB/s) with busy-poll. Prints a\n"
    "Markdown table with the median of each statistic over the repetitions.\n"
    "\n"
    "  --quick      short run (a few seconds)\n"
    "  --json FILE  also write the results as a JSON array of objects with\n"
    "               name, payload_bytes and p50_ns/p99_ns/p999_ns or\n"
    "               msgs_per_s/gb_per_s\n"
    "  --reps N     repetitions per measurement (default 3)\n"
    "  --help       this text\n";

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  std::string json_path;
  int reps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--quick") {
      quick = true;
    } else if (arg == "--json" && i + 1 < argc) {
      json_path = argv[++i];
    } else if (arg.rfind("--json=", 0) == 0) {
      json_path = arg.substr(7);
    } else if (arg == "--reps" && i + 1 < argc && absl::SimpleAtoi(argv[i + 1], &reps) &&
               reps > 0) {
      ++i;
    } else {
      std::fprintf(stderr, "ring_bench: bad argument '%s'\n\n%s", arg.c_str(), kUsage);
      return 2;
    }
  }

  absl::StatusOr<Ring> to_child = Ring::Create(kRingCapacity);
  absl::StatusOr<Ring> to_parent = Ring::Create(kRingCapacity);
  if (!to_child.ok()) Die("create ring", to_child.status());
  if (!to_parent.ok()) Die("create ring", to_parent.status());

  const int allowed_cpus = AllowedCpus();
  const bool pin = allowed_cpus >= 2;
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    return 1;
  }
  if (pid == 0) {
    if (pin) PinToAllowedCpu(1);
    _exit(ChildMain(*to_child, *to_parent));
  }
  int parent_cpu = -1;
  if (pin) parent_cpu = PinToAllowedCpu(0);

  const uint64_t warmup = quick ? 2'000 : 20'000;
  const uint64_t samples = quick ? 20'000 : 200'000;
  const uint64_t slow_samples = quick ? 2'000 : 30'000;  // policies that sleep
  const uint64_t small_count = quick ? 2'000'000 : 20'000'000;
  const uint64_t big_count = quick ? 10'000 : 100'000;

  double load[3] = {0, 0, 0};
  if (getloadavg(load, 3) < 0) load[0] = -1;
  std::printf(
      "ring_bench: %d CPUs allowed, %s; load average %.2f; ring capacity %zu bytes; "
      "%d repetition(s)%s\n\n",
      allowed_cpus,
      pin ? absl::StrCat("parent pinned to CPU ", parent_cpu, ", child to the next").c_str()
          : "not pinned",
      load[0], kRingCapacity, reps, quick ? " (quick)" : "");

  Parent parent(*to_child, *to_parent);
  std::vector<Result> results;
  auto run = [&](auto&& one) {
    std::vector<Result> r;
    for (int i = 0; i < reps; ++i) r.push_back(one());
    results.push_back(MedianOf(r));
  };
  run([&] { return parent.PingPong(Mode::kBusyPoll, warmup, samples, 64); });
  run([&] { return parent.PingPong(Mode::kAdaptive, warmup, samples, 64); });
  run([&] { return parent.PingPong(Mode::kNoSpin, warmup / 10, slow_samples, 64); });
  run([&] { return parent.PingPong(Mode::kFixedSpin5us, warmup / 10, slow_samples, 64); });
  run([&] { return parent.Throughput(Op::kProduce, small_count, 64); });
  run([&] { return parent.Throughput(Op::kProduceBatch, small_count, 64); });
  run([&] { return parent.Throughput(Op::kProduce, big_count, 64 * 1024); });
  parent.Exit();

  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "ring_bench: child failed (status %d)\n", status);
    return 1;
  }
  PrintTable(results);
  std::printf(
      "\nLatency is one-way (round trip / 2) including the copy in and out; sleeps/msg\n"
      "counts doorbell sleeps of both processes per round trip.\n");
  if (!json_path.empty()) {
    if (!WriteJson(json_path, results)) {
      std::fprintf(stderr, "ring_bench: cannot write %s\n", json_path.c_str());
      return 1;
    }
    std::printf("wrote %s\n", json_path.c_str());
  }
  return 0;
}
