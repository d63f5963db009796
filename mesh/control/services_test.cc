// The services on a real gRPC server (ControlServer on a Unix socket in a
// short temporary directory) over FakeBackend, an in-memory implementation
// of backend.h whose answers, delays and changes each test sets.
#include "mesh/control/services.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/base/log.h"
#include "mesh/control/backend.h"
#include "mesh/control/control_server.h"
#include "mesh/v1/mesh.grpc.pb.h"

namespace mesh {
namespace control {
namespace {

using ::testing::HasSubstr;

mesh::v1::Member M(const std::string& name, uint64_t id, mesh::v1::MemberState state) {
  mesh::v1::Member m;
  m.set_name(name);
  m.set_id(id);
  m.set_state(state);
  return m;
}

mesh::v1::Link L(const std::string& a, const std::string& b, uint64_t messages_a_to_b = 0) {
  mesh::v1::Link l;
  l.set_a(a);
  l.set_b(b);
  l.set_messages_a_to_b(messages_a_to_b);
  l.set_confirmed_by_both(true);
  return l;
}

// The calling thread's name, from /proc.
std::string ThreadName() {
  std::ifstream in("/proc/thread-self/comm");
  std::string name;
  std::getline(in, name);
  return name;
}

int ThreadCount() {
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/task")) {
    (void)e;
    ++n;
  }
  return n;
}

// An in-memory node. Thread-safe.
class FakeBackend : public DiscoveryBackend, public TopologyBackend, public MessagingBackend, public ChangeSource {
 public:
  FakeBackend() {
    local_.set_reporter("self");
    *local_.add_members() = M("self", 1, mesh::v1::UP);
    gathered_ = local_;
  }

  // --- what tests set and read
  void SetJoinStatus(absl::Status s) {
    absl::MutexLock lock(&mu_);
    join_status_ = std::move(s);
  }
  std::vector<std::string> Joined() {
    absl::MutexLock lock(&mu_);
    return joined_;
  }
  std::vector<std::pair<std::string, uint64_t>> Left() {
    absl::MutexLock lock(&mu_);
    return left_;
  }
  // Changes this node's own state: the generation moves, listeners run.
  void ChangeLocal(const mesh::v1::TopologySnapshot& local) {
    {
      absl::MutexLock lock(&mu_);
      local_ = local;
      ++generation_;
    }
    Notify();
  }
  // Changes what a gathering finds, without any change of this node's own.
  void SetGathered(const mesh::v1::TopologySnapshot& snap) {
    absl::MutexLock lock(&mu_);
    gathered_ = snap;
  }
  int Gatherings() {
    absl::MutexLock lock(&mu_);
    return gatherings_;
  }
  void SetSendDelay(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    send_delay_ = d;
  }
  // Send blocks until Open() while the gate is closed.
  void CloseGate() {
    absl::MutexLock lock(&mu_);
    gate_open_ = false;
  }
  void OpenGate() {
    absl::MutexLock lock(&mu_);
    gate_open_ = true;
  }
  int SendsEntered() {
    absl::MutexLock lock(&mu_);
    return sends_entered_;
  }
  std::vector<std::string> SendThreads() {
    absl::MutexLock lock(&mu_);
    return send_threads_;
  }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
      ++generation_;
    }
    Notify();
  }
  int Listeners() {
    absl::MutexLock lock(&listeners_mu_);
    return static_cast<int>(listeners_.size());
  }

  // --- DiscoveryBackend
  absl::StatusOr<std::vector<mesh::v1::Member>> HandleJoin(const mesh::v1::Member& member,
                                                           const std::vector<mesh::v1::Member>& known) override {
    absl::MutexLock lock(&mu_);
    if (!join_status_.ok()) return join_status_;
    joined_.push_back(member.name());
    std::vector<mesh::v1::Member> out(local_.members().begin(), local_.members().end());
    out.push_back(member);
    return out;
  }
  void HandleLeave(const std::string& name, uint64_t id) override {
    absl::MutexLock lock(&mu_);
    left_.emplace_back(name, id);
  }
  std::vector<mesh::v1::Member> Members() const override {
    absl::MutexLock lock(&mu_);
    return std::vector<mesh::v1::Member>(local_.members().begin(), local_.members().end());
  }

  // --- TopologyBackend
  absl::StatusOr<mesh::v1::TopologySnapshot> LocalTopology() override {
    absl::MutexLock lock(&mu_);
    return local_;
  }
  absl::StatusOr<mesh::v1::TopologySnapshot> GatherTopology(absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    ++gatherings_;
    return gathered_;
  }

  // --- MessagingBackend
  absl::Status Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    ++sends_entered_;
    send_threads_.push_back(ThreadName());
    mu_.AwaitWithTimeout(absl::Condition(&gate_open_), absl::Seconds(30));
    const absl::Duration delay = send_delay_;
    mu_.Unlock();
    absl::SleepFor(delay);
    mu_.Lock();
    if (peer == "nobody") return absl::NotFoundError("no peer named nobody");
    return absl::OkStatus();
  }
  absl::StatusOr<BroadcastOutcome> Broadcast(absl::string_view payload, absl::Time deadline) override {
    BroadcastOutcome out;
    out.delivered = {"b"};
    out.not_reached.emplace_back("c", absl::ResourceExhaustedError("ring to c stayed full"));
    return out;
  }

  // --- ChangeSource
  uint64_t ChangeGeneration() const override {
    absl::MutexLock lock(&mu_);
    return generation_;
  }
  ListenerId AddChangeListener(std::function<void()> listener) override {
    absl::MutexLock lock(&listeners_mu_);
    listeners_[++next_listener_] = std::move(listener);
    return next_listener_;
  }
  void RemoveChangeListener(ListenerId id) override {
    absl::MutexLock lock(&listeners_mu_);  // waits for a Notify in progress
    listeners_.erase(id);
  }
  bool stopping() const override {
    absl::MutexLock lock(&mu_);
    return stopping_;
  }

 private:
  void Notify() {
    absl::MutexLock lock(&listeners_mu_);
    for (auto& [id, fn] : listeners_) fn();
  }

  mutable absl::Mutex mu_;
  absl::Status join_status_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> joined_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<std::string, uint64_t>> left_ ABSL_GUARDED_BY(mu_);
  mesh::v1::TopologySnapshot local_ ABSL_GUARDED_BY(mu_);
  mesh::v1::TopologySnapshot gathered_ ABSL_GUARDED_BY(mu_);
  int gatherings_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration send_delay_ ABSL_GUARDED_BY(mu_) = absl::ZeroDuration();
  bool gate_open_ ABSL_GUARDED_BY(mu_) = true;
  int sends_entered_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> send_threads_ ABSL_GUARDED_BY(mu_);
  // Held while listeners run, so that RemoveChangeListener waits for them.
  absl::Mutex listeners_mu_;
  std::map<ListenerId, std::function<void()>> listeners_ ABSL_GUARDED_BY(listeners_mu_);
  ListenerId next_listener_ ABSL_GUARDED_BY(listeners_mu_) = 0;
};

// A watch stream read by a thread of its own (client side), which records
// each snapshot with its arrival time.
class TopologyWatch {
 public:
  TopologyWatch(mesh::v1::Topology::Stub* stub, bool local_only, uint32_t min_interval_ms) {
    ctx_.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    mesh::v1::WatchTopologyRequest req;
    req.set_local_only(local_only);
    req.set_min_interval_ms(min_interval_ms);
    reader_ = stub->WatchTopology(&ctx_, req);
    thread_ = std::thread([this] {
      mesh::v1::TopologySnapshot snap;
      while (reader_->Read(&snap)) {
        absl::MutexLock lock(&mu_);
        got_.emplace_back(absl::Now(), snap);
      }
      grpc::Status s = reader_->Finish();
      absl::MutexLock lock(&mu_);
      status_ = s;
      ended_ = true;
    });
  }
  ~TopologyWatch() {
    ctx_.TryCancel();
    thread_.join();
  }

  // Waits until `n` snapshots came (true) or `timeout` passed.
  bool WaitFor(size_t n, absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return got_.size() >= n || ended_; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
    return got_.size() >= n;
  }
  size_t count() {
    absl::MutexLock lock(&mu_);
    return got_.size();
  }
  std::pair<absl::Time, mesh::v1::TopologySnapshot> at(size_t i) {
    absl::MutexLock lock(&mu_);
    return got_.at(i);
  }
  // Waits for the end of the stream; its status.
  grpc::Status WaitEnd(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&ended_), timeout);
    return ended_ ? status_ : grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "test: stream did not end");
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReader<mesh::v1::TopologySnapshot>> reader_;
  std::thread thread_;
  absl::Mutex mu_;
  std::vector<std::pair<absl::Time, mesh::v1::TopologySnapshot>> got_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

class ServicesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mesh-ctl-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    server_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartServer(ServiceOptions options = ServiceOptions()) {
    Backends b{&backend_, &backend_, &backend_, &backend_};
    server_ = std::make_unique<ControlServer>(
        "unix:" + dir_ + "/c.grpc", std::vector<uint32_t>{static_cast<uint32_t>(::getuid())},
        [b, options] { return MakeServices(b, options); }, &log_);
    absl::Status s = server_->Start();
    ASSERT_TRUE(s.ok()) << s;
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    topology_ = mesh::v1::Topology::NewStub(channel_);
    discovery_ = mesh::v1::Discovery::NewStub(channel_);
    messaging_ = mesh::v1::Messaging::NewStub(channel_);
  }

  grpc::Status Send(const std::string& to, mesh::v1::SendResponse* resp = nullptr, uint32_t timeout_ms = 1000) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    mesh::v1::SendRequest req;
    req.set_to(to);
    req.set_payload("hi");
    req.set_timeout_ms(timeout_ms);
    mesh::v1::SendResponse ignored;
    return messaging_->Send(&ctx, req, resp ? resp : &ignored);
  }

  grpc::Status GetTopology(bool local_only, mesh::v1::TopologySnapshot* snap) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    mesh::v1::GetTopologyRequest req;
    req.set_local_only(local_only);
    return topology_->GetTopology(&ctx, req, snap);
  }

  FakeBackend backend_;
  Logger log_{"test", mesh::v1::WARNING};
  std::string dir_;
  std::unique_ptr<ControlServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<mesh::v1::Topology::Stub> topology_;
  std::unique_ptr<mesh::v1::Discovery::Stub> discovery_;
  std::unique_ptr<mesh::v1::Messaging::Stub> messaging_;
};

TEST_F(ServicesTest, JoinAndLeavePassThroughAndErrorsKeepTheirCodes) {
  StartServer();
  {
    grpc::ClientContext ctx;
    mesh::v1::JoinRequest req;
    *req.mutable_member() = M("b", 2, mesh::v1::UP);
    mesh::v1::JoinResponse resp;
    ASSERT_TRUE(discovery_->Join(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.members_size(), 2);
    EXPECT_EQ(resp.members(0).name(), "self");
    EXPECT_EQ(backend_.Joined(), std::vector<std::string>{"b"});
  }
  {
    backend_.SetJoinStatus(absl::AlreadyExistsError("name b is held by pid 42"));
    grpc::ClientContext ctx;
    mesh::v1::JoinRequest req;
    *req.mutable_member() = M("b", 3, mesh::v1::UP);
    mesh::v1::JoinResponse resp;
    grpc::Status s = discovery_->Join(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_EQ(s.error_message(), "name b is held by pid 42");
  }
  {
    grpc::ClientContext ctx;
    mesh::v1::JoinRequest req;
    mesh::v1::JoinResponse resp;
    grpc::Status s = discovery_->Join(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("JoinRequest.member is required"));
  }
  {
    grpc::ClientContext ctx;
    mesh::v1::JoinRequest req;
    *req.mutable_member() = M("b", 3, mesh::v1::UP);
    req.add_known()->set_name("x");
    req.add_known()->set_grpc_address(std::string(5000, 'x'));
    mesh::v1::JoinResponse resp;
    grpc::Status s = discovery_->Join(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("JoinRequest.known[1].grpc_address is 5000 bytes"));
  }
  {
    grpc::ClientContext ctx;
    mesh::v1::LeaveRequest req;
    req.set_name("b");
    req.set_id(2);
    mesh::v1::LeaveResponse resp;
    ASSERT_TRUE(discovery_->Leave(&ctx, req, &resp).ok());
    ASSERT_EQ(backend_.Left().size(), 1u);
    EXPECT_EQ(backend_.Left()[0], std::make_pair(std::string("b"), uint64_t{2}));
  }
  {
    grpc::ClientContext ctx;
    mesh::v1::LeaveRequest req;
    req.set_name("b");
    mesh::v1::LeaveResponse resp;
    grpc::Status s = discovery_->Leave(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("name and (non-zero) id"));
  }
  // Send errors and a broadcast's outcome.
  EXPECT_EQ(Send("nobody").error_code(), grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext ctx;
    mesh::v1::SendRequest req;
    req.set_broadcast(true);
    mesh::v1::SendResponse resp;
    ASSERT_TRUE(messaging_->Send(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.delivered_to_size(), 1);
    ASSERT_EQ(resp.not_reached_size(), 1);
    EXPECT_EQ(resp.not_reached(0).reason(), "ring to c stayed full");
  }
  {
    mesh::v1::SendResponse resp;
    grpc::Status s = Send("b", &resp, 4000000);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("timeout_ms 4000000 is over the limit of 10000"));
  }
}

TEST_F(ServicesTest, LocalWatchPushesOnChangeAndRespectsMinInterval) {
  StartServer();
  TopologyWatch watch(topology_.get(), /*local_only=*/true, /*min_interval_ms=*/400);
  ASSERT_TRUE(watch.WaitFor(1, absl::Seconds(10)));
  EXPECT_EQ(watch.at(0).second.members_size(), 1);

  // A change pushes a new snapshot (the first step was at most ~now, so
  // this one comes min_interval after it).
  mesh::v1::TopologySnapshot two = watch.at(0).second;
  *two.add_members() = M("b", 2, mesh::v1::JOINING);
  backend_.ChangeLocal(two);
  ASSERT_TRUE(watch.WaitFor(2, absl::Seconds(10)));
  EXPECT_EQ(watch.at(1).second.members_size(), 2);
  EXPECT_GE(watch.at(1).first - watch.at(0).first, absl::Milliseconds(350));

  // A burst of changes right after: coalesced, and not sooner than
  // min_interval after the previous push.
  for (int i = 0; i < 5; ++i) {
    *two.add_links() = L("self", "b", i);
    backend_.ChangeLocal(two);
  }
  ASSERT_TRUE(watch.WaitFor(3, absl::Seconds(10)));
  EXPECT_GE(watch.at(2).first - watch.at(1).first, absl::Milliseconds(350));
  absl::SleepFor(absl::Milliseconds(900));
  EXPECT_LE(watch.count(), 4u) << "five changes in a burst make at most two pushes";
  EXPECT_EQ(watch.at(watch.count() - 1).second.links_size(), 5) << "the last push has the last state";

  // No change, no push.
  const size_t before = watch.count();
  absl::SleepFor(absl::Milliseconds(600));
  EXPECT_EQ(watch.count(), before);
}

TEST_F(ServicesTest, WholeMeshWatchPushesLinksBetweenOtherNodes) {
  StartServer();
  mesh::v1::TopologySnapshot mesh3;
  mesh3.set_reporter("self");
  *mesh3.add_members() = M("self", 1, mesh::v1::UP);
  *mesh3.add_members() = M("b", 2, mesh::v1::UP);
  *mesh3.add_members() = M("c", 3, mesh::v1::UP);
  *mesh3.add_links() = L("b", "self");
  *mesh3.add_links() = L("c", "self");
  backend_.SetGathered(mesh3);
  TopologyWatch watch(topology_.get(), /*local_only=*/false, /*min_interval_ms=*/100);
  ASSERT_TRUE(watch.WaitFor(1, absl::Seconds(10)));
  EXPECT_EQ(watch.at(0).second.links_size(), 2);

  // Counters only: re-gathered, not pushed.
  const int gathered = backend_.Gatherings();
  for (auto& l : *mesh3.mutable_links()) l.set_messages_a_to_b(l.messages_a_to_b() + 100);
  backend_.SetGathered(mesh3);
  absl::SleepFor(absl::Milliseconds(2500));
  EXPECT_GT(backend_.Gatherings(), gathered) << "the watch re-gathers on its own";
  EXPECT_EQ(watch.count(), 1u);

  // b and c link up with each other: this node's own state did not change
  // (no generation move), yet the stream reports it.
  *mesh3.add_links() = L("b", "c");
  backend_.SetGathered(mesh3);
  ASSERT_TRUE(watch.WaitFor(2, absl::Seconds(5)));
  EXPECT_EQ(watch.at(1).second.links_size(), 3);

  // c's end of b-c goes unresponsive: reported too.
  mesh3.mutable_links(2)->set_b_unresponsive(true);
  backend_.SetGathered(mesh3);
  ASSERT_TRUE(watch.WaitFor(3, absl::Seconds(5)));
  EXPECT_TRUE(watch.at(2).second.links(2).b_unresponsive());

  // A change of this node's own pushes even with the same shape.
  backend_.ChangeLocal(watch.at(0).second);
  ASSERT_TRUE(watch.WaitFor(4, absl::Seconds(5)));
}

TEST_F(ServicesTest, SendWaitsOffTheCallbackThreads) {
  StartServer();
  backend_.SetSendDelay(absl::Milliseconds(500));
  const absl::Time start = absl::Now();
  std::vector<std::thread> senders;
  std::vector<grpc::Status> results(8);
  for (int i = 0; i < 8; ++i) {
    senders.emplace_back([this, i, &results] { results[i] = Send("b"); });
  }
  // While the eight wait in (or for) the backend's Send, other calls answer
  // at once.
  absl::SleepFor(absl::Milliseconds(100));
  for (int i = 0; i < 3; ++i) {
    const absl::Time asked = absl::Now();
    mesh::v1::TopologySnapshot snap;
    ASSERT_TRUE(GetTopology(/*local_only=*/true, &snap).ok());
    EXPECT_LT(absl::Now() - asked, absl::Milliseconds(250));
    grpc::ClientContext ctx;
    mesh::v1::LeaveRequest req;
    req.set_name("z");
    req.set_id(9);
    mesh::v1::LeaveResponse resp;
    ASSERT_TRUE(discovery_->Leave(&ctx, req, &resp).ok());
    EXPECT_LT(absl::Now() - asked, absl::Milliseconds(250));
  }
  for (auto& t : senders) t.join();
  for (const auto& s : results) EXPECT_TRUE(s.ok()) << s.error_message();
  // Four executor threads: two rounds of 500 ms.
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  for (const std::string& name : backend_.SendThreads()) EXPECT_EQ(name, "mesh-ctl-calls");
}

TEST_F(ServicesTest, FullCallQueueIsResourceExhausted) {
  ServiceOptions options;
  options.call_threads = 1;
  options.max_queued_calls = 2;
  StartServer(options);
  backend_.CloseGate();
  std::vector<std::thread> senders;
  std::vector<grpc::Status> results(3);
  senders.emplace_back([this, &results] { results[0] = Send("b"); });
  // The first one holds the only thread; two more wait for it.
  for (int i = 0; i < 200 && backend_.SendsEntered() == 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(backend_.SendsEntered(), 1);
  senders.emplace_back([this, &results] { results[1] = Send("b"); });
  senders.emplace_back([this, &results] { results[2] = Send("b"); });
  absl::SleepFor(absl::Milliseconds(300));
  grpc::Status full = Send("b");
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << full.error_message();
  EXPECT_THAT(full.error_message(), HasSubstr("2 tasks already wait"));
  // Whole-mesh GetTopology shares the queue.
  mesh::v1::TopologySnapshot snap;
  EXPECT_EQ(GetTopology(/*local_only=*/false, &snap).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  backend_.OpenGate();
  for (auto& t : senders) t.join();
  for (const auto& s : results) EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(GetTopology(/*local_only=*/false, &snap).ok());
}

TEST_F(ServicesTest, WatchStreamsAddNoThreads) {
  StartServer();
  std::vector<std::unique_ptr<TopologyWatch>> watches;
  // Warm up (the client's and server's lazily started threads).
  for (int i = 0; i < 2; ++i) {
    watches.push_back(std::make_unique<TopologyWatch>(topology_.get(), i % 2 == 0, 10));
    ASSERT_TRUE(watches.back()->WaitFor(1, absl::Seconds(10)));
  }
  absl::SleepFor(absl::Milliseconds(200));
  // Each TopologyWatch has a client-side reader thread of its own: count
  // those apart.
  const int before = ThreadCount();
  for (int i = 0; i < 20; ++i) {
    watches.push_back(std::make_unique<TopologyWatch>(topology_.get(), i % 2 == 0, 10));
  }
  for (auto& w : watches) ASSERT_TRUE(w->WaitFor(1, absl::Seconds(10)));
  const int after = ThreadCount();
  EXPECT_LE(after - before - 20, 2) << "server threads grew from " << before << " to " << after - 20;
  // The streams still follow changes.
  mesh::v1::TopologySnapshot changed;
  ASSERT_TRUE(GetTopology(/*local_only=*/true, &changed).ok());
  *changed.add_members() = M("b", 2, mesh::v1::UP);
  backend_.ChangeLocal(changed);
  for (size_t i = 0; i < watches.size(); i += 2) EXPECT_TRUE(watches[i]->WaitFor(2, absl::Seconds(10))) << i;
  watches.clear();
  // Closed streams leave no listener behind.
  for (int i = 0; i < 200 && backend_.Listeners() > 0; ++i) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(backend_.Listeners(), 0);
}

TEST_F(ServicesTest, WatchStreamsAreCappedAndEndWhenTheNodeStops) {
  StartServer();
  std::vector<std::unique_ptr<TopologyWatch>> watches;
  for (int i = 0; i < 64; ++i) {
    watches.push_back(std::make_unique<TopologyWatch>(topology_.get(), true, 100));
  }
  for (auto& w : watches) ASSERT_TRUE(w->WaitFor(1, absl::Seconds(10)));
  {
    TopologyWatch extra(topology_.get(), true, 100);
    grpc::Status s = extra.WaitEnd(absl::Seconds(10));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("already serves 64 watch streams"));
  }
  {
    TopologyWatch bad(topology_.get(), true, 4000000000u);
    grpc::Status s = bad.WaitEnd(absl::Seconds(10));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("min_interval_ms 4000000000 is over the limit of 60000"));
  }
  backend_.Stop();
  for (auto& w : watches) {
    grpc::Status s = w->WaitEnd(absl::Seconds(10));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(s.error_message(), "node is stopping");
  }
}

TEST_F(ServicesTest, RestartEndsWatchStreamsAndServesAgain) {
  StartServer();
  auto watch = std::make_unique<TopologyWatch>(topology_.get(), false, 100);
  ASSERT_TRUE(watch->WaitFor(1, absl::Seconds(10)));
  absl::Status s = server_->Restart();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_NE(watch->WaitEnd(absl::Seconds(10)).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  mesh::v1::TopologySnapshot snap;
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  mesh::v1::GetTopologyRequest req;
  EXPECT_TRUE(topology_->GetTopology(&ctx, req, &snap).ok());
}

}  // namespace
}  // namespace control
}  // namespace mesh
