#include "mesh/rpc/rpc.h"

#include <sched.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "mesh/pubsub/topic_name.h"
#include "ringbuf/wait.h"

namespace mesh {
namespace rpc {
namespace {

std::string Header16(FrameKind kind, uint32_t channel, uint64_t correlation) {
  FrameHeader h;
  h.kind = static_cast<uint8_t>(kind);
  h.channel = channel;
  h.correlation = correlation;
  char buf[kMaxFrameHeaderBytes];
  const size_t n = EncodeFrameHeader(h, buf);
  return std::string(buf, n);
}

bool IsFatal(const absl::Status& s) { return absl::IsDataLoss(s) || absl::IsUnavailable(s); }

// CPUs this process may run on.
int UsableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  return CPU_COUNT(&set);
}

}  // namespace

std::string EncodeStatusPrefix(absl::StatusCode code) {
  const uint32_t wire = envelope_internal::ToWire32(static_cast<uint32_t>(code));
  return std::string(reinterpret_cast<const char*>(&wire), kStatusBytes);
}

absl::StatusOr<std::string> DecodeResponse(absl::string_view payload) {
  if (payload.size() < kStatusBytes) {
    return absl::InternalError(absl::StrCat("malformed response: ", payload.size(), " bytes, no status"));
  }
  uint32_t wire = 0;
  std::memcpy(&wire, payload.data(), kStatusBytes);  // copied once: shared memory
  const uint32_t code = envelope_internal::ToWire32(wire);
  const absl::string_view rest = payload.substr(kStatusBytes);
  if (code == 0) return std::string(rest);
  if (code > static_cast<uint32_t>(absl::StatusCode::kUnauthenticated)) {
    return absl::InternalError(absl::StrCat("malformed response: status code ", code));
  }
  return absl::Status(static_cast<absl::StatusCode>(code), rest);
}

// ---------------------------------------------------------------- ServiceCore

ServiceCore::ServiceCore(std::string name, uint32_t id, ServiceHandler handler, std::function<void()> on_close)
    : name_(std::move(name)), id_(id), handler_(std::move(handler)), gate_(std::move(on_close)) {}

ServiceCore::~ServiceCore() { Close(); }

absl::StatusOr<std::string> ServiceCore::Handle(const RequestView& request) {
  absl::StatusOr<std::string> result = absl::NotFoundError(absl::StrCat("service ", name_, " is no longer served here"));
  if (gate_.Run([&] { result = handler_(request); })) handled_.fetch_add(1, std::memory_order_relaxed);
  return result;
}

// ------------------------------------------------------------------------ Rpc

Rpc::Rpc(RpcContext context, interest::Exchange* exchange, const Logger* log)
    : context_(std::move(context)),
      log_(log),
      exchange_(exchange),
      registry_(std::make_shared<Registry>()),
      max_spinning_callers_(std::max(1, UsableCpus() - 1)) {
  absl::MutexLock lock(&registry_->mu);
  registry_->exchange = exchange;
}

Rpc::~Rpc() { Detach(); }

absl::StatusOr<std::shared_ptr<ServiceCore>> Rpc::Serve(absl::string_view name, ServiceHandler handler) {
  if (absl::Status valid = pubsub::ValidateTopicName(name, "service"); !valid.ok()) return valid;
  if (!handler) return absl::InvalidArgumentError(absl::StrCat("Serve(", name, "): the handler is empty"));
  // relaxed: a unique number.
  const uint32_t id = next_service_id_.fetch_add(1, std::memory_order_relaxed);
  const std::string n(name);
  std::weak_ptr<Registry> weak = registry_;
  auto on_close = [weak, id, n] {
    std::shared_ptr<Registry> r = weak.lock();
    if (r == nullptr) return;
    absl::MutexLock lock(&r->mu);
    r->by_id.erase(id);
    auto it = r->by_name.find(n);
    if (it != r->by_name.end() && it->second == id) r->by_name.erase(it);
    if (r->exchange != nullptr) r->exchange->Unserve(n);
  };
  auto core = std::make_shared<ServiceCore>(n, id, std::move(handler), std::move(on_close));
  absl::MutexLock lock(&registry_->mu);
  if (registry_->exchange == nullptr) {
    core->Detach();
    return absl::FailedPreconditionError(absl::StrCat("cannot serve ", name, ": the node is gone"));
  }
  if (registry_->by_name.count(n) != 0) {
    core->Detach();
    return absl::AlreadyExistsError(
        absl::StrCat("this node already serves ", name, "; destroy that ServiceRegistration first"));
  }
  registry_->by_id[id] = core;
  registry_->by_name[n] = id;
  registry_->exchange->Serve(n, id);
  return core;
}

std::vector<std::string> Rpc::Servers(absl::string_view service) const {
  std::vector<std::string> out;
  {
    absl::MutexLock lock(&registry_->mu);
    if (registry_->exchange == nullptr) return out;
  }
  for (const auto& [link, id] : exchange_->Servers(service)) out.push_back(link->peer_name());
  return out;
}

absl::StatusOr<std::string> Rpc::Call(absl::string_view service, absl::string_view request, absl::Time deadline,
                                      const CallOptions& options) {
  if (absl::Status running = context_.check_running("Call()"); !running.ok()) return running;
  if (context_.on_receive_thread && context_.on_receive_thread()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "Call(\"", service, "\") from a handler on this node's receive thread (a message, subscription or "
        "service handler), which is the thread that would deliver the response: it could only time out. "
        "Make the call from another thread (hand the work to a thread of your own)"));
  }
  if (absl::Status valid = pubsub::ValidateTopicName(service, "service"); !valid.ok()) return valid;
  if (request.size() > context_.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("request of ", request.size(), " bytes to ", service,
                                                   " exceeds max_message_bytes (", context_.max_message_bytes,
                                                   ")"));
  }
  std::vector<std::pair<std::shared_ptr<Transport>, uint32_t>> servers = exchange_->Servers(service);
  std::shared_ptr<Transport> link;
  uint32_t service_id = 0;
  if (!options.server.empty()) {
    for (auto& [l, id] : servers) {
      if (l->peer_name() == options.server) {
        link = l;
        service_id = id;
      }
    }
    if (link == nullptr) {
      std::vector<std::string> names;
      for (const auto& [l, id] : servers) names.push_back(l->peer_name());
      return absl::NotFoundError(absl::StrCat("node ", options.server, " does not serve ", service,
                                              " (or is not linked); nodes that do: [",
                                              absl::StrJoin(names, ", "), "]"));
    }
  } else {
    if (servers.empty()) {
      return absl::NotFoundError(
          absl::StrCat("no linked node serves ", service, "; is its server running and in this mesh?"));
    }
    // relaxed: only spreads the calls.
    const size_t pick = round_robin_.fetch_add(1, std::memory_order_relaxed) % servers.size();
    link = servers[pick].first;
    service_id = servers[pick].second;
  }
  // relaxed: a unique number.
  const uint64_t id = next_call_.fetch_add(1, std::memory_order_relaxed);
  auto pending = std::make_shared<Pending>();
  pending->link = link.get();
  pending->server = link->peer_name();
  {
    absl::MutexLock lock(&calls_mu_);
    if (detached_) return absl::CancelledError("the node is stopping");
    calls_[id] = pending;
  }
  // LinkDown may have run before the insert: then nobody would fail it.
  if (link->down()) {
    (void)TakePending(id);
    return absl::UnavailableError(absl::StrCat("server ", pending->server, " went down"));
  }
  absl::Status sent = link->SendFrame(Header16(FrameKind::kRequest, service_id, id), request, deadline);
  if (!sent.ok()) {
    (void)TakePending(id);
    if (IsFatal(sent) && context_.link_failed) context_.link_failed(link, absl::StrCat("a call failed: ", sent.message()));
    return absl::Status(sent.code(),
                        absl::StrCat("cannot send the request to ", service, " at ", pending->server, ": ",
                                     sent.message()));
  }
  // Spin for the response (taking it from the ring ourselves), then sleep
  // until the receive thread completes the call, the link goes down, or
  // the deadline.
  if (context_.call_spin > absl::ZeroDuration()) {
    SpinForResponse(link, *pending, std::min(deadline, absl::Now() + context_.call_spin));
  }
  {
    absl::MutexLock lock(&pending->mu);
    pending->sleeping = true;
    auto done = [p = pending.get()]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->done; };
    if (pending->mu.AwaitWithDeadline(absl::Condition(&done), deadline)) return std::move(pending->result);
  }
  // Deadline: withdraw the call; if a response won the race, take it.
  if (TakePending(id) == nullptr) {
    absl::MutexLock lock(&pending->mu);
    pending->mu.Await(absl::Condition(+[](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->done; },
                                      pending.get()));
    return std::move(pending->result);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no response from ", pending->server, " to ", service, " by the deadline"));
}

void Rpc::SpinForResponse(const std::shared_ptr<Transport>& link, const Pending& pending, absl::Time spin_end) {
  // relaxed: a count (see spinning_callers_).
  if (spinning_callers_.fetch_add(1, std::memory_order_relaxed) >= max_spinning_callers_) {
    spinning_callers_.fetch_sub(1, std::memory_order_relaxed);
    return;
  }
  bool aside = true;  // still taking frames from the ring ourselves
  // acquire: pairs with the release store in Complete ([CallReady]).
  for (uint32_t i = 0; !pending.ready.load(std::memory_order_acquire); ++i) {
    if (aside) {
      bool refused = false;
      const Transport::AsideDrain drained = link->DrainAside(kAsideBatch, [&](absl::string_view frame) {
        if (TakeResponse(*link, frame)) return true;
        refused = true;
        return false;
      });
      if (drained.wake_receiver && context_.wake_receiver) context_.wake_receiver();
      // Something for the receive thread is in the way (a message, a
      // publication, a bad frame): it is the receive thread's turn now.
      if (refused || drained.wake_receiver || link->down()) aside = false;
    }
    if ((i & 63) == 63 && absl::Now() >= spin_end) break;
    ringbuf::CpuRelax();
  }
  spinning_callers_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as above
}

bool Rpc::TakeResponse(const Transport& link, absl::string_view frame) {
  const ParsedFrame parsed = ParseFrame(frame);
  if (!parsed.ok() || parsed.header.frame_kind() != FrameKind::kResponse ||
      parsed.payload.size() > context_.max_message_bytes) {
    return false;
  }
  OnResponse(link, parsed.header, parsed.payload);
  return true;
}

std::shared_ptr<Rpc::Pending> Rpc::TakePending(uint64_t id) {
  absl::MutexLock lock(&calls_mu_);
  auto it = calls_.find(id);
  if (it == calls_.end()) return nullptr;
  std::shared_ptr<Pending> p = std::move(it->second);
  calls_.erase(it);
  return p;
}

bool Rpc::Complete(Pending* p, absl::StatusOr<std::string> result) {
  absl::MutexLock lock(&p->mu);
  p->result = std::move(result);
  p->done = true;
  // [CallReady] release: after the result is written.
  p->ready.store(true, std::memory_order_release);
  return p->sleeping;
}

void Rpc::OnRequest(const std::shared_ptr<Transport>& link, const FrameHeader& header, absl::string_view payload) {
  std::shared_ptr<ServiceCore> core;
  {
    absl::MutexLock lock(&registry_->mu);
    auto it = registry_->by_id.find(header.channel);
    if (it != registry_->by_id.end()) core = it->second;
  }
  absl::StatusOr<std::string> result =
      core != nullptr ? core->Handle(RequestView{core->name(), link->peer_name(), payload})
                      : absl::NotFoundError(absl::StrCat("service id ", header.channel, " is not served here"));
  if (core == nullptr) unknown_service_.fetch_add(1, std::memory_order_relaxed);
  if (result.ok() && result->size() + kStatusBytes > context_.max_message_bytes) {
    result = absl::ResourceExhaustedError(absl::StrCat("the response is ", result->size(),
                                                       " bytes, over the server's max_message_bytes (",
                                                       context_.max_message_bytes, ")"));
  }
  const std::string prefix =
      Header16(FrameKind::kResponse, 0, header.correlation) + EncodeStatusPrefix(result.status().code());
  const absl::string_view body = result.ok() ? absl::string_view(*result) : result.status().message();
  absl::Status sent = link->SendFrame(prefix, body, absl::Now() + kResponseWait);
  if (!sent.ok()) {
    unsent_.fetch_add(1, std::memory_order_relaxed);
    uint64_t left_out = 0;
    if (drop_log_.Allow(absl::Now(), &left_out)) {
      log_->Warning("could not send a response to %s: %s%s", link->peer_name(), sent.message(),
                    LogLimiter::LeftOut(left_out, "unsent responses"));
    }
    if (IsFatal(sent) && context_.link_failed) context_.link_failed(link, "a response could not be sent");
  }
}

void Rpc::OnResponse(const Transport& link, const FrameHeader& header, absl::string_view payload) {
  std::shared_ptr<Pending> p;
  {
    absl::MutexLock lock(&calls_mu_);
    auto it = calls_.find(header.correlation);
    if (it == calls_.end()) {
      late_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (it->second->link != &link) {
      forged_.fetch_add(1, std::memory_order_relaxed);
      uint64_t left_out = 0;
      if (drop_log_.Allow(absl::Now(), &left_out)) {
        log_->Warning("dropped a response from %s to a call that went to %s%s", link.peer_name(),
                      it->second->server, LogLimiter::LeftOut(left_out, "dropped responses"));
      }
      return;
    }
    p = std::move(it->second);
    calls_.erase(it);
  }
  absl::StatusOr<std::string> result = DecodeResponse(payload);
  if (!result.ok() && absl::StartsWith(result.status().message(), "malformed response")) {
    malformed_.fetch_add(1, std::memory_order_relaxed);
  }
  // A sleeping caller was just woken: give it the CPU now rather than
  // after this thread's spin (with two CPUs and spinning receive threads,
  // it would otherwise wait for a time slice).
  if (Complete(p.get(), std::move(result))) sched_yield();
}

void Rpc::LinkDown(const Transport* link, absl::string_view why) {
  std::vector<std::shared_ptr<Pending>> failed;
  {
    absl::MutexLock lock(&calls_mu_);
    for (auto it = calls_.begin(); it != calls_.end();) {
      if (it->second->link == link) {
        failed.push_back(std::move(it->second));
        it = calls_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const auto& p : failed) {
    Complete(p.get(), absl::UnavailableError(absl::StrCat("server ", p->server, " went down mid-call: ", why)));
  }
}

void Rpc::Detach() {
  std::vector<std::shared_ptr<Pending>> failed;
  {
    absl::MutexLock lock(&calls_mu_);
    detached_ = true;
    for (auto& [id, p] : calls_) failed.push_back(std::move(p));
    calls_.clear();
  }
  for (const auto& p : failed) Complete(p.get(), absl::CancelledError("the node is stopping"));
  std::vector<std::shared_ptr<ServiceCore>> services;
  {
    absl::MutexLock lock(&registry_->mu);
    registry_->exchange = nullptr;
    for (const auto& [id, core] : registry_->by_id) services.push_back(core);
  }
  for (const auto& s : services) s->Detach();
}

Rpc::Counters Rpc::counters() const {
  // relaxed: statistics.
  Counters c;
  c.late_responses = late_.load(std::memory_order_relaxed);
  c.forged_responses = forged_.load(std::memory_order_relaxed);
  c.unknown_service = unknown_service_.load(std::memory_order_relaxed);
  c.responses_unsent = unsent_.load(std::memory_order_relaxed);
  c.malformed = malformed_.load(std::memory_order_relaxed);
  return c;
}

void Rpc::Report(mesh::v1::NodeTopics* out) const {
  const Counters c = counters();
  out->set_dropped_late_responses(c.late_responses);
  out->set_dropped_forged_responses(c.forged_responses + c.malformed);
  out->set_unknown_service_requests(c.unknown_service);
  absl::MutexLock lock(&registry_->mu);
  for (const auto& [name, id] : registry_->by_name) {
    auto it = registry_->by_id.find(id);
    if (it == registry_->by_id.end()) continue;
    mesh::v1::ServiceInfo* info = out->add_served();
    info->set_service(name);
    info->set_requests(it->second->handled());
  }
}

}  // namespace rpc
}  // namespace mesh
