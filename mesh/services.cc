#include "mesh/services.h"

#include <map>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "mesh/node_impl.h"
#include "proto/mesh/v1/mesh.grpc.pb.h"

namespace mesh {
namespace {

// Largest Send payload accepted over gRPC, and longest wait it may ask for.
constexpr uint32_t kMaxSendTimeoutMs = 10000;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// A server stream fed by its own thread: `step` produces the messages to
// write after each change of the node (the first call with the initial
// state), and the thread writes them one by one, until the client cancels or
// the node stops.
template <typename T>
class WatchReactor : public grpc::ServerWriteReactor<T> {
 public:
  using Step = std::function<std::vector<T>()>;

  WatchReactor(NodeImpl* node, absl::Duration min_interval, Step step)
      : node_(node), min_interval_(min_interval), step_(std::move(step)) {
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
        absl::SleepFor(min_interval_);  // coalesce bursts of changes
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
  const absl::Duration min_interval_;
  const Step step_;
  std::thread thread_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
};

class DiscoveryService final : public mesh::v1::Discovery::CallbackService {
 public:
  explicit DiscoveryService(NodeImpl* node) : node_(node) {}

  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const mesh::v1::JoinRequest* req,
                                 mesh::v1::JoinResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (!req->has_member()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "JoinRequest.member is required"));
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
    node_->HandleLeave(req->name(), req->id());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<mesh::v1::MembershipEvent>* WatchMembers(grpc::CallbackServerContext*,
                                                                    const mesh::v1::WatchMembersRequest*) override {
    // Remembers what the client was last told, to send only changes.
    auto last = std::make_shared<std::map<std::string, mesh::v1::Member>>();
    NodeImpl* node = node_;
    return new WatchReactor<mesh::v1::MembershipEvent>(node, absl::ZeroDuration(), [node, last] {
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
};

class TopologyService final : public mesh::v1::Topology::CallbackService {
 public:
  explicit TopologyService(NodeImpl* node) : node_(node) {}

  grpc::ServerUnaryReactor* GetTopology(grpc::CallbackServerContext* ctx, const mesh::v1::GetTopologyRequest* req,
                                        mesh::v1::TopologySnapshot* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->local_only()) {
      auto snap = node_->Topology(true);
      if (snap.ok()) *resp = std::move(*snap);
      reactor->Finish(ToGrpc(snap.status()));
      return reactor;
    }
    // Gathering asks every member over gRPC (up to a second): do it off the
    // gRPC thread. The server's shutdown waits for Finish, so `node_` is
    // alive for as long as the thread uses it.
    NodeImpl* node = node_;
    std::thread([node, reactor, resp] {
      auto snap = node->Topology(false);
      if (snap.ok()) *resp = std::move(*snap);
      reactor->Finish(ToGrpc(snap.status()));
    }).detach();
    return reactor;
  }

  grpc::ServerWriteReactor<mesh::v1::TopologySnapshot>* WatchTopology(
      grpc::CallbackServerContext*, const mesh::v1::WatchTopologyRequest* req) override {
    NodeImpl* node = node_;
    bool local_only = req->local_only();
    uint32_t interval_ms = req->min_interval_ms() == 0 ? 100 : req->min_interval_ms();
    return new WatchReactor<mesh::v1::TopologySnapshot>(
        node, absl::Milliseconds(interval_ms), [node, local_only] {
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
      auto peers = node_->Broadcast(req->payload(), deadline);
      status = peers.status();
      if (peers.ok()) {
        for (auto& p : *peers) resp->add_delivered_to(p);
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
};

}  // namespace

std::vector<std::unique_ptr<grpc::Service>> MakeServices(NodeImpl* node) {
  std::vector<std::unique_ptr<grpc::Service>> services;
  services.push_back(std::make_unique<DiscoveryService>(node));
  services.push_back(std::make_unique<TopologyService>(node));
  return services;
}

}  // namespace mesh
