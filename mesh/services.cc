#include "mesh/services.h"

#include <map>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "mesh/node_impl.h"
#include "proto/mesh/v1/mesh.grpc.pb.h"

namespace mesh {
namespace {

// Longest wait a Topology.Send may ask for.
constexpr uint32_t kMaxSendTimeoutMs = 10000;
// Members one JoinRequest may list in `known`: far more than any mesh on
// one host, far fewer than kMaxRequestBytes would let through.
constexpr int kMaxKnownMembers = 1024;
// Longest Member.grpc_address accepted ("unix:" plus a 107-byte path, or a
// host name of up to 253 bytes and a port, fit easily).
constexpr size_t kMaxAddressBytes = 300;
// Longest WatchTopology.min_interval_ms accepted.
constexpr uint32_t kMaxWatchIntervalMs = 60000;
// Watch streams (WatchMembers and WatchTopology together) served at once:
// each holds a thread.
constexpr int kMaxWatchStreams = 64;
// Whole-mesh GetTopology calls in flight at once: each holds a thread that
// asks every member.
constexpr int kMaxTopologyGathers = 8;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// A counted resource (watch streams, topology gatherings): TryAcquire fails
// once `limit` are held. Thread-safe. Shared (shared_ptr) by the services of
// one server and the calls that hold a unit, which may end after the
// service objects are gone.
class CallBudget {
 public:
  explicit CallBudget(int limit) : limit_(limit) {}
  bool TryAcquire() {
    absl::MutexLock lock(&mu_);
    if (held_ >= limit_) return false;
    ++held_;
    return true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    --held_;
  }
  int limit() const { return limit_; }

 private:
  const int limit_;
  absl::Mutex mu_;
  int held_ ABSL_GUARDED_BY(mu_) = 0;
};

// A server stream that fails at once with `status`.
template <typename T>
class FailedWriteReactor : public grpc::ServerWriteReactor<T> {
 public:
  explicit FailedWriteReactor(grpc::Status status) { this->Finish(std::move(status)); }
  void OnDone() override { delete this; }
};

grpc::Status TooManyWatchStreams(int limit) {
  return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                      absl::StrCat("this node already serves ", limit,
                                   " watch streams; close some, or poll GetTopology instead"));
}

// What ControlServer's limits leave to check in a member a client sends
// (NodeImpl::CheckMember checks the rest); `what` names it in the error.
grpc::Status CheckMemberSize(const mesh::v1::Member& m, absl::string_view what) {
  if (m.grpc_address().size() > kMaxAddressBytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(what, ".grpc_address is ", m.grpc_address().size(), " bytes, over the limit of ",
                                     kMaxAddressBytes, "; use a shorter socket path or host name"));
  }
  return grpc::Status::OK;
}

// A server stream fed by its own thread: `step` produces the messages to
// write after each change of the node (the first call with the initial
// state), and the thread writes them one by one, until the client cancels or
// the node stops.
template <typename T>
class WatchReactor : public grpc::ServerWriteReactor<T> {
 public:
  using Step = std::function<std::vector<T>()>;

  // Holds one unit of `budget` (acquired by the caller) until OnDone.
  WatchReactor(NodeImpl* node, std::shared_ptr<CallBudget> budget, absl::Duration min_interval, Step step)
      : node_(node), budget_(std::move(budget)), min_interval_(min_interval), step_(std::move(step)) {
    thread_ = std::thread([this] { Run(); });
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) broken_ = true;
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    broken_ = true;
  }
  void OnDone() override {
    thread_.join();
    budget_->Release();
    delete this;
  }

 private:
  bool Stopped() {
    absl::MutexLock lock(&mu_);
    return broken_ || node_->stopping();
  }

  void Run() {
    uint64_t seen = node_->ChangeGeneration();
    bool first = true;
    while (!Stopped()) {
      if (!first) {
        // Wait for a change, in slices so a cancelled client is noticed.
        while (!Stopped() && node_->ChangeGeneration() == seen) {
          node_->WaitForChange(seen, absl::Now() + absl::Milliseconds(100));
        }
        if (Stopped()) break;
        // Coalesce bursts of changes; a cancellation (e.g. the server
        // shutting down) cuts the wait short.
        absl::MutexLock lock(&mu_);
        mu_.AwaitWithTimeout(absl::Condition(&broken_), min_interval_);
      }
      first = false;
      seen = node_->ChangeGeneration();
      for (T& item : step_()) {
        {
          absl::MutexLock lock(&mu_);
          if (broken_) break;
          writing_ = true;
        }
        this->StartWrite(&item);
        absl::MutexLock lock(&mu_);
        auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_ || broken_; };
        mu_.Await(absl::Condition(&done));
        // A write still pending after cancellation completes with ok=false
        // before OnDone; wait for it so `item` outlives it.
        if (writing_) {
          auto settled = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; };
          mu_.AwaitWithTimeout(absl::Condition(&settled), absl::Seconds(1));
        }
      }
    }
    this->Finish(node_->stopping() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is stopping")
                                   : grpc::Status::OK);
  }

  NodeImpl* const node_;
  const std::shared_ptr<CallBudget> budget_;
  const absl::Duration min_interval_;
  const Step step_;
  std::thread thread_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
};

class DiscoveryService final : public mesh::v1::Discovery::CallbackService {
 public:
  DiscoveryService(NodeImpl* node, std::shared_ptr<CallBudget> watches) : node_(node), watches_(std::move(watches)) {}

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const mesh::v1::JoinRequest* req,
                                 mesh::v1::JoinResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!req->has_member()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "JoinRequest.member is required; set it to the calling node"));
      return reactor;
    }
    if (req->known_size() > kMaxKnownMembers) {
      reactor->Finish(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("JoinRequest.known lists ", req->known_size(), " members, over the limit of ", kMaxKnownMembers,
                       "; send at most ", kMaxKnownMembers)));
      return reactor;
    }
    grpc::Status sized = CheckMemberSize(req->member(), "JoinRequest.member");
    for (int i = 0; sized.ok() && i < req->known_size(); ++i) {
      sized = CheckMemberSize(req->known(i), absl::StrCat("JoinRequest.known[", i, "]"));
    }
    if (!sized.ok()) {
      reactor->Finish(sized);
      return reactor;
    }
    auto members = node_->HandleJoin(
        req->member(), std::vector<mesh::v1::Member>(req->known().begin(), req->known().end()));
    if (members.ok()) {
      for (auto& m : *members) *resp->add_members() = std::move(m);
    }
    reactor->Finish(ToGrpc(members.status()));
    return reactor;
  }

  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const mesh::v1::LeaveRequest* req,
                                  mesh::v1::LeaveResponse*) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->name().empty() || req->id() == 0) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "LeaveRequest needs the leaving member's name and (non-zero) id"));
      return reactor;
    }
    // Unknown names and stale ids are ignored (Leave is idempotent).
    node_->HandleLeave(req->name(), req->id());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<mesh::v1::MembershipEvent>* WatchMembers(grpc::CallbackServerContext*,
                                                                    const mesh::v1::WatchMembersRequest*) override {
    if (!watches_->TryAcquire()) {
      return new FailedWriteReactor<mesh::v1::MembershipEvent>(TooManyWatchStreams(watches_->limit()));
    }
    // Remembers what the client was last told, to send only changes.
    auto last = std::make_shared<std::map<std::string, mesh::v1::Member>>();
    NodeImpl* node = node_;
    return new WatchReactor<mesh::v1::MembershipEvent>(node, watches_, absl::ZeroDuration(), [node, last] {
      std::vector<mesh::v1::MembershipEvent> events;
      std::map<std::string, mesh::v1::Member> now;
      for (auto& m : node->Members()) now[m.name()] = m;
      for (auto& [name, m] : now) {
        auto it = last->find(name);
        if (it == last->end() || it->second.id() != m.id() || it->second.state() != m.state()) {
          *events.emplace_back().mutable_member() = m;
        }
      }
      for (auto& [name, m] : *last) {
        if (now.count(name) == 0) {
          mesh::v1::Member gone = m;
          gone.set_state(mesh::v1::DOWN);
          *events.emplace_back().mutable_member() = gone;
        }
      }
      *last = std::move(now);
      return events;
    });
  }

 private:
  NodeImpl* const node_;
  const std::shared_ptr<CallBudget> watches_;
};

class TopologyService final : public mesh::v1::Topology::CallbackService {
 public:
  TopologyService(NodeImpl* node, std::shared_ptr<CallBudget> watches)
      : node_(node), watches_(std::move(watches)), gathers_(std::make_shared<CallBudget>(kMaxTopologyGathers)) {}

  grpc::ServerUnaryReactor* GetTopology(grpc::CallbackServerContext* ctx, const mesh::v1::GetTopologyRequest* req,
                                        mesh::v1::TopologySnapshot* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->local_only()) {
      auto snap = node_->Topology(true);
      if (snap.ok()) *resp = std::move(*snap);
      reactor->Finish(ToGrpc(snap.status()));
      return reactor;
    }
    // Gathering asks every member over gRPC (up to 2 s): do it off the gRPC
    // thread, a bounded number at once. The server's shutdown waits for
    // Finish, so `node_` is alive for as long as the thread uses it.
    if (!gathers_->TryAcquire()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   absl::StrCat(gathers_->limit(),
                                                " whole-mesh GetTopology calls are already in flight; retry "
                                                "shortly, or ask with local_only")));
      return reactor;
    }
    NodeImpl* node = node_;
    std::thread([node, reactor, resp, gathers = gathers_] {
      auto snap = node->Topology(false);
      if (snap.ok()) *resp = std::move(*snap);
      gathers->Release();
      reactor->Finish(ToGrpc(snap.status()));
    }).detach();
    return reactor;
  }

  grpc::ServerWriteReactor<mesh::v1::TopologySnapshot>* WatchTopology(
      grpc::CallbackServerContext*, const mesh::v1::WatchTopologyRequest* req) override {
    if (req->min_interval_ms() > kMaxWatchIntervalMs) {
      return new FailedWriteReactor<mesh::v1::TopologySnapshot>(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("min_interval_ms ", req->min_interval_ms(),
                                                           " is over the limit of ", kMaxWatchIntervalMs)));
    }
    if (!watches_->TryAcquire()) {
      return new FailedWriteReactor<mesh::v1::TopologySnapshot>(TooManyWatchStreams(watches_->limit()));
    }
    NodeImpl* node = node_;
    bool local_only = req->local_only();
    uint32_t interval_ms = req->min_interval_ms() == 0 ? 100 : req->min_interval_ms();
    return new WatchReactor<mesh::v1::TopologySnapshot>(
        node, watches_, absl::Milliseconds(interval_ms), [node, local_only] {
          std::vector<mesh::v1::TopologySnapshot> out;
          auto snap = node->Topology(local_only);
          if (snap.ok()) out.push_back(std::move(*snap));
          return out;
        });
  }

  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* ctx, const mesh::v1::SendRequest* req,
                                 mesh::v1::SendResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->timeout_ms() > kMaxSendTimeoutMs) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("timeout_ms ", req->timeout_ms(), " is over the limit of ",
                                                kMaxSendTimeoutMs)));
      return reactor;
    }
    if (req->broadcast() == !req->to().empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "set exactly one of `to` and `broadcast`"));
      return reactor;
    }
    absl::Time deadline =
        req->timeout_ms() == 0 ? absl::InfinitePast() : absl::Now() + absl::Milliseconds(req->timeout_ms());
    absl::Status status;
    if (req->broadcast()) {
      auto sent = node_->Broadcast(req->payload(), deadline);
      status = sent.status();
      if (sent.ok()) {
        for (auto& p : sent->delivered) resp->add_delivered_to(p);
        for (auto& [p, why] : sent->not_reached) {
          mesh::v1::SendResponse::NotReached* n = resp->add_not_reached();
          n->set_peer(p);
          n->set_reason(std::string(why.message()));
        }
      }
    } else {
      status = node_->Send(req->to(), req->payload(), deadline);
      if (status.ok()) resp->add_delivered_to(req->to());
    }
    reactor->Finish(ToGrpc(status));
    return reactor;
  }

 private:
  NodeImpl* const node_;
  const std::shared_ptr<CallBudget> watches_;
  const std::shared_ptr<CallBudget> gathers_;
};

}  // namespace

std::vector<std::unique_ptr<grpc::Service>> MakeServices(NodeImpl* node) {
  std::vector<std::unique_ptr<grpc::Service>> services;
  auto watches = std::make_shared<CallBudget>(kMaxWatchStreams);
  services.push_back(std::make_unique<DiscoveryService>(node, watches));
  services.push_back(std::make_unique<TopologyService>(node, watches));
  return services;
}

}  // namespace mesh
