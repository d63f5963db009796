// mesh_worker: one real mesh::Node in its own process, for the multi-process
// integration suites in this directory (mesh_integration_test.cc).
//
// It starts a node, waits for --peers peers, and sends every peer a numbered
// stream of messages. Each message carries its sequence number, the sender's
// name and node id, a payload derived from the sequence number, and an
// FNV-1a checksum of all that. Every received message is copied out of the
// ring, then checked: length, name, checksum, payload pattern, and that its
// sequence number is exactly one more than the previous one from the same
// sender incarnation (the first one from an incarnation must be 0). So loss,
// duplication, reordering and corruption are all counted as errors.
//
// Two ways to send:
//   --count=K        K messages to each of the peers linked at READY, then
//                    wait until K arrived from each of them, print RESULT
//                    lines and DONE (and stop, with --exit_after_done;
//                    --nowait_receive: DONE as soon as all was sent).
//   --count=0        stream: every --interval_us, --batch messages to every
//                    peer that is up (peers come and go; a new incarnation of
//                    a peer gets a new stream starting at 0), until
//                    --stream_ms passes (0: until told to stop).
//   --nosend         only receive.
// --handler_delay_us makes the receiver a slow consumer.
// Topics and services (--publish, --subscribe, --serve, --call, and the
// stdin commands sub, unsub, pub, pubstop, call) are worker_pubsub.h and
// worker_rpc.h; their lines are listed in tests/README.md. --nosend keeps
// the plain streams out of a topic or service test.
// --leak_on_peer_down=fd|map leaks one descriptor or one mapping per
// PEER_DOWN: a deliberate fault, so the soak driver's leak check has a test.
//
// stdout is a machine-readable protocol, one line per event, flushed:
//   STARTED <name> id=<hex> pid=<pid>
//   PEER_UP <peer> <CLOCK_MONOTONIC ns> id=<hex>
//   PEER_DOWN <peer> <CLOCK_MONOTONIC ns> id=<hex>
//   PEER_UNRESPONSIVE <peer> <CLOCK_MONOTONIC ns> id=<hex>
//   PEER_RESPONSIVE <peer> <CLOCK_MONOTONIC ns> id=<hex>
//   READY <name> id=<hex> peers=<n>
//   FIRST <from> id=<hex>                  first message of an incarnation
//   SENT <to> id=<hex> sent=<n> failed=<k> bytes=<b>
//   RESULT <from> id=<hex> received=<n> errors=<k> bytes=<b>
//   DONE / STOPPED / REPORTED / ERROR <what>
// ids are node ids (mesh::Node::id()), so lines about two incarnations of one
// name can be told apart.
//
// stdin takes commands, one per line:
//   stop    stop sending; print SENT lines, then STOPPED
//   report  print RESULT lines, then REPORTED
//   quit    same as SIGTERM
// SIGTERM or SIGINT: stop sending, print SENT and RESULT lines, Stop() the
// node (which removes its sockets), print EXITING and exit 0.
//
// Thread contract: the main thread owns the Node and waits for signals; a
// sender thread sends; a stdin thread reads commands; the node's receive and
// control threads run the handlers. Shared state is under State::mu; lines
// are written under Emit's own mutex, which may be taken while holding
// State::mu (never the other way round).
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "mesh/node.h"
#include "mesh/v1/config.pb.h"
#include "tests/worker_pubsub.h"
#include "tests/worker_rpc.h"
#include "tests/worker_wire.h"

ABSL_FLAG(std::string, name, "", "Node name (required).");
ABSL_FLAG(std::string, run_dir, "", "Run directory for the node's sockets (required).");
ABSL_FLAG(std::vector<std::string>, seeds, {}, "Comma-separated gRPC targets to join through.");
ABSL_FLAG(int32_t, peers, 0, "Wait for this many peers before sending (READY).");
ABSL_FLAG(int32_t, count, 0, "Messages per peer; 0 streams instead (see --stream_ms).");
ABSL_FLAG(int32_t, payload_bytes, 64, "Payload bytes per message (besides the header).");
ABSL_FLAG(int32_t, pooled_every, 0,
          "Make every Nth message (by sequence number) pooled_bytes long, so that it goes through the "
          "sender's shared-memory pool (mesh/pool) instead of the ring; 0: never.");
ABSL_FLAG(int32_t, pooled_bytes, 200000, "Payload bytes of the messages --pooled_every picks.");
ABSL_FLAG(int32_t, stream_ms, 0, "Stream mode: stop sending after this long; 0: until told.");
ABSL_FLAG(int32_t, batch, 8, "Stream mode: messages to each peer per round.");
ABSL_FLAG(int32_t, interval_us, 2000, "Stream mode: pause between rounds.");
ABSL_FLAG(int64_t, ring_bytes, 65536, "ring_capacity_bytes of the node (0: the default).");
ABSL_FLAG(std::vector<std::string>, allowed_uids, {}, "allowed_peer_uids (empty: own uid).");
ABSL_FLAG(std::string, log_level, "warning", "debug, info, warning or error.");
ABSL_FLAG(int32_t, wait_peers_ms, 60000, "How long to wait for --peers peers.");
ABSL_FLAG(int32_t, wait_receive_ms, 60000, "Count mode: how long to wait for every message.");
ABSL_FLAG(int32_t, send_timeout_ms, 20000, "Deadline of each Send on a full ring.");
ABSL_FLAG(int32_t, unresponsive_after_ms, 0, "unresponsive_after_ms of the node (0: the default).");
ABSL_FLAG(bool, exit_after_done, false, "Count mode: stop and exit 0 after DONE.");
ABSL_FLAG(int32_t, handler_delay_us, 0, "Sleep this long in the message handler (a slow consumer).");
ABSL_FLAG(bool, send, true, "Send at all (false: only receive, READY still printed).");
ABSL_FLAG(bool, wait_receive, true,
          "Count mode: wait for --count messages from every peer before DONE (false: DONE once sent).");
ABSL_FLAG(std::string, leak_on_peer_down, "",
          "Fault injection for the soak driver's own test: 'fd' leaks a descriptor, 'map' a mapping, per PEER_DOWN.");

namespace {

using meshworker::Decode;
using meshworker::Decoded;
using meshworker::Emit;
using meshworker::Encode;
using meshworker::Hex;
using meshworker::MonotonicNs;

// Per sender incarnation (name, id): what arrived.
struct RxStream {
  uint64_t next_seq = 0;
  uint64_t received = 0;
  uint64_t errors = 0;
  uint64_t bytes = 0;
};

// Per destination incarnation (name, id): what was sent.
struct TxStream {
  uint64_t sent = 0;
  uint64_t failed = 0;
  uint64_t bytes = 0;
};

using Key = std::pair<std::string, uint64_t>;  // (peer name, peer node id)

struct State {
  absl::Mutex mu;
  std::map<Key, RxStream> rx ABSL_GUARDED_BY(mu);
  std::map<Key, TxStream> tx ABSL_GUARDED_BY(mu);
  // Peers whose link is up now: name -> node id (set by the peer handlers).
  std::map<std::string, uint64_t> up ABSL_GUARDED_BY(mu);
  int logged_errors ABSL_GUARDED_BY(mu) = 0;
};

void PrintSent(State& st) {
  std::vector<std::string> lines;
  {
    absl::MutexLock lock(&st.mu);
    for (const auto& [k, t] : st.tx) {
      lines.push_back(absl::StrCat("SENT ", k.first, " id=", Hex(k.second), " sent=", t.sent, " failed=", t.failed,
                                   " bytes=", t.bytes));
    }
  }
  for (const auto& l : lines) Emit(l);
}

void PrintResults(State& st) {
  std::vector<std::string> lines;
  {
    absl::MutexLock lock(&st.mu);
    for (const auto& [k, r] : st.rx) {
      lines.push_back(absl::StrCat("RESULT ", k.first, " id=", Hex(k.second), " received=", r.received,
                                   " errors=", r.errors, " bytes=", r.bytes));
    }
  }
  for (const auto& l : lines) Emit(l);
}

mesh::v1::LogLevel ParseLogLevel(const std::string& s) {
  if (s == "debug") return mesh::v1::DEBUG;
  if (s == "info") return mesh::v1::INFO;
  if (s == "error") return mesh::v1::ERROR;
  return mesh::v1::WARNING;
}

// --leak_on_peer_down: leaks on purpose (never closed, never unmapped).
void LeakOne(const std::string& what) {
  if (what == "fd") {
    (void)!dup(STDIN_FILENO);
  } else if (what == "map") {
    // A page of its own memfd: a separate file, so the kernel cannot merge
    // the mapping with a neighbour and /proc/self/maps gains one line.
    int fd = memfd_create("leak", MFD_CLOEXEC);
    if (fd >= 0 && ftruncate(fd, 4096) == 0) (void)mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0);
    if (fd >= 0) close(fd);
  }
}

int Fail(const std::string& what) {
  Emit(absl::StrCat("ERROR ", what));
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string name = absl::GetFlag(FLAGS_name);
  if (name.empty() || absl::GetFlag(FLAGS_run_dir).empty()) return Fail("--name and --run_dir are required");
  const int peers_wanted = absl::GetFlag(FLAGS_peers);
  const int count = absl::GetFlag(FLAGS_count);
  const size_t payload_bytes = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_payload_bytes)));

  // Block the stop signals in every thread (threads inherit the mask); the
  // main thread takes them with sigwait.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  mesh::v1::NodeConfig config;
  config.set_name(name);
  config.set_run_dir(absl::GetFlag(FLAGS_run_dir));
  for (const auto& s : absl::GetFlag(FLAGS_seeds)) {
    if (!s.empty()) config.add_seeds(s);
  }
  config.set_ring_capacity_bytes(static_cast<uint64_t>(absl::GetFlag(FLAGS_ring_bytes)));
  config.set_unresponsive_after_ms(static_cast<uint32_t>(absl::GetFlag(FLAGS_unresponsive_after_ms)));
  for (const auto& u : absl::GetFlag(FLAGS_allowed_uids)) {
    uint32_t uid;
    if (!absl::SimpleAtoi(u, &uid)) return Fail(absl::StrCat("bad --allowed_uids entry '", u, "'"));
    config.add_allowed_peer_uids(uid);
  }
  config.set_log_level(ParseLogLevel(absl::GetFlag(FLAGS_log_level)));

  auto created = mesh::Node::Create(config);
  if (!created.ok()) return Fail(absl::StrCat("create: ", created.status().ToString()));
  std::unique_ptr<mesh::Node> node = std::move(*created);
  // Topic and service modes (worker_pubsub.h, worker_rpc.h): idle unless
  // their flags are given.
  auto pubsub = meshworker::PubSubAgent::FromFlags(node.get());
  if (!pubsub.ok()) return Fail(pubsub.status().ToString());
  auto rpc = meshworker::RpcAgent::FromFlags(node.get());
  if (!rpc.ok()) return Fail(rpc.status().ToString());
  State st;

  const absl::Duration handler_delay = absl::Microseconds(absl::GetFlag(FLAGS_handler_delay_us));
  (void)node->SetMessageHandler([&st, handler_delay](const mesh::MessageView& m) {
    if (handler_delay > absl::ZeroDuration()) absl::SleepFor(handler_delay);
    // The payload is shared memory the sender can still write: copy first.
    std::string copy(m.payload);
    Decoded d;
    absl::Status s = Decode(copy, m.from, &d);
    std::string first_line, error_line;
    {
      absl::MutexLock lock(&st.mu);
      Key key(std::string(m.from), d.sender_id);
      auto [it, inserted] = st.rx.emplace(key, RxStream{});
      RxStream& r = it->second;
      if (inserted) first_line = absl::StrCat("FIRST ", m.from, " id=", Hex(d.sender_id));
      ++r.received;
      r.bytes += m.payload.size();
      if (s.ok() && d.seq != r.next_seq) {
        s = absl::DataLossError(absl::StrCat("seq ", d.seq, " where ", r.next_seq, " was due"));
      }
      if (s.ok()) {
        r.next_seq = d.seq + 1;
      } else {
        ++r.errors;
        if (d.seq >= r.next_seq) r.next_seq = d.seq + 1;  // resync, count each gap once
        if (st.logged_errors++ < 20) error_line = absl::StrCat("BAD ", m.from, " ", s.message());
      }
    }
    if (!first_line.empty()) Emit(first_line);
    if (!error_line.empty()) Emit(error_line);
  });
  (void)node->SetPeerUpHandler([&st](const mesh::PeerInfo& p) {
    int64_t now = MonotonicNs();
    // Printed under st.mu: the sender prints READY under it too, so every
    // PEER_UP that READY counted comes before READY on stdout.
    absl::MutexLock lock(&st.mu);
    st.up[p.name] = p.id;
    Emit(absl::StrCat("PEER_UP ", p.name, " ", now, " id=", Hex(p.id)));
  });
  const std::string leak_on_peer_down = absl::GetFlag(FLAGS_leak_on_peer_down);
  (void)node->SetPeerDownHandler([&st, leak_on_peer_down](const mesh::PeerInfo& p) {
    LeakOne(leak_on_peer_down);
    int64_t now = MonotonicNs();
    absl::MutexLock lock(&st.mu);
    auto it = st.up.find(p.name);
    if (it != st.up.end() && it->second == p.id) st.up.erase(it);
    Emit(absl::StrCat("PEER_DOWN ", p.name, " ", now, " id=", Hex(p.id)));
  });
  (void)node->SetPeerUnresponsiveHandler([](const mesh::PeerInfo& p, bool unresponsive) {
    Emit(absl::StrCat(unresponsive ? "PEER_UNRESPONSIVE " : "PEER_RESPONSIVE ", p.name, " ", MonotonicNs(),
                      " id=", Hex(p.id)));
  });

  absl::Status started = node->Start();
  if (!started.ok()) return Fail(absl::StrCat("start: ", started.ToString()));
  Emit(absl::StrCat("STARTED ", name, " id=", Hex(node->id()), " pid=", getpid()));
  if (absl::Status s = (*rpc)->Start(); !s.ok()) return Fail(s.ToString());
  if (absl::Status s = (*pubsub)->Start(); !s.ok()) return Fail(s.ToString());

  std::atomic<bool> stop_sending{false};
  std::atomic<bool> quitting{false};
  auto request_quit = [] { kill(getpid(), SIGTERM); };  // taken by sigwait below

  // stdin commands.
  std::thread commands([&] {
    std::string buf;
    while (!quitting.load()) {
      struct pollfd p = {STDIN_FILENO, POLLIN, 0};
      int r = poll(&p, 1, 100);
      if (r <= 0) continue;
      char chunk[256];
      ssize_t n = read(STDIN_FILENO, chunk, sizeof chunk);
      if (n <= 0) return;  // EOF or no stdin: commands are optional
      buf.append(chunk, static_cast<size_t>(n));
      size_t nl;
      while ((nl = buf.find('\n')) != std::string::npos) {
        std::string cmd = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        if (cmd == "stop") {
          stop_sending.store(true);
          // The sender thread prints SENT and STOPPED once it has stopped.
        } else if (cmd == "report") {
          PrintResults(st);
          (*pubsub)->Report();
          (*rpc)->Report();
          Emit("REPORTED");
        } else if ((*pubsub)->HandleCommand(cmd) || (*rpc)->HandleCommand(cmd)) {
          // done
        } else if (cmd == "quit") {
          request_quit();
        } else if (!cmd.empty()) {
          Emit(absl::StrCat("ERROR unknown command '", cmd, "'"));
        }
      }
    }
  });

  // Sender.
  std::thread sender([&] {
    auto finish = [&] {
      PrintSent(st);
      Emit("STOPPED");
    };
    // Wait for the peer-up handler rather than Node::WaitForPeers: the
    // handler runs just after a link counts as up, and `st.up` is what the
    // streams are keyed on.
    std::vector<Key> targets;
    {
      absl::MutexLock lock(&st.mu);
      auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
        return st.up.size() >= static_cast<size_t>(peers_wanted) || stop_sending.load();
      };
      st.mu.AwaitWithDeadline(absl::Condition(&enough),
                              absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_wait_peers_ms)));
      if (stop_sending.load()) return;  // told to quit before READY
      if (st.up.size() < static_cast<size_t>(peers_wanted)) {
        Emit(absl::StrCat("ERROR wait_for_peers: ", st.up.size(), " of ", peers_wanted, " peers up"));
        return;
      }
      for (const auto& [n, id] : st.up) targets.emplace_back(n, id);
      Emit(absl::StrCat("READY ", name, " id=", Hex(node->id()), " peers=", targets.size()));
    }
    if (!absl::GetFlag(FLAGS_send)) return;
    const absl::Duration send_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_send_timeout_ms));
    auto send_one = [&](const Key& to) {
      uint64_t seq;
      {
        absl::MutexLock lock(&st.mu);
        seq = st.tx[to].sent;
      }
      const int pooled_every = absl::GetFlag(FLAGS_pooled_every);
      const bool pooled = pooled_every > 0 && seq % static_cast<uint64_t>(pooled_every) == 0;
      std::string msg = Encode(seq, node->id(), name,
                               pooled ? static_cast<size_t>(absl::GetFlag(FLAGS_pooled_bytes)) : payload_bytes);
      absl::Status s = node->Send(to.first, msg, absl::Now() + send_timeout);
      absl::MutexLock lock(&st.mu);
      TxStream& t = st.tx[to];
      if (s.ok()) {
        ++t.sent;
        t.bytes += msg.size();
      } else {
        if (t.failed++ == 0) Emit(absl::StrCat("SEND_FAILED ", to.first, " ", s.ToString()));
      }
      return s.ok();
    };

    if (count > 0) {
      // Round-robin over the peers linked at READY, so every ring fills.
      // The up handler may have fired before the peer's link counted in
      // WaitForPeers; `targets` is what was up at READY.
      std::vector<bool> dead(targets.size(), false);
      for (int i = 0; i < count && !stop_sending.load(); ++i) {
        for (size_t t = 0; t < targets.size(); ++t) {
          if (!dead[t] && !send_one(targets[t])) dead[t] = true;
        }
      }
      finish();
      // Wait for everything from every target, then report.
      absl::Time deadline = absl::GetFlag(FLAGS_wait_receive)
                                ? absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_wait_receive_ms))
                                : absl::InfinitePast();
      auto all_in = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(st.mu) {
        if (stop_sending.load()) return true;
        for (const auto& k : targets) {
          auto it = st.rx.find(k);
          if (it == st.rx.end() || it->second.received < static_cast<uint64_t>(count)) return false;
        }
        return true;
      };
      bool complete;
      {
        absl::MutexLock lock(&st.mu);
        complete = !absl::GetFlag(FLAGS_wait_receive) ||
                   (st.mu.AwaitWithDeadline(absl::Condition(&all_in), deadline) && !stop_sending.load());
      }
      PrintResults(st);
      Emit(complete ? "DONE" : "ERROR timed out waiting for all messages");
      if (absl::GetFlag(FLAGS_exit_after_done)) request_quit();
      return;
    }

    // Stream mode.
    const int batch = std::max(1, absl::GetFlag(FLAGS_batch));
    const absl::Duration interval = absl::Microseconds(absl::GetFlag(FLAGS_interval_us));
    const int stream_ms = absl::GetFlag(FLAGS_stream_ms);
    const absl::Time end = stream_ms > 0 ? absl::Now() + absl::Milliseconds(stream_ms) : absl::InfiniteFuture();
    while (!stop_sending.load() && absl::Now() < end) {
      {
        absl::MutexLock lock(&st.mu);
        targets.clear();
        for (const auto& [n, id] : st.up) targets.emplace_back(n, id);
      }
      for (const Key& to : targets) {
        for (int i = 0; i < batch && !stop_sending.load(); ++i) {
          if (!send_one(to)) break;  // the peer went away; its handler drops it
        }
      }
      absl::SleepFor(interval);
    }
    finish();
  });

  int sig = 0;
  sigwait(&stop_signals, &sig);
  stop_sending.store(true);
  { absl::MutexLock lock(&st.mu); }  // the sender's Await conditions re-check on unlock
  sender.join();
  quitting.store(true);
  commands.join();
  PrintResults(st);
  // Before Stop: no topic or service handler runs into a stopping node.
  (*rpc)->Shutdown();
  (*pubsub)->Shutdown();
  node->Stop();
  Emit("EXITING");
  node.reset();
  return 0;
}
