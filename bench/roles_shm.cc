// Shared-memory roles: the bare ringbuf ring (raw_ring, the floor) and the
// same traffic through the public mesh::Node API.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"
#include "bench/harness.h"
#include "bench/roles.h"
#include "mesh/node.h"
#include "mesh/v1/config.pb.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"

namespace shmesh_bench {
namespace {

using ringbuf::Ring;
using ringbuf::RingConsumer;
using ringbuf::RingProducer;
using ringbuf::WaitOptions;

absl::string_view AsView(const void* p, size_t n) {
  return absl::string_view(static_cast<const char*>(p), n);
}

template <typename T>
absl::string_view AsView(const T& value) {
  return AsView(&value, sizeof(value));
}

// Payloads for the tests: a ping, a data message and an end message of
// every size (first byte marks the kind).
struct Payloads {
  explicit Payloads(size_t size)
      : ping(size, 'x'), data(size, 'x'), end(size, 'x') {
    ping[0] = kPingByte;
    data[0] = kDataByte;
    end[0] = kEndByte;
  }
  std::string ping, data, end;
};

// ------------------------------------------------------------------ ring

base::UniqueFd Dup(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) Die("dup failed");
  return base::UniqueFd(copy);
}

// Maps the ring again through dup'd descriptors (the memfd and the doorbell
// end of `end`), as a peer that received them over a socket would.
Ring AttachCopy(const Ring& ring, ringbuf::RingEnd end) {
  absl::StatusOr<ringbuf::SharedRegion> region =
      ringbuf::SharedRegion::Map(Dup(ring.region_fd()), ring.region_size());
  Check(region.status(), "map ring");
  const int doorbell =
      end == ringbuf::RingEnd::kProducer ? ring.producer_doorbell_fd() : ring.consumer_doorbell_fd();
  absl::StatusOr<Ring> attached = Ring::Attach(std::move(*region), Dup(doorbell), end, WaitOptions::BusyPoll());
  Check(attached.status(), "attach ring");
  return std::move(*attached);
}

void RingServer(RingConsumer& in, RingProducer& out) {
  std::vector<char> sink(kMaxPayload);
  for (;;) {
    // Between tests the server sleeps (the default policy), so that other
    // benchmarks of the run have the CPU to themselves; during a test both
    // sides busy-poll.
    in.set_wait_options(WaitOptions());
    out.set_wait_options(WaitOptions());
    absl::StatusOr<std::string> frame = in.Read(absl::InfiniteFuture());
    Check(frame.status(), "ring server: read command");
    Command cmd;
    if (frame->size() != sizeof(cmd)) Die("ring server: bad command");
    std::memcpy(&cmd, frame->data(), sizeof(cmd));
    // raw_ring_sleep: never spin, so that every message goes through the
    // doorbell (the consumer sleeps, the producer rings it).
    const WaitOptions during = cmd.op == Op::kPingSleep ? WaitOptions::NoSpin() : WaitOptions::BusyPoll();
    in.set_wait_options(during);
    out.set_wait_options(during);
    switch (cmd.op) {
      case Op::kPing:
      case Op::kPingSleep:
        for (uint64_t i = 0; i < cmd.count; ++i) {
          Check(in.Wait(absl::InfiniteFuture()), "ring server: wait");
          auto request = in.Peek();
          if (!request.ok() || !request->has_value()) Die("ring server: peek");
          Check(out.Write(AsView((*request)->data(), (*request)->size()), absl::InfiniteFuture()),
                "ring server: write");
          Check(in.Release(), "ring server: release");
        }
        break;
      case Op::kThroughput: {
        uint64_t n = 0;
        bool end = false;
        while (!end) {
          Check(in.Wait(absl::InfiniteFuture()), "ring server: wait");
          absl::StatusOr<size_t> drained = in.Drain(256, [&](absl::Span<const uint8_t> f) {
            std::memcpy(sink.data(), f.data(), std::min(f.size(), sink.size()));
            if (!f.empty() && f[0] == kEndByte) {
              end = true;
            } else {
              ++n;
            }
          });
          Check(drained.status(), "ring server: drain");
        }
        Ack ack;
        ack.count = n;
        Check(out.Write(AsView(ack), absl::InfiniteFuture()), "ring server: ack");
        break;
      }
      case Op::kQuit:
        return;
      case Op::kPingLoan:
      case Op::kThroughputLoan:
        Die("ring server: loans are for the pool roles only");
    }
  }
}

void RingClient(RingProducer& out, RingConsumer& in, const RoleConfig& config) {
  out.set_wait_options(WaitOptions::BusyPoll());
  in.set_wait_options(WaitOptions::BusyPoll());
  auto send_command = [&](Op op, uint64_t size, uint64_t count) {
    Command cmd;
    cmd.op = op;
    cmd.size = size;
    cmd.count = count;
    Check(out.Write(AsView(cmd), absl::InfiniteFuture()), "ring client: command");
  };
  std::vector<char> sink(kMaxPayload);
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind == ClientCommand::kPing || command->kind == ClientCommand::kPingSleep) {
      const bool sleep = command->kind == ClientCommand::kPingSleep;
      const Payloads p(64);
      const uint64_t total = config.warmup + config.samples;
      send_command(sleep ? Op::kPingSleep : Op::kPing, 64, total);
      const WaitOptions during = sleep ? WaitOptions::NoSpin() : WaitOptions::BusyPoll();
      out.set_wait_options(during);
      in.set_wait_options(during);
      const uint64_t sleeps_before = in.stats().sleeps;
      std::vector<int64_t> one_way;
      one_way.reserve(config.samples);
      for (uint64_t i = 0; i < total; ++i) {
        const int64_t t0 = NowNs();
        Check(out.Write(p.ping, absl::InfiniteFuture()), "ring client: write");
        Check(in.Wait(absl::InfiniteFuture()), "ring client: wait");
        auto reply = in.Peek();
        if (!reply.ok() || !reply->has_value() || (*reply)->size() != 64) Die("ring client: reply");
        std::memcpy(sink.data(), (*reply)->data(), 64);
        Check(in.Release(), "ring client: release");
        const int64_t t1 = NowNs();
        if (i >= config.warmup) one_way.push_back((t1 - t0) / 2);
      }
      out.set_wait_options(WaitOptions::BusyPoll());
      in.set_wait_options(WaitOptions::BusyPoll());
      // A sleeping row that did not sleep measured the wrong thing.
      if (sleep && in.stats().sleeps - sleeps_before < total / 2) {
        std::fprintf(stderr, "shmesh_bench: raw_ring_sleep: the client slept only %llu times in %llu round trips\n",
                     static_cast<unsigned long long>(in.stats().sleeps - sleeps_before),
                     static_cast<unsigned long long>(total));
      }
      const Percentiles pc = ComputePercentiles(one_way);
      Emit(RowLine(sleep ? "raw_ring_sleep" : "raw_ring", 64,
                   {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
    } else {
      const uint64_t size = command->size;
      const bool batched = command->batched;
      const Payloads p(size);
      const std::vector<absl::string_view> batch(config.batch, p.data);
      send_command(Op::kThroughput, size, 0);
      uint64_t n = 0;
      const int64_t t0 = NowNs();
      const int64_t end_at = t0 + config.duration_ms * 1000000;
      do {
        if (batched) {
          Check(out.WriteBatch(batch, absl::InfiniteFuture()), "ring client: write batch");
        } else {
          for (int k = 0; k < config.batch; ++k) Check(out.Write(p.data, absl::InfiniteFuture()), "ring client: write");
        }
        n += config.batch;
      } while (NowNs() < end_at);
      Check(out.Write(p.end, absl::InfiniteFuture()), "ring client: end");
      absl::StatusOr<std::string> frame = in.Read(absl::InfiniteFuture());
      Check(frame.status(), "ring client: ack");
      const int64_t t1 = NowNs();
      Ack ack;
      if (frame->size() != sizeof(ack)) Die("ring client: bad ack");
      std::memcpy(&ack, frame->data(), sizeof(ack));
      if (ack.magic != kAckMagic || ack.count != n) {
        Die(absl::StrCat("ring client: server got ", ack.count, " of ", n, " messages"));
      }
      const double seconds = static_cast<double>(t1 - t0) / 1e9;
      Emit(RowLine(batched ? "raw_ring_batch" : "raw_ring", size,
                   {{"msgs_per_s", n / seconds}, {"gb_per_s", n * size / seconds / 1e9}}));
    }
    Emit("OK");
  }
  send_command(Op::kQuit, 0, 0);
}

// ------------------------------------------------------------------ mesh

// Blocks until stdin reaches EOF (the orchestrator's "quit").
void WaitForStdinEof() {
  char buf[256];
  while (::read(0, buf, sizeof(buf)) > 0) {
  }
}

mesh::v1::WaitPolicy::Mode ModeFor(const std::string& policy) {
  if (policy == "spin") return mesh::v1::WaitPolicy::SPIN;
  if (policy == "adaptive" || policy.empty()) return mesh::v1::WaitPolicy::ADAPTIVE;
  if (policy == "sleep") return mesh::v1::WaitPolicy::SLEEP;
  Die(absl::StrCat("unknown policy '", policy, "'"));
}

}  // namespace

std::unique_ptr<mesh::Node> MakeMeshNode(const RoleConfig& config, const std::string& name,
                                         const std::string& seed, const std::string& policy) {
  mesh::v1::NodeConfig c;
  c.set_name(name);
  c.set_run_dir(config.run_dir);
  if (!seed.empty()) c.add_seeds(seed);
  c.mutable_wait()->set_mode(ModeFor(policy));
  c.set_log_level(mesh::v1::WARNING);
  c.set_ring_capacity_bytes(config.ring_bytes);
  absl::StatusOr<std::unique_ptr<mesh::Node>> node = mesh::Node::Create(c);
  Check(node.status(), "create node");
  return std::move(*node);
}

int RingRole(const RoleConfig& config) {
  absl::StatusOr<Ring> to_server = Ring::Create(config.ring_bytes, WaitOptions::BusyPoll());
  absl::StatusOr<Ring> to_client = Ring::Create(config.ring_bytes, WaitOptions::BusyPoll());
  Check(to_server.status(), "create ring");
  Check(to_client.status(), "create ring");
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    // A spinning server must not outlive its client.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    PinToCpu(1);
    Ring in = AttachCopy(*to_server, ringbuf::RingEnd::kConsumer);
    Ring out = AttachCopy(*to_client, ringbuf::RingEnd::kProducer);
    RingServer(in.consumer(), out.producer());
    std::_Exit(0);
  }
  PinToCpu(0);
  Emit("READY");
  RingClient(to_server->producer(), to_client->consumer(), config);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("ring server failed");
  return 0;
}

int MeshServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "s", "", config.policy);
  // Receive thread only: the state of the current command.
  struct State {
    Op op = Op::kQuit;
    bool in_command = false;
    uint64_t remaining = 0;
    uint64_t count = 0;
    std::vector<char> sink = std::vector<char>(kMaxPayload);
  };
  auto state = std::make_shared<State>();
  mesh::Node* n = node.get();
  (void)node->SetMessageHandler([state, n](const mesh::MessageView& m) {
    State& s = *state;
    if (!s.in_command) {
      Command cmd;
      if (m.payload.size() != sizeof(cmd)) Die("mesh server: bad command");
      std::memcpy(&cmd, m.payload.data(), sizeof(cmd));
      s.op = cmd.op;
      s.remaining = cmd.count;
      s.count = 0;
      s.in_command = cmd.op == Op::kThroughput || (cmd.op == Op::kPing && cmd.count > 0);
      return;
    }
    if (s.op == Op::kPing) {
      Check(n->Send(m.from, m.payload), "mesh server: echo");
      if (--s.remaining == 0) s.in_command = false;
      return;
    }
    std::memcpy(s.sink.data(), m.payload.data(), std::min(m.payload.size(), s.sink.size()));
    if (!m.payload.empty() && m.payload[0] == kEndByte) {
      Ack ack;
      ack.count = s.count;
      Check(n->Send(m.from, AsView(ack)), "mesh server: ack");
      s.in_command = false;
    } else {
      ++s.count;
    }
  });
  Check(node->Start(), "start node");
  Emit("READY");
  WaitForStdinEof();
  node->Stop();
  return 0;
}

int MeshClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "c", config.seed, config.policy);
  // Written by the main thread before it sends the message that leads to
  // the handler's next call, read and written by the handler (receive
  // thread) afterwards; the ring's release/acquire chain orders them.
  struct State {
    bool ping = false;
    uint64_t total = 0, warmup = 0, done = 0;
    int64_t t0 = 0;
    int64_t ack_ns = 0;
    Ack ack;
    std::vector<int64_t> one_way;
    std::string ping_payload = Payloads(64).ping;
    std::unique_ptr<absl::Notification> finished;
  };
  auto state = std::make_shared<State>();
  mesh::Node* n = node.get();
  (void)node->SetMessageHandler([state, n](const mesh::MessageView& m) {
    State& s = *state;
    if (s.ping) {
      const int64_t t1 = NowNs();
      if (s.done >= s.warmup) s.one_way.push_back((t1 - s.t0) / 2);
      if (++s.done == s.total) {
        s.finished->Notify();
        return;
      }
      s.t0 = NowNs();
      Check(n->Send("s", s.ping_payload), "mesh client: ping");
      return;
    }
    s.ack_ns = NowNs();
    if (m.payload.size() != sizeof(Ack)) Die("mesh client: bad ack");
    std::memcpy(&s.ack, m.payload.data(), sizeof(Ack));
    s.finished->Notify();
  });
  Check(node->Start(), "start node");
  Check(node->WaitForPeers(1, absl::Now() + absl::Seconds(20)), "wait for server");
  // Let the start-up activity of both nodes (gRPC connections, handlers,
  // the spare ring) settle before measuring: with both sides pinned, any of
  // it would preempt the receive threads.
  absl::SleepFor(absl::Milliseconds(300));
  auto send_command = [&](Op op, uint64_t size, uint64_t count) {
    Command cmd;
    cmd.op = op;
    cmd.size = size;
    cmd.count = count;
    Check(node->Send("s", AsView(cmd)), "mesh client: command");
  };
  // The row is named after the receiving side's policy (--name), which may
  // differ from this sender's.
  const std::string row = config.name.empty() ? absl::StrCat("mesh_", config.policy) : config.name;
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind == ClientCommand::kPingSleep) Die("ping_sleep is for the raw ring only");
    if (command->kind == ClientCommand::kPing) {
      state->ping = true;
      state->total = config.warmup + config.samples;
      state->warmup = config.warmup;
      state->done = 0;
      state->one_way.clear();
      state->one_way.reserve(config.samples);
      state->finished = std::make_unique<absl::Notification>();
      send_command(Op::kPing, 64, state->total);
      state->t0 = NowNs();
      Check(node->Send("s", state->ping_payload), "mesh client: first ping");
      state->finished->WaitForNotification();
      const Percentiles pc = ComputePercentiles(state->one_way);
      Emit(RowLine(row, 64, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
    } else {
      const uint64_t size = command->size;
      const bool batched = command->batched;
      state->ping = false;
      const Payloads p(size);
      const std::vector<absl::string_view> batch(config.batch, p.data);
      state->finished = std::make_unique<absl::Notification>();
      send_command(Op::kThroughput, size, 0);
      uint64_t n_sent = 0;
      const int64_t t0 = NowNs();
      const int64_t end_at = t0 + config.duration_ms * 1000000;
      do {
        if (batched) {
          absl::StatusOr<size_t> sent = node->SendBatch("s", batch, absl::InfiniteFuture());
          Check(sent.status(), "mesh client: send batch");
          if (*sent != batch.size()) Die("mesh client: short batch");
        } else {
          for (int k = 0; k < config.batch; ++k) Check(node->Send("s", p.data), "mesh client: send");
        }
        n_sent += config.batch;
      } while (NowNs() < end_at);
      Check(node->Send("s", p.end), "mesh client: end");
      state->finished->WaitForNotification();
      if (state->ack.magic != kAckMagic || state->ack.count != n_sent) {
        Die(absl::StrCat("mesh client: server got ", state->ack.count, " of ", n_sent, " messages"));
      }
      const double seconds = static_cast<double>(state->ack_ns - t0) / 1e9;
      Emit(RowLine(batched ? row + "_batch" : row, size,
                   {{"msgs_per_s", n_sent / seconds}, {"gb_per_s", n_sent * size / seconds / 1e9}}));
    }
    Emit("OK");
  }
  node->Stop();
  return 0;
}

int MeshMemberRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, config.name, config.seed, config.policy);
  (void)node->SetMessageHandler([](const mesh::MessageView&) {});
  // Peer handlers run on the control thread; the counter is only a tally.
  auto peers = std::make_shared<std::atomic<int>>(0);
  const int expect = config.expect_peers;
  (void)node->SetPeerUpHandler([peers, expect](const mesh::PeerInfo& peer) {
    const int64_t now = NowNs();
    Emit(absl::StrCat("PEER ", now, " ", absl::ToInt64Nanoseconds(peer.handshake)));
    // relaxed: a tally read only by this (control) thread.
    const int now_up = peers->load(std::memory_order_relaxed) + 1;
    peers->store(now_up, std::memory_order_relaxed);
    if (now_up == expect) Emit(absl::StrCat("LINKED ", now));
  });
  Emit(absl::StrCat("STARTING ", NowNs()));
  Check(node->Start(), "start node");
  Emit(absl::StrCat("STARTED ", NowNs()));
  WaitForStdinEof();
  node->Stop();
  return 0;
}

}  // namespace shmesh_bench
