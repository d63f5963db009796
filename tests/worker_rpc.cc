#include "tests/worker_rpc.h"

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/worker_wire.h"

ABSL_FLAG(std::vector<std::string>, serve, {},
          "Services to serve, comma-separated; 'name:CODE' answers every request with that absl status code.");
ABSL_FLAG(int32_t, serve_delay_ms, 0, "The handlers sleep this long per request (HANDLING line first).");
ABSL_FLAG(std::string, call, "", "Service to call --calls times once --call_wait_servers serve it.");
ABSL_FLAG(int32_t, calls, 0, "Calls in all, spread over --call_threads threads.");
ABSL_FLAG(int32_t, call_threads, 1, "Threads making the --calls calls.");
ABSL_FLAG(int32_t, call_wait_servers, 1, "Wait until this many linked nodes serve --call.");
ABSL_FLAG(int32_t, call_deadline_ms, 20000, "Deadline of each --calls call.");
ABSL_FLAG(int32_t, call_payload_bytes, 100, "Request bytes of each --calls call (besides its label).");
ABSL_FLAG(std::string, call_server, "", "CallOptions::server of the --calls calls.");

namespace meshworker {

struct RpcAgent::Served {
  std::string service;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::unique_ptr<mesh::ServiceRegistration> reg;
  // Requests the handler saw, and those that came with the wrong service
  // name or no caller (written by the receive thread).
  std::atomic<uint64_t> seen{0}, bad{0};
};

RpcAgent::RpcAgent(mesh::Node* node) : node_(node) {}

RpcAgent::~RpcAgent() { Shutdown(); }

absl::StatusOr<std::unique_ptr<RpcAgent>> RpcAgent::FromFlags(mesh::Node* node) {
  std::unique_ptr<RpcAgent> agent(new RpcAgent(node));
  for (const std::string& spec : absl::GetFlag(FLAGS_serve)) {
    if (spec.empty()) continue;
    auto s = std::make_unique<Served>();
    std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits(':', 1));
    s->service = parts[0];
    int code = 0;
    if (parts.size() == 2 && (!absl::SimpleAtoi(parts[1], &code) || code <= 0 || code > 16)) {
      return absl::InvalidArgumentError(absl::StrCat("--serve entry '", spec, "': want name or name:CODE (1..16)"));
    }
    s->code = static_cast<absl::StatusCode>(code);
    agent->served_.push_back(std::move(s));
  }
  agent->call_service_ = absl::GetFlag(FLAGS_call);
  return agent;
}

std::string RpcAgent::Answer(absl::string_view server, absl::string_view request) {
  std::string reversed(request.rbegin(), request.rend());
  return absl::StrCat(server, "|", Hex(Fnv1a(request)), "|", reversed);
}

absl::Status RpcAgent::Start() {
  const absl::Duration delay = absl::Milliseconds(absl::GetFlag(FLAGS_serve_delay_ms));
  const std::string self = node_->name();
  for (auto& s : served_) {
    Served* sv = s.get();
    auto reg = node_->Serve(sv->service, [sv, delay, self](const mesh::RequestView& r) -> absl::StatusOr<std::string> {
      sv->seen.fetch_add(1, std::memory_order_relaxed);  // relaxed: a tally, read after the node stopped
      if (r.service != sv->service || r.from.empty()) sv->bad.fetch_add(1, std::memory_order_relaxed);
      if (delay > absl::ZeroDuration()) {
        Emit(absl::StrCat("HANDLING ", sv->service, " ", r.from, " ", MonotonicNs()));
        absl::SleepFor(delay);
      }
      if (sv->code != absl::StatusCode::kOk) {
        return absl::Status(sv->code, absl::StrCat(sv->service, " at ", self, " refuses, as told by --serve"));
      }
      return Answer(self, std::string(r.payload));  // copied before use: shared memory
    });
    if (!reg.ok()) {
      return absl::Status(reg.status().code(), absl::StrCat("serve ", sv->service, ": ", reg.status().message()));
    }
    sv->reg = std::move(*reg);
    Emit(absl::StrCat("SERVING ", sv->service));
  }
  if (!call_service_.empty() && absl::GetFlag(FLAGS_calls) > 0) {
    absl::MutexLock lock(&mu_);
    threads_.emplace_back([this] { RunCallers(); });
  }
  return absl::OkStatus();
}

absl::Status RpcAgent::CheckedCall(const std::string& service, const std::string& request, absl::Time deadline,
                                   const mesh::CallOptions& options, std::string* server) {
  absl::StatusOr<std::string> reply = node_->Call(service, request, deadline, options);
  if (!reply.ok()) return reply.status();
  const size_t bar = reply->find('|');
  *server = reply->substr(0, bar == std::string::npos ? 0 : bar);
  if (bar == std::string::npos || *reply != Answer(*server, request)) {
    return absl::DataLossError(absl::StrCat("wrong answer (", reply->size(), " bytes) from '", *server, "'"));
  }
  if (!options.server.empty() && *server != options.server) {
    return absl::DataLossError(absl::StrCat("answered by ", *server, ", not the named ", options.server));
  }
  return absl::OkStatus();
}

void RpcAgent::RunCallers() {
  const std::string& service = call_service_;
  const size_t want = static_cast<size_t>(std::max(1, absl::GetFlag(FLAGS_call_wait_servers)));
  for (absl::Time end = absl::Now() + absl::Seconds(60); node_->Servers(service).size() < want;) {
    if (absl::Now() > end) {
      Emit(absl::StrCat("ERROR only ", node_->Servers(service).size(), " of ", want, " servers of ", service));
      return;
    }
    {
      absl::MutexLock lock(&mu_);
      if (quit_) return;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  Emit(absl::StrCat("CALLING ", service, " servers=", absl::StrJoin(node_->Servers(service), ",")));
  const int threads = std::max(1, absl::GetFlag(FLAGS_call_threads));
  const int calls = absl::GetFlag(FLAGS_calls);
  const size_t payload = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_call_payload_bytes)));
  mesh::CallOptions options;
  options.server = absl::GetFlag(FLAGS_call_server);
  const absl::Duration deadline = absl::Milliseconds(absl::GetFlag(FLAGS_call_deadline_ms));
  absl::Mutex tally_mu;
  uint64_t ok = 0, bad = 0, logged = 0;
  std::map<std::string, uint64_t> by_server, by_code;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      for (int i = t; i < calls; i += threads) {
        std::string request = absl::StrCat(node_->name(), "|", t, "|", i, "|");
        for (size_t k = 0; k < payload; ++k) request.push_back(static_cast<char>((i * 31 + k * 7 + t) & 0xff));
        std::string server;
        absl::Status s = CheckedCall(service, request, absl::Now() + deadline, options, &server);
        absl::MutexLock lock(&tally_mu);
        if (s.ok()) {
          ++ok;
          ++by_server[server];
        } else {
          ++by_code[std::string(absl::StatusCodeToString(s.code()))];
          if (absl::IsDataLoss(s)) ++bad;
          if (logged++ < 20) Emit(absl::StrCat("CALL_ERROR ", service, " ", s.ToString()));
        }
      }
    });
  }
  for (auto& w : workers) w.join();
  std::vector<std::string> servers, codes;
  for (const auto& [s, n] : by_server) servers.push_back(absl::StrCat(s, ":", n));
  for (const auto& [c, n] : by_code) codes.push_back(absl::StrCat(c, ":", n));
  Emit(absl::StrCat("CALLS ", service, " ok=", ok, " failed=", calls - static_cast<int>(ok), " bad=", bad,
                    " servers=", absl::StrJoin(servers, ","), " codes=", absl::StrJoin(codes, ",")));
  Emit("CALLS_DONE");
}

bool RpcAgent::HandleCommand(const std::string& cmd) {
  std::vector<std::string> w = absl::StrSplit(cmd, ' ', absl::SkipEmpty());
  if (w.size() == 2 && w[0] == "servers") {
    Emit(absl::StrCat("SERVERS ", w[1], " ", absl::StrJoin(node_->Servers(w[1]), ",")));
    return true;
  }
  if (w.empty() || w[0] != "call") return false;
  int deadline_ms = 0;
  if (w.size() < 3 || w.size() > 5 || !absl::SimpleAtoi(w[2], &deadline_ms)) {
    Emit(absl::StrCat("ERROR usage: call SERVICE DEADLINE_MS [SERVER|-] [PAYLOAD], not '", cmd, "'"));
    return true;
  }
  mesh::CallOptions options;
  if (w.size() >= 4 && w[3] != "-") options.server = w[3];
  const std::string request = w.size() == 5 ? w[4] : absl::StrCat("call from ", node_->name());
  const std::string service = w[1];
  absl::MutexLock lock(&mu_);
  if (quit_) return true;
  threads_.emplace_back([this, service, request, options, deadline_ms] {
    const int64_t t0 = MonotonicNs();
    Emit(absl::StrCat("CALL_START ", service, " ns=", t0));
    std::string server;
    absl::Status s = CheckedCall(service, request, absl::Now() + absl::Milliseconds(deadline_ms), options, &server);
    const int64_t t1 = MonotonicNs();
    Emit(absl::StrCat("CALL_RESULT ", service, " code=", absl::StatusCodeToString(s.code()),
                      " ms=", (t1 - t0) / 1000000, " end_ns=", t1, " server=", server.empty() ? "-" : server,
                      " msg=", s.message()));
  });
  return true;
}

void RpcAgent::Report() {
  for (const auto& s : served_) {
    if (s->reg == nullptr) continue;
    Emit(absl::StrCat("SERVED ", s->service, " handled=", s->reg->handled(), " seen=", s->seen.load(),
                      " bad=", s->bad.load()));
  }
}

void RpcAgent::Shutdown() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    if (quit_) return;
    quit_ = true;
    threads.swap(threads_);
  }
  for (auto& t : threads) t.join();
  Report();
  for (auto& s : served_) s->reg.reset();
}

}  // namespace meshworker
