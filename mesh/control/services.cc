#include "mesh/control/services.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "mesh/control/executor.h"
#include "mesh/topology/topology.h"
#include "mesh/v1/mesh.grpc.pb.h"

namespace mesh {
namespace control {
namespace {

// Longest wait a Messaging.Send may ask for.
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
// each holds a stream of the client's and its messages in memory.
constexpr int kMaxWatchStreams = 64;
// Whole-mesh GetTopology calls in flight at once: each asks every member.
constexpr int kMaxTopologyGathers = 8;
// How long a gathering waits for the members' answers (within meshctl's
// default 3 s).
constexpr absl::Duration kGatherTimeout = absl::Seconds(2);
// The whole-mesh watch re-gathers at least this far apart.
constexpr absl::Duration kMinPollInterval = absl::Seconds(1);
// When the call executor is full, a watch step tries again after this.
constexpr absl::Duration kBusyRetry = absl::Milliseconds(100);

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// A counted resource (watch streams, topology gatherings): TryAcquire fails
// once `limit` are held. Thread-safe.
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

// What the services of one set share. Owned (shared_ptr) by the services;
// calls use it through raw pointers, which is safe because the services
// are destroyed only after the server shut down, i.e. after every call's
// OnDone, and a task that runs later (an executor finishing its queue)
// finds its call done and touches nothing here.
struct ServiceSet {
  ServiceSet(const Backends& b, const ServiceOptions& o)
      : backends(b),
        watch_executor({"mesh-ctl-watch", 1, 2 * kMaxWatchStreams}),
        call_executor({"mesh-ctl-calls", std::max(1, o.call_threads), std::max(1, o.max_queued_calls)}) {}

  const Backends backends;
  CallBudget watches{kMaxWatchStreams};
  CallBudget gathers{kMaxTopologyGathers};
  // Destroyed in reverse order: the call executor first.
  Executor watch_executor;
  Executor call_executor;
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
// (the backend checks the rest); `what` names it in the error.
grpc::Status CheckMemberSize(const mesh::v1::Member& m, absl::string_view what) {
  if (m.grpc_address().size() > kMaxAddressBytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat(what, ".grpc_address is ", m.grpc_address().size(), " bytes, over the limit of ",
                                     kMaxAddressBytes, "; use a shorter socket path or host name"));
  }
  return grpc::Status::OK;
}

// A server stream with no thread of its own. `step` produces the messages
// to write next (maybe none); it runs on `work` (one step at a time), first
// at once, then after each change the ChangeSource reports (and, with a
// `poll` interval, also that long after each step), never sooner than
// `min_interval` after the previous step, and only once the previous
// messages are written. Ends when the client cancels (OK) or the node stops
// (UNAVAILABLE).
//
// Lifetime: owned by shared_ptr: `self_` (gRPC's reference, dropped in
// OnDone) and the tasks queued for it; timers and the change listener hold
// weak references. Every step checks `done_` first, so tasks that outlive
// the call do nothing.
// Thread contract: gRPC reactions, the listener and executor tasks may run
// concurrently; all state is under mu_; Finish and StartWrite are called
// with mu_ released.
template <typename T>
class WatchReactor : public grpc::ServerWriteReactor<T>, public std::enable_shared_from_this<WatchReactor<T>> {
 public:
  using Step = std::function<std::vector<T>()>;

  // Starts a stream holding one unit of set->watches (acquired by the
  // caller) until OnDone. Returns the reactor for gRPC.
  static WatchReactor* Start(ServiceSet* set, Executor* work, absl::Duration min_interval, absl::Duration poll,
                             Step step) {
    std::shared_ptr<WatchReactor> r(new WatchReactor(set, work, min_interval, poll, std::move(step)));
    r->self_ = r;
    std::weak_ptr<WatchReactor> weak = r;
    const ChangeSource::ListenerId id = set->backends.changes->AddChangeListener([weak] {
      if (auto s = weak.lock()) s->OnChange();
    });
    {
      absl::MutexLock lock(&r->mu_);
      r->listener_ = id;
      r->dirty_ = true;
    }
    r->Kick();
    return r.get();
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
    }
    Kick();
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    Kick();
  }

  void OnDone() override {
    ChangeSource::ListenerId id;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      id = listener_;
    }
    // Not from a listener: OnDone follows Finish, which is never called on
    // a listener's thread (OnChange only queues a Kick).
    set_->backends.changes->RemoveChangeListener(id);
    set_->watches.Release();
    std::shared_ptr<WatchReactor> last = std::move(self_);  // may free this
  }

 private:
  WatchReactor(ServiceSet* set, Executor* work, absl::Duration min_interval, absl::Duration poll, Step step)
      : set_(set), work_(work), min_interval_(min_interval), poll_(poll), step_(std::move(step)) {}

  // Change listener: note it, and look at it on the watch executor.
  void OnChange() {
    {
      absl::MutexLock lock(&mu_);
      dirty_ = true;
      if (done_ || kick_queued_) return;
      kick_queued_ = true;
    }
    std::weak_ptr<WatchReactor> weak = this->weak_from_this();
    set_->watch_executor.RunAt(absl::InfinitePast(), [weak] {
      if (auto s = weak.lock()) {
        {
          absl::MutexLock lock(&s->mu_);
          s->kick_queued_ = false;
        }
        s->Kick();
      }
    });
  }

  // Does the next thing due: finish, write a queued message, or start a
  // step (now, or when min_interval has passed).
  void Kick() {
    std::optional<grpc::Status> finish;
    bool write = false;
    std::optional<absl::Time> step_at;
    {
      absl::MutexLock lock(&mu_);
      if (done_ || finished_) return;
      const bool stopping = set_->backends.changes->stopping();
      if (cancelled_ || stopping) {
        // A write still pending completes (OnWriteDone) first: `current_`
        // must outlive it.
        if (writing_) return;
        finished_ = true;
        finish = stopping ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "node is stopping") : grpc::Status::OK;
      } else if (writing_) {
        return;
      } else if (!queue_.empty()) {
        current_ = std::move(queue_.front());
        queue_.pop_front();
        writing_ = true;
        write = true;
      } else if (dirty_ && !stepping_) {
        stepping_ = true;
        step_at = last_step_ + min_interval_;
      }
    }
    if (finish) this->Finish(*finish);
    if (write) this->StartWrite(&current_);
    if (step_at) {
      if (*step_at <= absl::Now()) {
        Dispatch();
      } else {
        std::weak_ptr<WatchReactor> weak = this->weak_from_this();
        set_->watch_executor.RunAt(*step_at, [weak] {
          if (auto s = weak.lock()) s->Dispatch();
        });
      }
    }
  }

  // Queues the step on `work_`; if that executor is full, tries again later.
  void Dispatch() {
    std::shared_ptr<WatchReactor> self = this->shared_from_this();
    if (work_->Schedule([self] { self->RunStep(); }).ok()) return;
    std::weak_ptr<WatchReactor> weak = self;
    set_->watch_executor.RunAt(absl::Now() + kBusyRetry, [weak] {
      if (auto s = weak.lock()) s->Dispatch();
    });
  }

  void RunStep() {
    {
      absl::MutexLock lock(&mu_);
      if (done_ || finished_) {
        stepping_ = false;
        return;
      }
      dirty_ = false;
    }
    std::vector<T> items = step_();  // stepping_ keeps this one at a time
    bool arm_poll = false;
    {
      absl::MutexLock lock(&mu_);
      last_step_ = absl::Now();
      stepping_ = false;
      for (T& item : items) queue_.push_back(std::move(item));
      if (poll_ > absl::ZeroDuration() && !poll_armed_ && !done_) {
        poll_armed_ = true;
        arm_poll = true;
      }
    }
    if (arm_poll) {
      std::weak_ptr<WatchReactor> weak = this->weak_from_this();
      set_->watch_executor.RunAt(absl::Now() + poll_, [weak] {
        if (auto s = weak.lock()) {
          {
            absl::MutexLock lock(&s->mu_);
            s->poll_armed_ = false;
            s->dirty_ = true;
          }
          s->Kick();
        }
      });
    }
    Kick();
  }

  ServiceSet* const set_;
  Executor* const work_;
  const absl::Duration min_interval_;
  const absl::Duration poll_;
  const Step step_;
  std::shared_ptr<WatchReactor> self_;  // gRPC's reference; OnDone drops it

  absl::Mutex mu_;
  ChangeSource::ListenerId listener_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;         // OnDone ran
  bool finished_ ABSL_GUARDED_BY(mu_) = false;     // Finish called
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;    // client gone or write failed
  bool writing_ ABSL_GUARDED_BY(mu_) = false;      // a StartWrite is pending
  bool dirty_ ABSL_GUARDED_BY(mu_) = false;        // a change not stepped yet
  bool stepping_ ABSL_GUARDED_BY(mu_) = false;     // a step is due, queued or running
  bool kick_queued_ ABSL_GUARDED_BY(mu_) = false;  // OnChange's Kick is queued
  bool poll_armed_ ABSL_GUARDED_BY(mu_) = false;   // the poll timer is set
  absl::Time last_step_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  std::deque<T> queue_ ABSL_GUARDED_BY(mu_);
  T current_;  // the message being written: set under mu_ while !writing_
};

class DiscoveryService final : public mesh::v1::Discovery::CallbackService {
 public:
  explicit DiscoveryService(std::shared_ptr<ServiceSet> set) : set_(std::move(set)) {}

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
    auto members = set_->backends.discovery->HandleJoin(
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
    set_->backends.discovery->HandleLeave(req->name(), req->id());
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<mesh::v1::MembershipEvent>* WatchMembers(grpc::CallbackServerContext*,
                                                                    const mesh::v1::WatchMembersRequest*) override {
    if (!set_->watches.TryAcquire()) {
      return new FailedWriteReactor<mesh::v1::MembershipEvent>(TooManyWatchStreams(set_->watches.limit()));
    }
    // Remembers what the client was last told, to send only changes (steps
    // run one at a time, so no lock).
    auto last = std::make_shared<std::map<std::string, mesh::v1::Member>>();
    DiscoveryBackend* discovery = set_->backends.discovery;
    return WatchReactor<mesh::v1::MembershipEvent>::Start(
        set_.get(), &set_->watch_executor, absl::ZeroDuration(), absl::ZeroDuration(), [discovery, last] {
          std::vector<mesh::v1::MembershipEvent> events;
          std::map<std::string, mesh::v1::Member> now;
          for (auto& m : discovery->Members()) now[m.name()] = m;
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
  const std::shared_ptr<ServiceSet> set_;
};

class TopologyService final : public mesh::v1::Topology::CallbackService {
 public:
  explicit TopologyService(std::shared_ptr<ServiceSet> set) : set_(std::move(set)) {}

  grpc::ServerUnaryReactor* GetTopology(grpc::CallbackServerContext* ctx, const mesh::v1::GetTopologyRequest* req,
                                        mesh::v1::TopologySnapshot* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->local_only()) {
      auto snap = set_->backends.topology->LocalTopology();
      if (snap.ok()) *resp = std::move(*snap);
      reactor->Finish(ToGrpc(snap.status()));
      return reactor;
    }
    // Gathering asks every member (up to kGatherTimeout): on the call
    // executor, a bounded number at once. The server's shutdown waits for
    // Finish, so the set and the backend outlive the task.
    if (!set_->gathers.TryAcquire()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   absl::StrCat(set_->gathers.limit(),
                                                " whole-mesh GetTopology calls are already in flight; retry "
                                                "shortly, or ask with local_only")));
      return reactor;
    }
    ServiceSet* set = set_.get();
    absl::Status queued = set->call_executor.Schedule([set, reactor, resp] {
      auto snap = set->backends.topology->GatherTopology(absl::Now() + kGatherTimeout);
      if (snap.ok()) *resp = std::move(*snap);
      set->gathers.Release();
      reactor->Finish(ToGrpc(snap.status()));
    });
    if (!queued.ok()) {
      set->gathers.Release();
      reactor->Finish(ToGrpc(queued));
    }
    return reactor;
  }

  grpc::ServerWriteReactor<mesh::v1::TopologySnapshot>* WatchTopology(
      grpc::CallbackServerContext*, const mesh::v1::WatchTopologyRequest* req) override {
    if (req->min_interval_ms() > kMaxWatchIntervalMs) {
      return new FailedWriteReactor<mesh::v1::TopologySnapshot>(grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("min_interval_ms ", req->min_interval_ms(),
                                                           " is over the limit of ", kMaxWatchIntervalMs)));
    }
    if (!set_->watches.TryAcquire()) {
      return new FailedWriteReactor<mesh::v1::TopologySnapshot>(TooManyWatchStreams(set_->watches.limit()));
    }
    const absl::Duration interval =
        absl::Milliseconds(req->min_interval_ms() == 0 ? 100 : req->min_interval_ms());
    TopologyBackend* topology = set_->backends.topology;
    if (req->local_only()) {
      return WatchReactor<mesh::v1::TopologySnapshot>::Start(
          set_.get(), &set_->watch_executor, interval, absl::ZeroDuration(), [topology] {
            std::vector<mesh::v1::TopologySnapshot> out;
            auto snap = topology->LocalTopology();
            if (snap.ok()) out.push_back(std::move(*snap));
            return out;
          });
    }
    // Whole mesh: other nodes' changes reach this node only by asking, so
    // re-gather every poll interval and push what changed shape (or, as for
    // the local watch, any change of this node's own).
    struct Seen {
      bool sent = false;
      uint64_t generation = 0;
      mesh::v1::TopologySnapshot snapshot;
    };
    auto seen = std::make_shared<Seen>();  // steps run one at a time
    ChangeSource* changes = set_->backends.changes;
    return WatchReactor<mesh::v1::TopologySnapshot>::Start(
        set_.get(), &set_->call_executor, interval, std::max(interval, kMinPollInterval),
        [topology, changes, seen] {
          std::vector<mesh::v1::TopologySnapshot> out;
          const uint64_t generation = changes->ChangeGeneration();
          auto snap = topology->GatherTopology(absl::Now() + kGatherTimeout);
          if (!snap.ok()) return out;
          if (seen->sent && generation == seen->generation && topology::SameShape(*snap, seen->snapshot)) {
            return out;
          }
          seen->sent = true;
          seen->generation = generation;
          seen->snapshot = *snap;
          out.push_back(std::move(*snap));
          return out;
        });
  }

 private:
  const std::shared_ptr<ServiceSet> set_;
};

class MessagingService final : public mesh::v1::Messaging::CallbackService {
 public:
  explicit MessagingService(std::shared_ptr<ServiceSet> set) : set_(std::move(set)) {}

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
    // The wait for ring room happens on the call executor; the time spent
    // queued counts against the caller's timeout.
    const absl::Time deadline =
        req->timeout_ms() == 0 ? absl::InfinitePast() : absl::Now() + absl::Milliseconds(req->timeout_ms());
    MessagingBackend* messaging = set_->backends.messaging;
    absl::Status queued = set_->call_executor.Schedule([messaging, reactor, req, resp, deadline] {
      absl::Status status;
      if (req->broadcast()) {
        auto sent = messaging->Broadcast(req->payload(), deadline);
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
        status = messaging->Send(req->to(), req->payload(), deadline);
        if (status.ok()) resp->add_delivered_to(req->to());
      }
      reactor->Finish(ToGrpc(status));
    });
    if (!queued.ok()) reactor->Finish(ToGrpc(queued));
    return reactor;
  }

 private:
  const std::shared_ptr<ServiceSet> set_;
};

}  // namespace

std::vector<std::unique_ptr<grpc::Service>> MakeServices(const Backends& backends, const ServiceOptions& options) {
  auto set = std::make_shared<ServiceSet>(backends, options);
  std::vector<std::unique_ptr<grpc::Service>> services;
  services.push_back(std::make_unique<DiscoveryService>(set));
  services.push_back(std::make_unique<TopologyService>(set));
  services.push_back(std::make_unique<MessagingService>(set));
  return services;
}

}  // namespace control
}  // namespace mesh
