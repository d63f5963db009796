#include "mesh/membership/peer_client.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/alarm.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "gtest/gtest.h"
#include "mesh/v1/mesh.grpc.pb.h"

namespace mesh {
namespace membership {
namespace {

// Threads of this process now.
int ThreadCount() {
  DIR* d = ::opendir("/proc/self/task");
  if (d == nullptr) return -1;
  int n = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(d);
  return n;
}

// What a FakeNode saw, shared by its two services.
struct FakeState {
  std::string name;
  absl::Duration delay;  // before answering GetTopology and Leave
  absl::Mutex mu;
  std::vector<std::string> leaves ABSL_GUARDED_BY(mu);  // "name/id"
  std::vector<bool> topology_local_only ABSL_GUARDED_BY(mu);
  // Alarms that finish delayed calls: kept until the server is gone.
  std::vector<std::unique_ptr<grpc::Alarm>> alarms ABSL_GUARDED_BY(mu);

  // Finishes `r` now, or after `delay` without holding a thread.
  void Finish(grpc::ServerUnaryReactor* r, grpc::Status s) {
    if (delay <= absl::ZeroDuration()) {
      r->Finish(std::move(s));
      return;
    }
    auto alarm = std::make_unique<grpc::Alarm>();
    alarm->Set(absl::ToChronoTime(absl::Now() + delay), [r, s](bool) { r->Finish(s); });
    absl::MutexLock lock(&mu);
    alarms.push_back(std::move(alarm));
  }
};

class FakeDiscovery final : public mesh::v1::Discovery::CallbackService {
 public:
  explicit FakeDiscovery(FakeState* state) : state_(state) {}
  grpc::ServerUnaryReactor* Join(grpc::CallbackServerContext* ctx, const mesh::v1::JoinRequest* req,
                                 mesh::v1::JoinResponse* resp) override {
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    if (req->member().name() == state_->name) {
      r->Finish(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "name " + state_->name + " is taken"));
      return r;
    }
    resp->add_members()->set_name(state_->name);
    *resp->add_members() = req->member();
    r->Finish(grpc::Status::OK);
    return r;
  }
  grpc::ServerUnaryReactor* Leave(grpc::CallbackServerContext* ctx, const mesh::v1::LeaveRequest* req,
                                  mesh::v1::LeaveResponse*) override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->leaves.push_back(absl::StrCat(req->name(), "/", req->id()));
    }
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    state_->Finish(r, grpc::Status::OK);
    return r;
  }

 private:
  FakeState* const state_;
};

class FakeTopology final : public mesh::v1::Topology::CallbackService {
 public:
  explicit FakeTopology(FakeState* state) : state_(state) {}
  grpc::ServerUnaryReactor* GetTopology(grpc::CallbackServerContext* ctx, const mesh::v1::GetTopologyRequest* req,
                                        mesh::v1::TopologySnapshot* resp) override {
    {
      absl::MutexLock lock(&state_->mu);
      state_->topology_local_only.push_back(req->local_only());
    }
    resp->set_reporter(state_->name);
    grpc::ServerUnaryReactor* r = ctx->DefaultReactor();
    state_->Finish(r, grpc::Status::OK);
    return r;
  }

 private:
  FakeState* const state_;
};

// A node's Discovery and Topology services on a Unix socket.
struct FakeNode {
  FakeState state;
  FakeDiscovery discovery{&state};
  FakeTopology topology{&state};
  std::unique_ptr<grpc::Server> server;
  std::string target;
};

class PeerClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Short: a Unix socket path must fit in 107 bytes.
    char tmpl[] = "/tmp/pc.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (auto& n : nodes_) n->server->Shutdown();
    nodes_.clear();
    for (const std::string& s : sockets_) ::unlink(s.c_str());
    ::rmdir(dir_.c_str());
  }

  // Starts a fake node named `name`; returns its target.
  std::string StartNode(const std::string& name, absl::Duration delay = absl::ZeroDuration()) {
    auto node = std::make_unique<FakeNode>();
    node->state.name = name;
    node->state.delay = delay;
    const std::string path = absl::StrCat(dir_, "/", name, ".grpc");
    sockets_.push_back(path);
    node->target = "unix:" + path;
    grpc::ServerBuilder b;
    b.AddListeningPort(node->target, grpc::InsecureServerCredentials());
    b.RegisterService(&node->discovery);
    b.RegisterService(&node->topology);
    node->server = b.BuildAndStart();
    EXPECT_NE(node->server, nullptr) << name;
    std::string target = node->target;
    nodes_.push_back(std::move(node));
    return target;
  }
  // A target nobody serves.
  std::string DeadTarget() const { return absl::StrCat("unix:", dir_, "/dead.grpc"); }
  FakeState& state(size_t i) { return nodes_[i]->state; }

  std::string dir_;
  std::vector<std::string> sockets_;
  std::vector<std::unique_ptr<FakeNode>> nodes_;
};

mesh::v1::JoinRequest JoinAs(const std::string& name) {
  mesh::v1::JoinRequest req;
  req.mutable_member()->set_name(name);
  req.mutable_member()->set_id(7);
  return req;
}

TEST_F(PeerClientTest, JoinRoundTrip) {
  const std::string a = StartNode("a");
  PeerClient client;
  absl::StatusOr<mesh::v1::JoinResponse> resp = client.Join(a, JoinAs("me"), absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(resp.ok()) << resp.status();
  ASSERT_EQ(resp->members_size(), 2);
  EXPECT_EQ(resp->members(0).name(), "a");
  EXPECT_EQ(resp->members(1).name(), "me");
  EXPECT_EQ(resp->members(1).id(), 7u);
}

TEST_F(PeerClientTest, JoinErrorCarriesCodeAndTarget) {
  const std::string a = StartNode("a");
  PeerClient client;
  absl::StatusOr<mesh::v1::JoinResponse> resp = client.Join(a, JoinAs("a"), absl::Now() + absl::Seconds(5));
  EXPECT_EQ(resp.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(resp.status().message(), absl::StrCat("Join at ", a, ": name a is taken"));
}

TEST_F(PeerClientTest, UnreachableTargetFailsWithinTheDeadline) {
  PeerClient client;
  const absl::Time start = absl::Now();
  absl::StatusOr<mesh::v1::JoinResponse> resp =
      client.Join(DeadTarget(), JoinAs("me"), start + absl::Milliseconds(500));
  const absl::Duration took = absl::Now() - start;
  EXPECT_TRUE(resp.status().code() == absl::StatusCode::kUnavailable ||
              resp.status().code() == absl::StatusCode::kDeadlineExceeded)
      << resp.status();
  EXPECT_NE(resp.status().message().find(DeadTarget()), absl::string_view::npos) << resp.status();
  EXPECT_LT(took, absl::Milliseconds(900));
}

TEST_F(PeerClientTest, ChannelCache) {
  PeerClient client;
  const std::string t = DeadTarget();
  std::shared_ptr<grpc::Channel> c1 = client.Channel(t);
  EXPECT_EQ(client.Channel(t), c1);
  EXPECT_NE(client.Channel(t + "2"), c1);
  EXPECT_EQ(client.cached_channels(), 2u);
  client.Forget(t);
  EXPECT_EQ(client.cached_channels(), 1u);
  EXPECT_NE(client.Channel(t), c1);
}

TEST_F(PeerClientTest, GetTopologyAllRunsCallsConcurrently) {
  // Each live node takes 300 ms: one after another would take 900 ms.
  std::vector<std::string> targets = {StartNode("a", absl::Milliseconds(300)), DeadTarget(),
                                      StartNode("b", absl::Milliseconds(300)),
                                      StartNode("c", absl::Milliseconds(300))};
  PeerClient client;
  const absl::Time start = absl::Now();
  auto results = client.GetTopologyAll(targets, /*local_only=*/true, start + absl::Seconds(3));
  const absl::Duration took = absl::Now() - start;
  ASSERT_EQ(results.size(), 4u);
  ASSERT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[0]->reporter(), "a");
  EXPECT_FALSE(results[1].ok());
  EXPECT_NE(results[1].status().message().find("GetTopology at " + DeadTarget()), absl::string_view::npos)
      << results[1].status();
  ASSERT_TRUE(results[2].ok()) << results[2].status();
  EXPECT_EQ(results[2]->reporter(), "b");
  ASSERT_TRUE(results[3].ok()) << results[3].status();
  EXPECT_EQ(results[3]->reporter(), "c");
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Milliseconds(800));
  absl::MutexLock lock(&state(0).mu);
  EXPECT_EQ(state(0).topology_local_only, std::vector<bool>{true});
}

TEST_F(PeerClientTest, GetTopologyAllIsBoundedByTheDeadline) {
  std::vector<std::string> targets = {StartNode("fast"), StartNode("slow", absl::Seconds(1))};
  PeerClient client;
  const absl::Time start = absl::Now();
  auto results = client.GetTopologyAll(targets, /*local_only=*/false, start + absl::Milliseconds(200));
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(700));
  ASSERT_EQ(results.size(), 2u);
  EXPECT_TRUE(results[0].ok()) << results[0].status();
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kDeadlineExceeded) << results[1].status();
}

TEST_F(PeerClientTest, LeaveAll) {
  std::vector<std::string> targets = {StartNode("a"), StartNode("b", absl::Milliseconds(100)), DeadTarget()};
  PeerClient client;
  mesh::v1::LeaveRequest req;
  req.set_name("me");
  req.set_id(42);
  std::vector<absl::Status> results = client.LeaveAll(targets, req, absl::Now() + absl::Seconds(3));
  ASSERT_EQ(results.size(), 3u);
  EXPECT_TRUE(results[0].ok()) << results[0];
  EXPECT_TRUE(results[1].ok()) << results[1];
  EXPECT_FALSE(results[2].ok());
  EXPECT_NE(results[2].message().find("Leave at " + DeadTarget()), absl::string_view::npos) << results[2];
  for (size_t i = 0; i < 2; ++i) {
    absl::MutexLock lock(&state(i).mu);
    EXPECT_EQ(state(i).leaves, std::vector<std::string>{"me/42"});
  }
  EXPECT_TRUE(client.LeaveAll({}, req, absl::Now()).empty());
}

TEST_F(PeerClientTest, LeaveAsyncRunsDoneOnceAndOutlivesTheClient) {
  const std::string a = StartNode("a", absl::Milliseconds(100));
  absl::Notification done;
  absl::Status result = absl::UnknownError("not run");
  {
    PeerClient client;
    mesh::v1::LeaveRequest req;
    req.set_name("me");
    client.LeaveAsync(a, req, absl::Now() + absl::Seconds(3), [&](absl::Status s) {
      result = std::move(s);
      done.Notify();
    });
  }  // the client goes while the call is in flight
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_TRUE(result.ok()) << result;
}

TEST_F(PeerClientTest, FanOutStartsNoThreadPerCall) {
  constexpr int kTargets = 20;
  std::vector<std::string> targets;
  for (int i = 0; i < kTargets; ++i) targets.push_back(StartNode(absl::StrCat("n", i), absl::Milliseconds(300)));
  PeerClient client;
  // Warm up: connections, and whatever threads gRPC starts once.
  for (const auto& r : client.GetTopologyAll(targets, true, absl::Now() + absl::Seconds(5))) {
    ASSERT_TRUE(r.ok()) << r.status();
  }
  const int before = ThreadCount();
  ASSERT_GT(before, 0);
  // All 20 calls in flight at once (each takes 300 ms to answer): sample the
  // thread count while they are.
  absl::Mutex mu;
  int answered = 0;
  for (const std::string& t : targets) {
    client.GetTopologyAsync(t, true, absl::Now() + absl::Seconds(5),
                            [&](absl::StatusOr<mesh::v1::TopologySnapshot> r) {
                              EXPECT_TRUE(r.ok()) << r.status();
                              absl::MutexLock lock(&mu);
                              ++answered;
                            });
  }
  absl::SleepFor(absl::Milliseconds(100));
  const int during = ThreadCount();
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(answered, 0) << "the calls were meant to be in flight";
    mu.Await(absl::Condition(+[](int* n) { return *n == kTargets; }, &answered));
  }
  const int after = ThreadCount();
  // gRPC may grow its own pool a little, but not by one thread per call.
  EXPECT_LT(during - before, kTargets / 2) << "before " << before << ", during " << during;
  EXPECT_LT(after - before, kTargets / 2) << "before " << before << ", after " << after;
  std::printf("threads: before %d, during %d, after %d\n", before, during, after);
}

}  // namespace
}  // namespace membership
}  // namespace mesh
