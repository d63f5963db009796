// The pool rows (mesh/pool/README.md): large messages through mesh::Node's
// shared-memory pool, with the traffic of the iceoryx rows
// (roles_iceoryx.cc), so the two compare.
//
//   pool_server / pool_client   two nodes, "s" and "c", pinned like every
//                               pair. Rows:
//     mesh_loan      loans (Node::Loan, write the first byte, Send of the
//                    Loan; the server's handler reads the first byte in
//                    place): msgs/s at 64 KiB .. 8 MiB ("thru SIZE 0
//                    loan"), and one-way latency of SIZE-byte loans both
//                    ways ("ping SIZE": the server answers every loan with
//                    a loan of its own)
//     mesh_copy_big  copied sends (Send of SIZE bytes: one copy into the
//                    pool; the server's handler copies the payload out into
//                    its own buffer, as iox_copy's subscriber does): GB/s
//                    ("thru SIZE 0 copy")
//   pool_fanout_pub / pool_fanout_sub   one publisher (CPU 0) and
//                               --expect_peers subscriber processes (all on
//                               CPU 1): rows mesh_loan_fanout_<N>, loans
//                               published on a topic, each subscriber
//                               reading the first byte; msgs/s over all
//                               subscribers (deliveries per second)
//
// As in the iceoryx rows, the first throughput repetition of each size
// and kind in a process is preceded by an unmeasured one: the first touch
// of a pool block page-faults it in, once per block.
// Every stream ends with an end message; the receiver answers it with its
// count, which must equal what was sent (the client dies otherwise).
// Every wait on the pool (Loan, Send, Publish) has a deadline, so a pool
// that never gives a block back ends the run with the pool's own message
// (who holds what) rather than a silent hang.
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness.h"
#include "bench/roles.h"
#include "mesh/loan.h"
#include "mesh/node.h"
#include "mesh/topic.h"

namespace shmesh_bench {
namespace {

// A repetition that has not finished after this long has lost its peer,
// or its pool stopped giving blocks back.
constexpr absl::Duration kStallTimeout = absl::Seconds(60);

absl::string_view AsView(const void* p, size_t n) { return absl::string_view(static_cast<const char*>(p), n); }

template <typename T>
absl::string_view AsView(const T& value) {
  return AsView(&value, sizeof(value));
}

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  Check(v.status(), what);
  return std::move(*v);
}

void WaitForStdinEof() {
  char buf[256];
  while (::read(0, buf, sizeof(buf)) > 0) {
  }
}

// A loan of `size` bytes whose first byte is `first`.
mesh::Loan LoanWith(mesh::Node& node, uint64_t size, char first, absl::Time deadline, const char* what) {
  mesh::Loan loan = Must(node.Loan(size, deadline), what);
  loan.data()[0] = static_cast<uint8_t>(first);
  return loan;
}

}  // namespace

int PoolServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "s", "", config.policy);
  // Receive thread only: the state of the current command.
  struct State {
    Op op = Op::kQuit;
    bool in_command = false;
    uint64_t size = 0, remaining = 0, count = 0;
    absl::Time deadline;
    std::vector<char> sink = std::vector<char>(kMaxPoolPayload);
  };
  auto state = std::make_shared<State>();
  mesh::Node* n = node.get();
  (void)node->SetMessageHandler([state, n](const mesh::MessageView& m) {
    State& s = *state;
    if (!s.in_command) {
      Command cmd;
      if (m.payload.size() != sizeof(cmd)) Die("pool server: bad command");
      std::memcpy(&cmd, m.payload.data(), sizeof(cmd));
      s.op = cmd.op;
      s.size = cmd.size;
      s.remaining = cmd.count;
      s.count = 0;
      s.deadline = absl::Now() + kStallTimeout;
      s.in_command = cmd.op == Op::kThroughput || cmd.op == Op::kThroughputLoan ||
                     (cmd.op == Op::kPingLoan && cmd.count > 0);
      if (cmd.op == Op::kPingLoan && cmd.size == 0) Die("pool server: ping of 0 bytes");
      return;
    }
    if (m.payload.empty()) Die("pool server: empty message");
    if (s.op == Op::kPingLoan) {
      if (m.payload.size() != s.size) Die("pool server: ping of the wrong size");
      Check(n->Send(m.from, LoanWith(*n, s.size, m.payload[0], s.deadline, "pool server: loan the echo"), s.deadline),
            "pool server: echo");
      if (--s.remaining == 0) s.in_command = false;
      return;
    }
    char first;
    if (s.op == Op::kThroughput) {
      // Copied: out of the sender's pool into our own buffer.
      if (m.payload.size() > s.sink.size()) Die("pool server: payload over 8 MiB");
      std::memcpy(s.sink.data(), m.payload.data(), m.payload.size());
      first = s.sink[0];
    } else {
      first = m.payload[0];  // zero-copy: one byte, in place
    }
    if (first == kEndByte) {
      Ack ack;
      ack.count = s.count;
      Check(n->Send(m.from, AsView(ack), s.deadline), "pool server: ack");
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

int PoolClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "c", config.seed, config.policy);
  // Written by the main thread before it sends the message that leads to
  // the handler's next call, read and written by the handler (receive
  // thread) afterwards; the ring's release/acquire chain orders them.
  struct State {
    bool ping = false;
    uint64_t size = 0, total = 0, warmup = 0, done = 0;
    absl::Time deadline;
    int64_t t0 = 0;
    int64_t ack_ns = 0;
    Ack ack;
    std::vector<int64_t> one_way;
    std::unique_ptr<absl::Notification> finished;
  };
  auto state = std::make_shared<State>();
  mesh::Node* n = node.get();
  (void)node->SetMessageHandler([state, n](const mesh::MessageView& m) {
    State& s = *state;
    if (s.ping) {
      const int64_t t1 = NowNs();
      if (m.payload.size() != s.size || m.payload[0] != kPingByte) Die("pool client: the echo is not the ping");
      if (s.done >= s.warmup) s.one_way.push_back((t1 - s.t0) / 2);
      if (++s.done == s.total) {
        s.finished->Notify();
        return;
      }
      s.t0 = NowNs();
      Check(n->Send("s", LoanWith(*n, s.size, kPingByte, s.deadline, "pool client: loan a ping"), s.deadline),
            "pool client: ping");
      return;
    }
    s.ack_ns = NowNs();
    if (m.payload.size() != sizeof(Ack)) Die("pool client: bad ack");
    std::memcpy(&s.ack, m.payload.data(), sizeof(Ack));
    s.finished->Notify();
  });
  Check(node->Start(), "start node");
  Check(node->WaitForPeers(1, absl::Now() + absl::Seconds(20)), "wait for server");
  absl::SleepFor(absl::Milliseconds(300));  // let both nodes' start-up settle (as MeshClientRole)
  auto send_command = [&](Op op, uint64_t size, uint64_t count) {
    Command cmd;
    cmd.op = op;
    cmd.size = size;
    cmd.count = count;
    Check(node->Send("s", AsView(cmd)), "pool client: command");
  };
  // Streams `size`-byte messages (loaned or copied) for duration_ms, then
  // the end message; returns (sent, ns from the first send to the ack).
  auto stream = [&](uint64_t size, bool loan) -> std::pair<uint64_t, int64_t> {
    state->ping = false;
    state->finished = std::make_unique<absl::Notification>();
    std::string data, end;
    if (!loan) {
      data.assign(size, 'x');
      data[0] = kDataByte;
      end.assign(size, 'x');
      end[0] = kEndByte;
    }
    send_command(loan ? Op::kThroughputLoan : Op::kThroughput, size, 0);
    const absl::Time deadline = absl::Now() + absl::Milliseconds(config.duration_ms) + kStallTimeout;
    uint64_t sent = 0;
    const int64_t t0 = NowNs();
    const int64_t end_at = t0 + config.duration_ms * 1000000;
    // One message per clock read: at these sizes a send costs far more
    // than NowNs().
    do {
      if (loan) {
        Check(node->Send("s", LoanWith(*node, size, kDataByte, deadline, "pool client: loan"), deadline),
              "pool client: send a loan");
      } else {
        Check(node->Send("s", data, deadline), "pool client: send");
      }
      ++sent;
    } while (NowNs() < end_at);
    if (loan) {
      Check(node->Send("s", LoanWith(*node, size, kEndByte, deadline, "pool client: loan"), deadline),
            "pool client: end");
    } else {
      Check(node->Send("s", end, deadline), "pool client: end");
    }
    if (!state->finished->WaitForNotificationWithTimeout(kStallTimeout)) {
      Die(absl::StrCat("pool client: no ack from the server in ", absl::FormatDuration(kStallTimeout), " after ",
                       sent, loan ? " loans" : " copied sends", " of ", size, " bytes"));
    }
    if (state->ack.magic != kAckMagic || state->ack.count != sent) {
      Die(absl::StrCat("pool client: server got ", state->ack.count, " of ", sent, loan ? " loans" : " copied sends",
                       " of ", size, " bytes"));
    }
    return {sent, state->ack_ns - t0};
  };
  std::set<std::pair<uint64_t, bool>> warm;  // (size, loan) streamed once already
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand(kMaxPoolPayload)) {
    if (command->kind == ClientCommand::kPingSleep) Die("ping_sleep is for the raw ring only");
    if (command->kind == ClientCommand::kPing) {
      state->ping = true;
      state->size = command->size;
      state->warmup = config.warmup;
      state->total = config.warmup + config.samples;
      state->done = 0;
      state->one_way.clear();
      state->one_way.reserve(state->total);
      state->finished = std::make_unique<absl::Notification>();
      state->deadline = absl::Now() + kStallTimeout;
      send_command(Op::kPingLoan, command->size, state->total);
      state->t0 = NowNs();
      Check(node->Send("s", LoanWith(*node, command->size, kPingByte, state->deadline, "pool client: loan a ping"),
                       state->deadline),
            "pool client: first ping");
      if (!state->finished->WaitForNotificationWithTimeout(kStallTimeout)) {
        Die(absl::StrCat("pool client: loan ping-pong of ", command->size, " bytes stalled after ", state->done,
                         " of ", state->total, " round trips"));
      }
      const Percentiles pc = ComputePercentiles(state->one_way);
      Emit(RowLine("mesh_loan", command->size, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
    } else {
      const uint64_t size = command->size;
      const bool loan = command->loan;
      if (warm.insert({size, loan}).second) (void)stream(size, loan);
      const auto [sent, ns] = stream(size, loan);
      const double seconds = static_cast<double>(ns) / 1e9;
      Emit(RowLine(loan ? "mesh_loan" : "mesh_copy_big", size,
                   {{"msgs_per_s", sent / seconds}, {"gb_per_s", sent * size / seconds / 1e9}}));
    }
    Emit("OK");
  }
  node->Stop();
  return 0;
}

int PoolFanoutPublisherRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "p", "", config.policy);
  std::unique_ptr<mesh::Publisher> data = Must(node->Advertise("pool/data"), "advertise pool/data");
  absl::Mutex mu;
  std::vector<Ack> acks;    // under mu
  int64_t last_ack_ns = 0;  // under mu
  std::unique_ptr<mesh::Subscription> ack_sub = Must(node->Subscribe("pool/ack",
                                                                     [&](const mesh::MessageView& m) {
                                                                       Ack a;
                                                                       if (m.payload.size() != sizeof(a)) {
                                                                         Die("pool fan-out: bad ack");
                                                                       }
                                                                       std::memcpy(&a, m.payload.data(), sizeof(a));
                                                                       absl::MutexLock lock(&mu);
                                                                       acks.push_back(a);
                                                                       last_ack_ns = NowNs();
                                                                     }),
                                                     "subscribe pool/ack");
  Check(node->Start(), "start node");
  Emit("STARTED");
  const size_t n_subs = static_cast<size_t>(config.expect_peers);
  Check(data->WaitForSubscribers(n_subs, absl::Now() + absl::Seconds(60)), "pool fan-out: wait for subscribers");
  absl::SleepFor(absl::Milliseconds(300));
  // Publishes loans for duration_ms, then the end loan; returns (published,
  // ns from the first Publish to the last subscriber's ack).
  auto stream = [&](uint64_t size) -> std::pair<uint64_t, int64_t> {
    {
      absl::MutexLock lock(&mu);
      acks.clear();
    }
    const absl::Time deadline = absl::Now() + absl::Milliseconds(config.duration_ms) + kStallTimeout;
    auto publish = [&](char first) {
      mesh::Loan loan = Must(data->Loan(size, deadline), "pool fan-out: loan");
      loan.data()[0] = static_cast<uint8_t>(first);
      absl::StatusOr<mesh::PublishResult> r = data->Publish(std::move(loan), deadline);
      Check(r.status(), "pool fan-out: publish");
      if (r->delivered != n_subs) {
        Die(absl::StrCat("pool fan-out: a loan reached ", r->delivered, " of ", n_subs, " subscribers"));
      }
    };
    uint64_t n = 0;
    const int64_t t0 = NowNs();
    const int64_t end_at = t0 + config.duration_ms * 1000000;
    do {
      publish(kDataByte);
      ++n;
    } while (NowNs() < end_at);
    publish(kEndByte);
    absl::MutexLock lock(&mu);
    auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return acks.size() == n_subs; };
    if (!mu.AwaitWithTimeout(absl::Condition(&all), kStallTimeout)) {
      Die(absl::StrCat("pool fan-out: ", acks.size(), " of ", n_subs, " acks after ", n, " loans of ", size,
                       " bytes"));
    }
    for (const Ack& a : acks) {
      if (a.magic != kAckMagic || a.count != n) {
        Die(absl::StrCat("pool fan-out: a subscriber got ", a.count, " of ", n, " loans of ", size, " bytes"));
      }
    }
    return {n, last_ack_ns - t0};
  };
  std::set<uint64_t> warm;
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand(kMaxPoolPayload)) {
    if (command->kind != ClientCommand::kThroughput || !command->loan) Die("pool fan-out: thru SIZE 0 loan only");
    if (warm.insert(command->size).second) (void)stream(command->size);
    const auto [n, ns] = stream(command->size);
    const double seconds = static_cast<double>(ns) / 1e9;
    const double deliveries = static_cast<double>(n) * static_cast<double>(n_subs);
    Emit(RowLine(config.name, command->size,
                 {{"msgs_per_s", deliveries / seconds}, {"gb_per_s", deliveries * command->size / seconds / 1e9}}));
    Emit("OK");
  }
  ack_sub.reset();
  data.reset();
  node->Stop();
  return 0;
}

int PoolFanoutSubscriberRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, config.name, config.seed, config.policy);
  std::unique_ptr<mesh::Publisher> ack = Must(node->Advertise("pool/ack"), "advertise pool/ack");
  // Receive thread only.
  auto count = std::make_shared<uint64_t>(0);
  mesh::Publisher* a = ack.get();
  std::unique_ptr<mesh::Subscription> data = Must(
      node->Subscribe("pool/data",
                      [count, a](const mesh::MessageView& m) {
                        if (m.payload.empty()) Die("pool fan-out: empty message");
                        if (m.payload[0] != kEndByte) {  // one byte, in place
                          ++*count;
                          return;
                        }
                        Ack reply;
                        reply.count = *count;
                        *count = 0;
                        Check(a->Publish(AsView(reply), absl::Now() + kStallTimeout).status(), "pool fan-out: ack");
                      }),
      "subscribe pool/data");
  Check(node->Start(), "start node");
  Check(ack->WaitForSubscribers(1, absl::Now() + absl::Seconds(60)), "pool fan-out: the publisher's ack subscription");
  Emit("READY");
  WaitForStdinEof();
  data.reset();
  ack.reset();
  node->Stop();
  return 0;
}

}  // namespace shmesh_bench
