// Topic and service roles: the same traffic as the mesh rows, through
// mesh::Publisher / Subscription (mesh/topic.h) and Node::Serve / Call
// (mesh/rpc.h) instead of Node::Send.
//
//   topic_server / topic_client    64 B ping-pong over two topics
//                                  (bench/ping, bench/pong): topic_<policy>
//   rpc_server / rpc_client        Call("echo") round trips: rpc_<policy>_rtt
//   fanout_pub / fanout_sub        one publisher, --expect_peers subscriber
//                                  processes: msgs/s per subscriber
//   first_pub / first_sub          Subscribe returning -> first message
//                                  (the publisher keeps a history of 1)
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <optional>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "bench/harness.h"
#include "bench/roles.h"
#include "mesh/node.h"

namespace shmesh_bench {
namespace {

// Blocks until stdin reaches EOF (the orchestrator's "quit").
void WaitForStdinEof() {
  char buf[256];
  while (::read(0, buf, sizeof(buf)) > 0) {
  }
}

template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  Check(v.status(), what);
  return std::move(*v);
}

// Until `pred` holds or 20 s pass (then dies naming `what`).
void AwaitOrDie(const std::function<bool()>& pred, const char* what) {
  for (absl::Time end = absl::Now() + absl::Seconds(20); !pred();) {
    if (absl::Now() > end) Die(absl::StrCat("timed out: ", what));
    absl::SleepFor(absl::Milliseconds(1));
  }
}

constexpr uint64_t kPingSize = 64;

}  // namespace

int TopicServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "s", "", config.policy);
  std::unique_ptr<mesh::Publisher> pong = Must(node->Advertise("bench/pong"), "advertise bench/pong");
  mesh::Publisher* p = pong.get();
  // Echoes every ping from the receive thread, as mesh_server echoes sends.
  std::unique_ptr<mesh::Subscription> ping = Must(
      node->Subscribe("bench/ping", [p](const mesh::MessageView& m) { Check(p->Publish(m.payload).status(), "echo"); }),
      "subscribe bench/ping");
  Check(node->Start(), "start node");
  Emit("READY");
  WaitForStdinEof();
  ping.reset();
  pong.reset();
  node->Stop();
  return 0;
}

int TopicClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "c", config.seed, config.policy);
  std::unique_ptr<mesh::Publisher> ping = Must(node->Advertise("bench/ping"), "advertise bench/ping");
  // Written by the main thread before the publish that leads to the
  // handler's next call, then by the handler (receive thread): the ring's
  // release/acquire chain orders them, as in mesh_client.
  struct State {
    bool measuring = false;
    uint64_t total = 0, warmup = 0, done = 0;
    int64_t t0 = 0;
    std::vector<int64_t> one_way;
    std::string payload = std::string(kPingSize, 'P');
    std::unique_ptr<absl::Notification> finished = std::make_unique<absl::Notification>();
  };
  auto state = std::make_shared<State>();
  mesh::Publisher* p = ping.get();
  std::unique_ptr<mesh::Subscription> pong = Must(
      node->Subscribe("bench/pong",
                      [state, p](const mesh::MessageView&) {
                        State& s = *state;
                        if (!s.measuring) {
                          if (!s.finished->HasBeenNotified()) s.finished->Notify();
                          return;
                        }
                        const int64_t t1 = NowNs();
                        if (s.done >= s.warmup) s.one_way.push_back((t1 - s.t0) / 2);
                        if (++s.done == s.total) {
                          s.finished->Notify();
                          return;
                        }
                        s.t0 = NowNs();
                        Check(p->Publish(s.payload).status(), "topic client: ping");
                      }),
      "subscribe bench/pong");
  Check(node->Start(), "start node");
  Check(ping->WaitForSubscribers(1, absl::Now() + absl::Seconds(20)), "wait for the echo node");
  // The echo node may not have our subscription to bench/pong yet: ping
  // until one comes back.
  for (absl::Time end = absl::Now() + absl::Seconds(20); !state->finished->HasBeenNotified();) {
    if (absl::Now() > end) Die("topic client: no echo");
    Check(ping->Publish("sync").status(), "topic client: sync");
    state->finished->WaitForNotificationWithTimeout(absl::Milliseconds(10));
  }
  absl::SleepFor(absl::Milliseconds(300));  // let the start-up settle (see mesh_client)
  const std::string row = config.name;
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind != ClientCommand::kPing) Die("topic client: ping only");
    state->measuring = true;
    state->total = config.warmup + config.samples;
    state->warmup = config.warmup;
    state->done = 0;
    state->one_way.clear();
    state->one_way.reserve(config.samples);
    state->finished = std::make_unique<absl::Notification>();
    state->t0 = NowNs();
    Check(ping->Publish(state->payload).status(), "topic client: first ping");
    state->finished->WaitForNotification();
    const Percentiles pc = ComputePercentiles(state->one_way);
    Emit(RowLine(row, kPingSize, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
    Emit("OK");
  }
  pong.reset();
  ping.reset();
  node->Stop();
  return 0;
}

int RpcServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "s", "", config.policy);
  std::unique_ptr<mesh::ServiceRegistration> echo = Must(
      node->Serve("echo", [](const mesh::RequestView& r) -> absl::StatusOr<std::string> { return std::string(r.payload); }),
      "serve echo");
  Check(node->Start(), "start node");
  Emit("READY");
  WaitForStdinEof();
  echo.reset();
  node->Stop();
  return 0;
}

int RpcClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "c", config.seed, config.policy);
  Check(node->Start(), "start node");
  AwaitOrDie([&] { return !node->Servers("echo").empty(); }, "rpc client: nobody serves echo");
  absl::SleepFor(absl::Milliseconds(300));
  const std::string request(kPingSize, 'Q');
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind != ClientCommand::kPing) Die("rpc client: ping only");
    std::vector<int64_t> rtt;
    rtt.reserve(config.samples);
    for (uint64_t i = 0; i < config.warmup + config.samples; ++i) {
      const int64_t t0 = NowNs();
      absl::StatusOr<std::string> reply = node->Call("echo", request, absl::Now() + absl::Seconds(5));
      const int64_t t1 = NowNs();
      Check(reply.status(), "rpc client: call");
      if (*reply != request) Die("rpc client: wrong reply");
      if (i >= config.warmup) rtt.push_back(t1 - t0);
    }
    const Percentiles pc = ComputePercentiles(rtt);
    Emit(RowLine(config.name, kPingSize, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
    Emit("OK");
  }
  node->Stop();
  return 0;
}

// Fan-out. Per command "thru SIZE 0": the publisher publishes SIZE-byte
// messages (first byte kDataByte) for duration_ms, then one end message
// (kEndByte); every subscriber copies each payload out, and on the end
// message publishes Ack{count} on fan/ack; the publisher checks that every
// subscriber got every message and reports msgs/s per subscriber (from its
// first publish to the last ack).
int FanoutPublisherRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "p", "", config.policy);
  mesh::PublisherOptions options;
  options.shared_ring = config.shared_ring;
  std::unique_ptr<mesh::Publisher> data = Must(node->Advertise("fan/data", options), "advertise fan/data");
  absl::Mutex mu;
  std::vector<Ack> acks;  // under mu
  int64_t last_ack_ns = 0;  // under mu
  std::unique_ptr<mesh::Subscription> ack_sub = Must(
      node->Subscribe("fan/ack",
                      [&](const mesh::MessageView& m) {
                        Ack a;
                        if (m.payload.size() != sizeof(a)) Die("fanout: bad ack");
                        std::memcpy(&a, m.payload.data(), sizeof(a));
                        absl::MutexLock lock(&mu);
                        acks.push_back(a);
                        last_ack_ns = NowNs();
                      }),
      "subscribe fan/ack");
  Check(node->Start(), "start node");
  Emit("STARTED");
  const size_t n_subs = static_cast<size_t>(config.expect_peers);
  Check(data->WaitForSubscribers(n_subs, absl::Now() + absl::Seconds(60)), "fanout: wait for subscribers");
  absl::SleepFor(absl::Milliseconds(300));
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind != ClientCommand::kThroughput) Die("fanout: thru only");
    std::string payload(command->size, 'x');
    payload[0] = kDataByte;
    {
      absl::MutexLock lock(&mu);
      acks.clear();
    }
    uint64_t n = 0;
    const int64_t t0 = NowNs();
    const int64_t end_at = t0 + config.duration_ms * 1000000;
    do {
      for (int k = 0; k < config.batch; ++k) {
        absl::StatusOr<mesh::PublishResult> r = data->Publish(payload);
        Check(r.status(), "fanout: publish");
        if (r->delivered != n_subs) Die("fanout: a subscriber was not reached");
      }
      n += config.batch;
    } while (NowNs() < end_at);
    payload[0] = kEndByte;
    Check(data->Publish(payload).status(), "fanout: end");
    double seconds = 0;
    {
      absl::MutexLock lock(&mu);
      auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return acks.size() == n_subs; };
      if (!mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(60))) Die("fanout: acks missing");
      for (const Ack& a : acks) {
        if (a.magic != kAckMagic || a.count != n) Die(absl::StrCat("fanout: a subscriber got ", a.count, " of ", n));
      }
      seconds = static_cast<double>(last_ack_ns - t0) / 1e9;
    }
    Emit(RowLine(config.name, command->size,
                 {{"msgs_per_s", n / seconds}, {"gb_per_s", n * command->size / seconds / 1e9}}));
    Emit("OK");
  }
  ack_sub.reset();
  data.reset();
  node->Stop();
  return 0;
}

int FanoutSubscriberRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, config.name, config.seed, config.policy);
  std::unique_ptr<mesh::Publisher> ack = Must(node->Advertise("fan/ack"), "advertise fan/ack");
  // Receive thread only.
  struct State {
    uint64_t count = 0;
    std::vector<char> sink = std::vector<char>(kMaxPayload);
  };
  auto state = std::make_shared<State>();
  mesh::Publisher* a = ack.get();
  std::unique_ptr<mesh::Subscription> data = Must(
      node->Subscribe("fan/data",
                      [state, a](const mesh::MessageView& m) {
                        State& s = *state;
                        std::memcpy(s.sink.data(), m.payload.data(), std::min(m.payload.size(), s.sink.size()));
                        if (m.payload.empty() || m.payload[0] != kEndByte) {
                          ++s.count;
                          return;
                        }
                        Ack reply;
                        reply.count = s.count;
                        s.count = 0;
                        Check(a->Publish(absl::string_view(reinterpret_cast<const char*>(&reply), sizeof(reply)))
                                  .status(),
                              "fanout: ack");
                      }),
      "subscribe fan/data");
  Check(node->Start(), "start node");
  Check(ack->WaitForSubscribers(1, absl::Now() + absl::Seconds(60)), "fanout: the publisher's ack subscription");
  Emit("READY");
  WaitForStdinEof();
  data.reset();
  ack.reset();
  node->Stop();
  return 0;
}

// One topic per try (first/0 .. first/19), each with a history of 1: a
// subscriber's try i subscribes to first/<i> alone, so the publisher sees a
// new match every time. (Re-subscribing to one topic would not do: a node
// that unsubscribes and subscribes again before the publisher re-matched
// still counts as matched, and gets no history; see tests/README.md.)
constexpr int kFirstTries = 20;

int FirstPublisherRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "p", "", config.policy);
  mesh::PublisherOptions options;
  options.history = 1;  // a new subscriber gets the last message at once
  std::vector<std::unique_ptr<mesh::Publisher>> pubs;
  for (int i = 0; i < kFirstTries; ++i) {
    pubs.push_back(Must(node->Advertise(absl::StrCat("first/", i), options), "advertise first/<i>"));
  }
  Check(node->Start(), "start node");
  for (auto& pub : pubs) Check(pub->Publish("first").status(), "first: publish");
  Emit("READY");
  WaitForStdinEof();
  pubs.clear();
  node->Stop();
  return 0;
}

// Per "ping" command: for each of the 20 topics, Subscribe, wait for the
// first message (the publisher's history), unsubscribe; ROW lines with the
// p50 and the max in setup_ms.
int FirstSubscriberRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::unique_ptr<mesh::Node> node = MakeMeshNode(config, "c", config.seed, config.policy);
  Check(node->Start(), "start node");
  Check(node->WaitForPeers(1, absl::Now() + absl::Seconds(20)), "first: wait for the publisher");
  absl::SleepFor(absl::Milliseconds(300));
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind != ClientCommand::kPing) Die("first: ping only");
    std::vector<int64_t> took;
    for (int i = 0; i < kFirstTries; ++i) {
      // The handler's time of the first message; 0 until then.
      auto first_ns = std::make_shared<std::atomic<int64_t>>(0);
      std::unique_ptr<mesh::Subscription> sub = Must(node->Subscribe(absl::StrCat("first/", i),
                                                                     [first_ns](const mesh::MessageView&) {
                                                                       int64_t none = 0;
                                                                       // relaxed: only the first store counts, read by
                                                                       // the main thread after it saw nonzero
                                                                       first_ns->compare_exchange_strong(
                                                                           none, NowNs(), std::memory_order_relaxed);
                                                                     }),
                                                     "first: subscribe");
      const int64_t t0 = NowNs();
      // relaxed: the value is the only data passed.
      AwaitOrDie([&] { return first_ns->load(std::memory_order_relaxed) != 0; }, "first: no first message");
      // The history can beat t0 only by the few instructions after Subscribe.
      took.push_back(std::max<int64_t>(0, first_ns->load(std::memory_order_relaxed) - t0));
      sub.reset();
      absl::SleepFor(absl::Milliseconds(5));
    }
    const int64_t max = *std::max_element(took.begin(), took.end());
    const Percentiles pc = ComputePercentiles(took);
    Emit(RowLine(config.name, 0, {{"setup_ms", pc.p50 / 1e6}}));
    Emit(RowLine(config.name + "_max", 0, {{"setup_ms", static_cast<double>(max) / 1e6}}));
    Emit("OK");
  }
  node->Stop();
  return 0;
}

}  // namespace shmesh_bench
