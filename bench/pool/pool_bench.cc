// pool_bench: shmesh's zero-copy pool measured between real processes
// (mesh/pool/README.md). Rows, each the median of --reps runs:
//
//   loan_<size>     msgs/s of loaned messages (loan, touch one byte, Send;
//                   the receiver's handler touches one byte): zero-copy
//   copy_<size>     GB/s of copied sends (Send of bytes: one copy into the
//                   pool; the receiver's handler copies the payload out)
//   rtt_64B, rtt_loan_8MiB
//                   one-way latency p50 (round trip / 2) of a 64 B ring
//                   message, and of an 8 MiB loan answered by an 8 MiB loan
//   fanout_<n>_8MiB total msgs/s of 8 MiB loans published on a topic to n
//                   subscriber processes (each touches one byte)
//
// Processes are forked before any node exists; the sender and the first
// receiver are pinned to the first two allowed CPUs. Both nodes spin
// (WaitPolicy SPIN) for the latency rows and use the default policy
// (ADAPTIVE) for the rest.
//
//   bazel run -c opt //bench/pool:pool_bench -- [--reps=3] [--ms=300]
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "mesh/node.h"
#include "testing/temp_dir.h"

ABSL_FLAG(int, reps, 3, "repetitions per row (the median is printed)");
ABSL_FLAG(int, ms, 300, "milliseconds per throughput run");

namespace {

void Pin(int which) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == which) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      (void)sched_setaffinity(0, sizeof(one), &one);
      return;
    }
  }
}

mesh::v1::NodeConfig Config(const std::string& dir, const std::string& name, bool seed, bool spin) {
  mesh::v1::NodeConfig c;
  c.set_name(name);
  c.set_run_dir(dir);
  if (seed) c.add_seeds(absl::StrCat("unix:", dir, "/tx.grpc"));
  c.set_log_level(mesh::v1::WARNING);
  if (spin) c.mutable_wait()->set_mode(mesh::v1::WaitPolicy::SPIN);
  return c;
}

// The receiving processes: echo latency probes, count and ack the rest.
// Messages: "end" -> reply "n <count>"; "ping" -> "ping"; a loan of 8 MiB
// in echo mode -> an 8 MiB loan back.
int Receiver(const std::string& dir, const std::string& name, bool spin, bool copy_out, const std::string& topic) {
  auto node = mesh::Node::Create(Config(dir, name, true, spin));
  if (!node.ok()) return 1;
  mesh::Node* n = node->get();
  std::atomic<uint64_t> count{0};
  std::vector<char> sink(16 << 20);
  auto on = [&](const mesh::MessageView& m) {
    if (m.payload == "end") {
      (void)n->Send(m.from, absl::StrCat("n ", count.exchange(0)));
    } else if (m.payload == "ping") {
      (void)n->Send(m.from, "ping");
    } else if (m.payload.size() == (8u << 20) && name == "rx" && spin) {
      auto loan = n->Loan(8 << 20);
      if (loan.ok()) {
        loan->data()[0] = m.payload[0];
        (void)n->Send(m.from, std::move(*loan));
      }
    } else {
      if (copy_out) {
        std::memcpy(sink.data(), m.payload.data(), std::min(m.payload.size(), sink.size()));
      } else if (!m.payload.empty()) {
        sink[0] = m.payload[m.payload.size() - 1];
      }
      count.fetch_add(1, std::memory_order_relaxed);
    }
  };
  (void)n->SetMessageHandler(on);
  if (!n->Start().ok()) return 1;
  std::unique_ptr<mesh::Subscription> sub;
  if (!topic.empty()) {
    auto s = n->Subscribe(topic, on);
    if (!s.ok()) return 1;
    sub = std::move(*s);
  }
  while (getppid() != 1) absl::SleepFor(absl::Milliseconds(100));
  return 0;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int reps = absl::GetFlag(FLAGS_reps);
  const absl::Duration run = absl::Milliseconds(absl::GetFlag(FLAGS_ms));
  shmesh::testing::ShortTempDir dir("poolbench-");
  std::vector<pid_t> children;
  auto fork_rx = [&](const std::string& name, bool spin, bool copy_out, const std::string& topic, int pin) {
    pid_t pid = fork();
    if (pid == 0) {
      if (pin >= 0) Pin(pin);
      _exit(Receiver(dir.path(), name, spin, copy_out, topic));
    }
    children.push_back(pid);
  };
  // Each section: its own sender node and receivers.
  struct Replies {
    absl::Mutex mu;
    std::vector<std::string> got;
  };
  auto section = [&](bool spin, int receivers, bool copy_out, const std::string& topic,
                     const std::function<void(mesh::Node*, Replies*)>& body) {
    children.clear();
    // Fork first: a process with gRPC's threads running must not fork.
    for (int i = 0; i < receivers; ++i) fork_rx(i == 0 ? "rx" : absl::StrCat("rx", i), spin, copy_out, topic, i == 0 ? 1 : -1);
    Pin(0);
    auto tx = mesh::Node::Create(Config(dir.path(), "tx", false, spin));
    auto replies = std::make_shared<Replies>();
    (void)(*tx)->SetMessageHandler([replies](const mesh::MessageView& m) {
      absl::MutexLock lock(&replies->mu);
      replies->got.emplace_back(m.payload.size() == (8u << 20) ? std::string("loan") : std::string(m.payload));
    });
    (void)(*tx)->Start();
    (void)(*tx)->WaitForPeers(receivers, absl::Now() + absl::Seconds(30));
    body(tx->get(), replies.get());
    (*tx)->Stop();
    for (pid_t pid : children) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  };
  auto wait_reply = [](Replies* r, size_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      {
        absl::MutexLock lock(&r->mu);
        if (r->got.size() >= n) return true;
      }
      std::this_thread::yield();
    }
    return false;
  };
  auto count_of = [](Replies* r, size_t from) {
    absl::MutexLock lock(&r->mu);
    uint64_t total = 0;
    for (size_t i = from; i < r->got.size(); ++i) total += std::stoull(r->got[i].substr(2));
    return total;
  };

  std::printf("| row | value | unit |\n|---|---:|---|\n");
  // Throughput of loans and copies, one receiver.
  for (bool loan : {true, false}) {
    for (size_t size : {size_t{64} << 10, size_t{1} << 20, size_t{8} << 20}) {
      if (!loan && size < (size_t{1} << 20)) continue;
      std::vector<double> rates;
      section(false, 1, !loan, "", [&](mesh::Node* tx, Replies* r) {
        std::string bytes(loan ? 0 : size, 'c');
        for (int rep = 0; rep < reps; ++rep) {
          const absl::Time start = absl::Now();
          uint64_t sent = 0;
          while (absl::Now() - start < run) {
            if (loan) {
              auto l = tx->Loan(size);
              l->data()[0] = static_cast<uint8_t>(sent);
              (void)tx->Send("rx", std::move(*l));
            } else {
              (void)tx->Send("rx", bytes);
            }
            ++sent;
          }
          size_t before;
          {
            absl::MutexLock lock(&r->mu);
            before = r->got.size();
          }
          (void)tx->Send("rx", "end");
          wait_reply(r, before + 1);
          const double secs = absl::ToDoubleSeconds(absl::Now() - start);
          const uint64_t got = count_of(r, before);
          if (got != sent) std::fprintf(stderr, "pool_bench: sent %lu, received %lu\n", sent, got);
          rates.push_back(got / secs);
        }
      });
      const std::string label = absl::StrCat(size >= (1u << 20) ? size >> 20 : size >> 10, size >= (1u << 20) ? "MiB" : "KiB");
      if (loan) {
        std::printf("| loan_%s | %.0f | msgs/s |\n", label.c_str(), Median(rates));
      } else {
        std::printf("| copy_%s | %.2f | GB/s |\n", label.c_str(), Median(rates) * size / 1e9);
      }
      std::fflush(stdout);
    }
  }
  // Latency: 64 B ring message vs 8 MiB loan, both spinning.
  section(true, 1, false, "", [&](mesh::Node* tx, Replies* r) {
    for (bool big : {false, true}) {
      std::vector<double> p50s;
      for (int rep = 0; rep < reps; ++rep) {
        std::vector<double> rtts;
        for (int i = 0; i < (big ? 300 : 5000); ++i) {
          size_t before;
          {
            absl::MutexLock lock(&r->mu);
            before = r->got.size();
          }
          const absl::Time t0 = absl::Now();
          if (big) {
            auto l = tx->Loan(8 << 20);
            l->data()[0] = 1;
            (void)tx->Send("rx", std::move(*l));
          } else {
            (void)tx->Send("rx", "ping");
          }
          wait_reply(r, before + 1);
          rtts.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0) * 1000 / 2);
        }
        p50s.push_back(Median(rtts));
      }
      std::printf("| %s | %.0f | ns one-way p50 |\n", big ? "rtt_loan_8MiB" : "rtt_64B", Median(p50s));
      std::fflush(stdout);
    }
  });
  // Fan-out of 8 MiB loans to 1 and 4 subscribers.
  for (int subs : {1, 4}) {
    std::vector<double> rates;
    section(false, subs, false, "bench/fan", [&](mesh::Node* tx, Replies* r) {
      auto pub = tx->Advertise("bench/fan");
      (void)(*pub)->WaitForSubscribers(subs, absl::Now() + absl::Seconds(30));
      for (int rep = 0; rep < reps; ++rep) {
        const absl::Time start = absl::Now();
        uint64_t sent = 0;
        while (absl::Now() - start < run) {
          auto l = (*pub)->Loan(8 << 20);
          l->data()[0] = 1;
          (void)(*pub)->Publish(std::move(*l));
          ++sent;
        }
        size_t before;
        {
          absl::MutexLock lock(&r->mu);
          before = r->got.size();
        }
        auto r2 = tx->Broadcast("end");
        wait_reply(r, before + subs);
        const double secs = absl::ToDoubleSeconds(absl::Now() - start);
        rates.push_back(static_cast<double>(count_of(r, before)) / secs);
      }
    });
    std::printf("| fanout_%d_8MiB | %.0f | msgs/s (all subscribers) |\n", subs, Median(rates));
    std::fflush(stdout);
  }
  return 0;
}
