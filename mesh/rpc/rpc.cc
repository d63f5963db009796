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

// Encodes a request's or response's header into `out`; returns its length.
size_t EncodeHeader16(FrameKind kind, uint32_t channel, uint64_t correlation, char out[kMaxFrameHeaderBytes]) {
  FrameHeader h;
  h.kind = static_cast<uint8_t>(kind);
  h.channel = channel;
  h.correlation = correlation;
  return EncodeFrameHeader(h, out);
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
  // The closed-gate error is built only when it is the answer: a message
  // costs two allocations, on every request if made up front.
  absl::StatusOr<std::string> result;
  if (!gate_.Run([&] { result = handler_(request); })) {
    return absl::NotFoundError(absl::StrCat("service ", name_, " is no longer served here"));
  }
  handled_.fetch_add(1, std::memory_order_relaxed);
  return result;
}

// ------------------------------------------------------------------------ Rpc

Rpc::Rpc(RpcContext context, interest::Exchange* exchange, const Logger* log)
    : context_(std::move(context)),
      log_(log),
      exchange_(exchange),
      registry_(std::make_shared<Registry>()),
      max_spinning_callers_(std::max(1, UsableCpus() - 1)) {
  std::lock_guard<std::mutex> lock(registry_->mu);
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
    std::lock_guard<std::mutex> lock(r->mu);
    r->by_id.erase(id);
    auto it = r->by_name.find(n);
    if (it != r->by_name.end() && it->second == id) r->by_name.erase(it);
    if (r->exchange != nullptr) r->exchange->Unserve(n);
  };
  auto core = std::make_shared<ServiceCore>(n, id, std::move(handler), std::move(on_close));
  std::lock_guard<std::mutex> lock(registry_->mu);
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
    std::lock_guard<std::mutex> lock(registry_->mu);
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
  if (request.size() > context_.max_message_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("request of ", request.size(), " bytes to ", service,
                                                   " exceeds max_message_bytes (", context_.max_message_bytes,
                                                   ")"));
  }
  absl::StatusOr<std::shared_ptr<const ServerList>> found = ServersOf(service);
  if (!found.ok()) return found.status();
  const ServerList& servers = **found;
  std::shared_ptr<Transport> link;
  uint32_t service_id = 0;
  if (!options.server.empty()) {
    for (const auto& [l, id] : servers) {
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
    std::lock_guard<std::mutex> lock(calls_mu_);
    if (detached_) return absl::CancelledError("the node is stopping");
    calls_[id] = pending;
  }
  // LinkDown may have run before the insert: then nobody would fail it.
  if (link->down()) {
    (void)TakePending(id);
    return absl::UnavailableError(absl::StrCat("server ", pending->server, " went down"));
  }
  // A spinning caller takes the link's consumer role before the request
  // goes out, so that its response cannot reach the receive thread first
  // (which would then spin on, beside us, for a response it took).
  Spin spin = BeginSpin(*link);
  char header[kMaxFrameHeaderBytes];
  const size_t header_bytes = EncodeHeader16(FrameKind::kRequest, service_id, id, header);
  absl::Status sent = link->SendFrame(absl::string_view(header, header_bytes), request, deadline);
  if (!sent.ok()) {
    EndSpin(*link, &spin);
    (void)TakePending(id);
    if (IsFatal(sent) && context_.link_failed) context_.link_failed(link, absl::StrCat("a call failed: ", sent.message()));
    return absl::Status(sent.code(),
                        absl::StrCat("cannot send the request to ", service, " at ", pending->server, ": ",
                                     sent.message()));
  }
  // Spin for the response (taking it from the ring ourselves), then sleep
  // until the receive thread completes the call, the link goes down, or
  // the deadline.
  if (spin.active) SpinForResponse(*link, *pending, deadline, &spin);
  {
    std::unique_lock<std::mutex> lock(pending->mu);
    pending->sleeping = true;
    auto done = [p = pending.get()]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return p->done; };
    if (deadline == absl::InfiniteFuture()) {
      pending->cv.wait(lock, done);
      return std::move(pending->result);
    }
    if (pending->cv.wait_until(lock, absl::ToChronoTime(deadline), done)) return std::move(pending->result);
  }
  // Deadline: withdraw the call; if a response won the race, take it.
  if (TakePending(id) == nullptr) {
    std::unique_lock<std::mutex> lock(pending->mu);
    pending->cv.wait(lock, [p = pending.get()]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return p->done; });
    return std::move(pending->result);
  }
  return absl::DeadlineExceededError(
      absl::StrCat("no response from ", pending->server, " to ", service, " by the deadline"));
}

Rpc::Spin Rpc::BeginSpin(Transport& link) {
  Spin spin;
  if (context_.call_spin <= absl::ZeroDuration()) return spin;
  // relaxed: a count (see spinning_callers_).
  if (spinning_callers_.fetch_add(1, std::memory_order_relaxed) >= max_spinning_callers_) {
    spinning_callers_.fetch_sub(1, std::memory_order_relaxed);
    return spin;
  }
  spin.active = true;
  // The receive thread holds the role only for one drain of the ring.
  for (int i = 0; i < kBorrowTries && !spin.held; ++i) {
    spin.held = link.BorrowConsumer();
    if (!spin.held) ringbuf::CpuRelax();
  }
  return spin;
}

void Rpc::EndSpin(Transport& link, Spin* spin) {
  if (spin->held && link.ReturnConsumer() && context_.wake_receiver) context_.wake_receiver();
  spin->held = false;
  if (spin->active) spinning_callers_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: as in BeginSpin
  spin->active = false;
}

void Rpc::SpinForResponse(Transport& link, const Pending& pending, absl::Time deadline, Spin* spin) {
  // The consumer role stays ours for the whole spin (so that the receive
  // thread leaves the ring alone and can go to sleep), until a frame that
  // is not a response is first in line: then it is the receive thread's
  // turn, and we only watch for the call to complete.
  bool aside = true;
  uint32_t busy = 0;  // borrows in a row that found the role taken
  absl::Time spin_end = absl::InfinitePast();
  // acquire: pairs with the release store in Complete ([CallReady]).
  for (uint32_t i = 0; !pending.ready.load(std::memory_order_acquire); ++i) {
    // The role is busy: the receive thread is in a drain of this ring. It
    // may have been preempted on our own CPU, and then our spinning would
    // only delay it: give it the CPU.
    bool yield = false;
    if (aside && !spin->held) {
      spin->held = link.BorrowConsumer();
      busy = spin->held ? 0 : busy + 1;
      yield = busy >= kBusyBeforeYield;
    }
    if (spin->held) {
      bool refused = false;
      const absl::StatusOr<size_t> drained = link.DrainBorrowed(kAsideBatch, [&](absl::string_view frame) {
        if (TakeResponse(link, frame)) return true;
        refused = true;
        return false;
      });
      if (refused || !drained.ok() || link.down()) {
        aside = false;
        const bool wake = link.ReturnConsumer() || !drained.ok();
        spin->held = false;
        if (wake && context_.wake_receiver) context_.wake_receiver();
      }
    }
    // The clock is first read after 64 turns (a response on a spinning
    // server often comes sooner): the spin starts then.
    if ((i & 63) == 63) {
      const absl::Time now = absl::Now();
      if (spin_end == absl::InfinitePast()) spin_end = std::min(deadline, now + context_.call_spin);
      if (now >= spin_end) break;
    }
    if (yield) {
      sched_yield();
    } else {
      ringbuf::CpuRelax();
    }
  }
  EndSpin(link, spin);
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

absl::StatusOr<std::shared_ptr<const Rpc::ServerList>> Rpc::ServersOf(absl::string_view service) {
  const uint64_t generation = exchange_->generation();
  {
    std::lock_guard<std::mutex> lock(servers_mu_);
    auto it = servers_.find(service);
    if (it != servers_.end() && it->second.generation == generation &&
        std::none_of(it->second.list->begin(), it->second.list->end(),
                     [](const auto& server) { return server.first->down(); })) {
      return it->second.list;
    }
  }
  if (absl::Status valid = pubsub::ValidateTopicName(service, "service"); !valid.ok()) return valid;
  auto list = std::make_shared<const ServerList>(exchange_->Servers(service));
  std::lock_guard<std::mutex> lock(servers_mu_);
  if (servers_.size() >= kServerCacheEntries) servers_.clear();
  servers_[std::string(service)] = CachedServers{generation, list};
  return list;
}

std::shared_ptr<Rpc::Pending> Rpc::TakePending(uint64_t id) {
  std::lock_guard<std::mutex> lock(calls_mu_);
  auto it = calls_.find(id);
  if (it == calls_.end()) return nullptr;
  std::shared_ptr<Pending> p = std::move(it->second);
  calls_.erase(it);
  return p;
}

bool Rpc::Complete(Pending* p, absl::StatusOr<std::string> result) {
  std::lock_guard<std::mutex> lock(p->mu);
  p->result = std::move(result);
  p->done = true;
  // [CallReady] release: after the result is written.
  p->ready.store(true, std::memory_order_release);
  if (p->sleeping) p->cv.notify_one();
  return p->sleeping;
}

void Rpc::OnRequest(const std::shared_ptr<Transport>& link, const FrameHeader& header, absl::string_view payload) {
  std::shared_ptr<ServiceCore> core;
  {
    std::lock_guard<std::mutex> lock(registry_->mu);
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
  char prefix_buf[kMaxFrameHeaderBytes + kStatusBytes];
  const size_t header_bytes = EncodeHeader16(FrameKind::kResponse, 0, header.correlation, prefix_buf);
  const uint32_t code = envelope_internal::ToWire32(static_cast<uint32_t>(result.status().code()));
  std::memcpy(prefix_buf + header_bytes, &code, kStatusBytes);
  const absl::string_view prefix(prefix_buf, header_bytes + kStatusBytes);
  const absl::string_view body = result.ok() ? absl::string_view(*result) : result.status().message();
  // No clock read unless the caller's ring is full.
  absl::Status sent = link->SendFrame(prefix, body, absl::InfinitePast());
  if (absl::IsResourceExhausted(sent)) sent = link->SendFrame(prefix, body, absl::Now() + kResponseWait);
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
    std::lock_guard<std::mutex> lock(calls_mu_);
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
    std::lock_guard<std::mutex> lock(calls_mu_);
    for (auto it = calls_.begin(); it != calls_.end();) {
      if (it->second->link == link) {
        failed.push_back(std::move(it->second));
        calls_.erase(it++);  // (flat_hash_map: erasing keeps the other iterators)
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
    std::lock_guard<std::mutex> lock(calls_mu_);
    detached_ = true;
    for (auto& [id, p] : calls_) failed.push_back(std::move(p));
    calls_.clear();
  }
  for (const auto& p : failed) Complete(p.get(), absl::CancelledError("the node is stopping"));
  std::vector<std::shared_ptr<ServiceCore>> services;
  {
    std::lock_guard<std::mutex> lock(registry_->mu);
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
  std::lock_guard<std::mutex> lock(registry_->mu);
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
