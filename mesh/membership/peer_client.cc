#include "mesh/membership/peer_client.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/status.h"

namespace mesh {
namespace membership {
namespace {

absl::Status FromGrpc(const grpc::Status& s, absl::string_view method, absl::string_view target) {
  if (s.ok()) return absl::OkStatus();
  // The gRPC and absl codes are the same canonical set.
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(method, " at ", target, ": ", s.error_message()));
}

// The state of one async call, owned by its completion callback from the
// moment the call starts. Holds `stubs` so that the channel outlives the
// call even if the PeerClient or its cache entry goes first.
template <typename Request, typename Response, typename Result>
struct AsyncCall {
  grpc::ClientContext ctx;
  Request req;
  Response resp;
  std::string target;
  std::shared_ptr<const void> stubs;
  std::function<void(Result)> done;
};

// What a fan-out waits on. Shared by the waiter and every callback, so that
// a late callback never touches a finished waiter's stack.
template <typename Result>
struct FanOut {
  explicit FanOut(size_t n, Result initial) : results(n, initial), remaining(n) {}
  absl::Mutex mu;
  std::vector<Result> results ABSL_GUARDED_BY(mu);
  size_t remaining ABSL_GUARDED_BY(mu);

  void Complete(size_t i, Result r) {
    absl::MutexLock lock(&mu);
    results[i] = std::move(r);
    --remaining;
  }
  std::vector<Result> Wait() {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](FanOut* f) ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu) { return f->remaining == 0; }, this));
    return std::move(results);
  }
};

}  // namespace

PeerClient::PeerClient(PeerClientOptions options) : options_(options) {}

PeerClient::~PeerClient() = default;

std::shared_ptr<const PeerClient::Stubs> PeerClient::StubsFor(const std::string& target) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<const Stubs>& entry = cache_[target];
  if (entry == nullptr) {
    grpc::ChannelArguments args;
    const int min_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.min_reconnect_backoff));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, min_ms);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, min_ms);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(absl::ToInt64Milliseconds(options_.max_reconnect_backoff)));
    auto stubs = std::make_shared<Stubs>();
    // Creating a channel makes no syscall and starts no connection.
    stubs->channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    stubs->discovery = mesh::v1::Discovery::NewStub(stubs->channel);
    stubs->topology = mesh::v1::Topology::NewStub(stubs->channel);
    entry = std::move(stubs);
  }
  return entry;
}

std::shared_ptr<grpc::Channel> PeerClient::Channel(const std::string& target) { return StubsFor(target)->channel; }

void PeerClient::Forget(const std::string& target) {
  std::shared_ptr<const Stubs> dropped;  // released outside the lock
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(target);
  if (it == cache_.end()) return;
  dropped = std::move(it->second);
  cache_.erase(it);
}

size_t PeerClient::cached_channels() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

absl::StatusOr<mesh::v1::JoinResponse> PeerClient::Join(const std::string& target, const mesh::v1::JoinRequest& req,
                                                        absl::Time deadline) {
  std::shared_ptr<const Stubs> stubs = StubsFor(target);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  mesh::v1::JoinResponse resp;
  const grpc::Status s = stubs->discovery->Join(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, "Join", target);
  return resp;
}

void PeerClient::LeaveAsync(const std::string& target, const mesh::v1::LeaveRequest& req, absl::Time deadline,
                            std::function<void(absl::Status)> done) {
  using Call = AsyncCall<mesh::v1::LeaveRequest, mesh::v1::LeaveResponse, absl::Status>;
  std::shared_ptr<const Stubs> stubs = StubsFor(target);
  mesh::v1::Discovery::Stub* const stub = stubs->discovery.get();
  auto* call = new Call;  // owned by the callback below
  call->ctx.set_deadline(absl::ToChronoTime(deadline));
  call->req = req;
  call->target = target;
  call->stubs = std::move(stubs);
  call->done = std::move(done);
  stub->async()->Leave(&call->ctx, &call->req, &call->resp, [call](grpc::Status s) {
    std::unique_ptr<Call> owned(call);
    absl::Status result = FromGrpc(s, "Leave", owned->target);
    std::function<void(absl::Status)> done = std::move(owned->done);
    owned.reset();  // gRPC holds its own reference to the call
    done(std::move(result));
  });
}

void PeerClient::GetTopologyAsync(const std::string& target, bool local_only, absl::Time deadline,
                                  std::function<void(absl::StatusOr<mesh::v1::TopologySnapshot>)> done) {
  using Result = absl::StatusOr<mesh::v1::TopologySnapshot>;
  using Call = AsyncCall<mesh::v1::GetTopologyRequest, mesh::v1::TopologySnapshot, Result>;
  std::shared_ptr<const Stubs> stubs = StubsFor(target);
  mesh::v1::Topology::Stub* const stub = stubs->topology.get();
  auto* call = new Call;  // owned by the callback below
  call->ctx.set_deadline(absl::ToChronoTime(deadline));
  call->req.set_local_only(local_only);
  call->target = target;
  call->stubs = std::move(stubs);
  call->done = std::move(done);
  stub->async()->GetTopology(&call->ctx, &call->req, &call->resp, [call](grpc::Status s) {
    std::unique_ptr<Call> owned(call);
    Result result = s.ok() ? Result(std::move(owned->resp)) : Result(FromGrpc(s, "GetTopology", owned->target));
    std::function<void(Result)> done = std::move(owned->done);
    owned.reset();
    done(std::move(result));
  });
}

std::vector<absl::StatusOr<mesh::v1::TopologySnapshot>> PeerClient::GetTopologyAll(
    const std::vector<std::string>& targets, bool local_only, absl::Time deadline) {
  using Result = absl::StatusOr<mesh::v1::TopologySnapshot>;
  auto fan = std::make_shared<FanOut<Result>>(targets.size(), Result(absl::UnknownError("not answered")));
  for (size_t i = 0; i < targets.size(); ++i) {
    GetTopologyAsync(targets[i], local_only, deadline, [fan, i](Result r) { fan->Complete(i, std::move(r)); });
  }
  return fan->Wait();
}

std::vector<absl::Status> PeerClient::LeaveAll(const std::vector<std::string>& targets,
                                               const mesh::v1::LeaveRequest& req, absl::Time deadline) {
  auto fan = std::make_shared<FanOut<absl::Status>>(targets.size(), absl::UnknownError("not answered"));
  for (size_t i = 0; i < targets.size(); ++i) {
    LeaveAsync(targets[i], req, deadline, [fan, i](absl::Status s) { fan->Complete(i, std::move(s)); });
  }
  return fan->Wait();
}

}  // namespace membership
}  // namespace mesh
