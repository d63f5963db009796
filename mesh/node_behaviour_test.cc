// Behaviours of mesh::Node that its header promises, each checked in-process
// with real nodes (sockets, memfd rings, gRPC servers): a name taken in
// another run directory, the error codes of the send calls, handler setters
// after Start(), max_message_bytes on receive, departed members reported
// DOWN, one log line per peer up and down, a quiet simultaneous start, and
// peer handlers that may call back into the node.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mesh/node.h"
#include "mesh/test_util.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kLinkTimeout = absl::Seconds(20);

// A short run directory under /tmp (socket paths must stay short); removed
// with its contents when the object dies.
class RunDir {
 public:
  RunDir() {
    char tmpl[] = "/tmp/mnb-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~RunDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  RunDir(const RunDir&) = delete;
  RunDir& operator=(const RunDir&) = delete;
  const std::string& path() const { return path_; }
  // The names of the files in the directory, sorted.
  std::vector<std::string> Files() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(path_, ec)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  std::string path_;
};

// Redirects this process's stderr (fd 2, where every node logs) into a
// temporary file until Stop() or destruction.
class StderrCapture {
 public:
  StderrCapture() {
    char tmpl[] = "/tmp/mnb-log-XXXXXX";
    fd_ = ::mkstemp(tmpl);
    path_ = tmpl;
    std::fflush(stderr);
    saved_ = ::dup(2);
    if (fd_ >= 0 && saved_ >= 0) (void)::dup2(fd_, 2);
  }
  ~StderrCapture() {
    Stop();
    if (fd_ >= 0) ::close(fd_);
    ::unlink(path_.c_str());
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  bool ok() const { return fd_ >= 0 && saved_ >= 0; }
  // Restores stderr. Idempotent.
  void Stop() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    (void)::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  // Every line written so far.
  std::vector<std::string> Lines() const {
    std::vector<std::string> out;
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  // Lines containing every one of `parts`.
  int Count(const std::vector<std::string>& parts) const {
    int n = 0;
    for (const std::string& line : Lines()) {
      bool all = true;
      for (const std::string& p : parts) all = all && absl::StrContains(line, p);
      if (all) ++n;
    }
    return n;
  }
  // Waits until some line contains every one of `parts`.
  bool WaitFor(const std::vector<std::string>& parts, absl::Duration timeout) const {
    for (absl::Time end = absl::Now() + timeout; absl::Now() < end; absl::SleepFor(absl::Milliseconds(10))) {
      if (Count(parts) > 0) return true;
    }
    return Count(parts) > 0;
  }
  std::string All() const { return absl::StrJoin(Lines(), "\n"); }

 private:
  std::string path_;
  int fd_ = -1;
  int saved_ = -1;
};

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

// The members named `name` in `snap`.
std::vector<mesh::v1::Member> MembersNamed(const mesh::v1::TopologySnapshot& snap, const std::string& name) {
  std::vector<mesh::v1::Member> out;
  for (const auto& m : snap.members()) {
    if (m.name() == name) out.push_back(m);
  }
  return out;
}

class NodeBehaviourTest : public ::testing::Test {
 protected:
  // Stops every node, newest first. After it no handler runs, so a test
  // whose handlers capture its own locals holds
  //   absl::Cleanup stop_nodes = [this] { StopNodes(); };
  // declared after those locals: the nodes stop before the locals go.
  void StopNodes() {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)->Stop();
  }
  void SetUp() override { ASSERT_FALSE(dir_.path().empty()); }
  void TearDown() override {
    nodes_.clear();
    // Stop() removes every socket: the directory must be empty.
    EXPECT_THAT(dir_.Files(), ::testing::IsEmpty()) << dir_.path();
  }

  mesh::v1::NodeConfig Config(const std::string& name, const std::vector<std::string>& seeds) {
    return testing_util::TestConfig(dir_.path(), name, seeds);
  }

  Node* Add(const mesh::v1::NodeConfig& config) {
    auto node = Node::Create(config);
    EXPECT_TRUE(node.ok()) << node.status();
    if (!node.ok()) return nullptr;
    nodes_.push_back(std::move(*node));
    return nodes_.back().get();
  }
  Node* Add(const std::string& name, const std::vector<std::string>& seeds) { return Add(Config(name, seeds)); }

  RunDir dir_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// 1. A live node in another run directory holds the name: the seed answers
// the Join with ALREADY_EXISTS, Start() fails with it, and the node that
// failed leaves no socket behind.
TEST_F(NodeBehaviourTest, NameTakenInAnotherRunDirFailsStart) {
  Node* b1 = Add("b1", {});
  ASSERT_NE(b1, nullptr);
  ASSERT_TRUE(b1->Start().ok());

  RunDir other;
  ASSERT_FALSE(other.path().empty());
  mesh::v1::NodeConfig config = testing_util::TestConfig(other.path(), "b1", {});
  config.add_seeds(b1->grpc_address());
  auto dup = Node::Create(config);
  ASSERT_TRUE(dup.ok()) << dup.status();
  const absl::Status s = (*dup)->Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot join the mesh"));
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("name 'b1' is taken by a live node (pid ", ::getpid(), ")")));
  // Nothing left in the other directory, before and after the Node dies.
  EXPECT_THAT(other.Files(), ::testing::IsEmpty());
  dup->reset();
  EXPECT_THAT(other.Files(), ::testing::IsEmpty());
  // The holder is unaffected: still alone, still serving.
  EXPECT_TRUE(b1->Peers().empty());
  auto topo = b1->Topology(true);
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_EQ(topo->members_size(), 1) << topo->DebugString();

  // The same when the name is held by another member of the seed's mesh.
  Node* a = Add("a", {"b1"});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + kLinkTimeout).ok());
  mesh::v1::NodeConfig via_a = testing_util::TestConfig(other.path(), "b1", {});
  via_a.add_seeds(a->grpc_address());
  auto dup2 = Node::Create(via_a);
  ASSERT_TRUE(dup2.ok()) << dup2.status();
  const absl::Status s2 = (*dup2)->Start();
  EXPECT_EQ(s2.code(), absl::StatusCode::kAlreadyExists) << s2;
  EXPECT_THAT(std::string(s2.message()), HasSubstr("name 'b1' is taken by a live node"));
  EXPECT_THAT(other.Files(), ::testing::IsEmpty());
  dup2->reset();
  EXPECT_THAT(other.Files(), ::testing::IsEmpty());
  EXPECT_EQ(a->Peers(), std::vector<std::string>{"b1"});
}

// 2. The send calls' error codes outside the happy path.
TEST_F(NodeBehaviourTest, SendErrorsNameTheProblem) {
  Node* a = Add("a", {});
  ASSERT_NE(a, nullptr);
  const std::vector<absl::string_view> batch = {"x", "y"};

  // Before Start().
  absl::Status s = a->Send("b", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not started"));
  s = a->Send("a", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("not started"));
  auto b = a->Broadcast("x");
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("not started"));
  auto n = a->SendBatch("b", batch);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kFailedPrecondition) << n.status();
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("not started"));

  ASSERT_TRUE(a->Start().ok());
  // To itself.
  s = a->Send("a", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("this node itself"));
  n = a->SendBatch("a", batch);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument) << n.status();
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("this node itself"));
  // To nobody: the C++ API's wording, not meshctl's.
  s = a->Send("nobody", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("'nobody'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("Peers()"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("WaitForPeers()"));
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("meshctl")));
  n = a->SendBatch("nobody", batch);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kNotFound) << n.status();
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("WaitForPeers()"));

  // After Stop().
  a->Stop();
  s = a->Send("b", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("is stopped"));
  s = a->Send("a", "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("is stopped"));
  b = a->Broadcast("x");
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition) << b.status();
  EXPECT_THAT(std::string(b.status().message()), HasSubstr("is stopped"));
  n = a->SendBatch("b", batch);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kFailedPrecondition) << n.status();
  EXPECT_THAT(std::string(n.status().message()), HasSubstr("is stopped"));
}

// 3. An oversized broadcast is refused even when there is nobody to send to.
TEST_F(NodeBehaviourTest, OversizedBroadcastWithNoPeersIsInvalid) {
  Node* a = Add("a", {});
  ASSERT_NE(a, nullptr);
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(a->Peers().empty());
  const std::string big(a->config().max_message_bytes() + 1, 'x');
  auto r = a->Broadcast(big);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("exceeds max_message_bytes"));
  // At the limit it is an empty but successful broadcast.
  auto ok = a->Broadcast(std::string(a->config().max_message_bytes(), 'x'));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_TRUE(ok->delivered.empty());
  EXPECT_TRUE(ok->not_reached.empty());
}

// 4. Handlers set after Start() are refused and never called.
TEST_F(NodeBehaviourTest, HandlersSetAfterStartAreRefusedAndUnused) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_TRUE(a->Start().ok());
  std::atomic<int> calls{0};
  absl::Status s = a->SetMessageHandler([&](const MessageView&) { calls++; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("call SetMessageHandler() before Start()"));
  s = a->SetPeerUpHandler([&](const PeerInfo&) { calls++; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("call SetPeerUpHandler() before Start()"));
  s = a->SetPeerDownHandler([&](const PeerInfo&) { calls++; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("call SetPeerDownHandler() before Start()"));
  s = a->SetPeerUnresponsiveHandler([&](const PeerInfo&, bool) { calls++; });
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("call SetPeerUnresponsiveHandler() before Start()"));

  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + kLinkTimeout).ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + kLinkTimeout).ok());
  const absl::Status sent = b->Send("a", "still queued");
  ASSERT_TRUE(sent.ok()) << sent;
  // Messages still queue for Receive (which a handler would refuse).
  auto m = a->Receive(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->from, "b");
  EXPECT_EQ(m->payload, "still queued");
  b->Stop();
  for (absl::Time end = absl::Now() + absl::Seconds(5); !a->Peers().empty() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_TRUE(a->Peers().empty());
  absl::SleepFor(absl::Milliseconds(200));  // a peer-down event would have run by now
  EXPECT_EQ(calls.load(), 0) << "a handler set after Start() was called";
}

// 5. A node drops (and logs) a message larger than its own
// max_message_bytes, sent by a peer with a larger limit; later messages
// still arrive.
TEST_F(NodeBehaviourTest, MaxMessageBytesIsEnforcedOnReceive) {
  StderrCapture log;
  ASSERT_TRUE(log.ok());
  mesh::v1::NodeConfig ca = Config("a", {});
  ca.set_max_message_bytes(1016);  // well under the 64 KiB ring's limit
  Node* a = Add(ca);
  Node* b = Add("b", {"a"});
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_EQ(a->config().max_message_bytes(), 1016u);
  ASSERT_GE(b->config().max_message_bytes(), 2000u);
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + kLinkTimeout).ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + kLinkTimeout).ok());

  const absl::Status big = b->Send("a", std::string(2000, 'B'));
  EXPECT_TRUE(big.ok()) << big;
  ASSERT_TRUE(b->Send("a", "0123456789").ok());
  auto m = a->Receive(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->from, "b");
  EXPECT_EQ(m->payload, "0123456789");
  EXPECT_EQ(a->Receive(absl::Now() + absl::Milliseconds(200)).status().code(), absl::StatusCode::kDeadlineExceeded);
  // The drop is logged (and counted) by a.
  EXPECT_TRUE(log.WaitFor({"shmesh[a] WARNING", "dropped a frame", "from b", "max_message_bytes (1016)"},
                          absl::Seconds(5)))
      << log.All();
  // The link survives it.
  EXPECT_EQ(a->Peers(), std::vector<std::string>{"b"});
  ASSERT_TRUE(b->Send("a", "after").ok());
  m = a->Receive(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->payload, "after");
}

// 6. A member that left is listed DOWN (with when) until a new incarnation
// of its name joins, which replaces the entry with an UP one.
TEST_F(NodeBehaviourTest, DepartedMemberIsDownUntilReplaced) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  Node* c = Add("c", {"a"});
  ASSERT_TRUE(a != nullptr && b != nullptr && c != nullptr);
  for (Node* n : {a, b, c}) ASSERT_TRUE(n->Start().ok()) << n->name();
  for (Node* n : {a, b, c}) ASSERT_TRUE(n->WaitForPeers(2, absl::Now() + kLinkTimeout).ok()) << n->name();
  const uint64_t old_id = c->id();

  const absl::Time stopped = absl::Now();
  c->Stop();
  // Stop itself is bounded (its Leave calls take 300 ms at most); the
  // DOWN entry is then due within 1 s of it returning (the clock starts
  // after it: under ASan on a loaded 2-core machine Stop alone has taken
  // several hundred ms).
  const absl::Time returned = absl::Now();
  EXPECT_LT(returned - stopped, absl::Seconds(3));
  mesh::v1::Member down;
  bool found = false;
  for (absl::Time end = returned + absl::Seconds(1); !found && absl::Now() < end;
       absl::SleepFor(absl::Milliseconds(5))) {
    auto topo = a->Topology(true);
    ASSERT_TRUE(topo.ok()) << topo.status();
    for (const auto& m : MembersNamed(*topo, "c")) {
      if (m.state() == mesh::v1::DOWN) {
        down = m;
        found = true;
      }
    }
  }
  ASSERT_TRUE(found) << "c not listed DOWN within 1 s of its Stop()";
  EXPECT_EQ(down.id(), old_id);
  const absl::Time since = FromProto(down.since());
  EXPECT_GE(since, stopped - absl::Seconds(1));
  EXPECT_LE(since, absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(a->Peers(), std::vector<std::string>{"b"});
  // A Join that c sent before it left and that a serves only now (its
  // control thread was announcing itself when it stopped) is refused: c
  // said goodbye, and its process (this one) is alive, so it would stay a
  // JOINING member that nobody can reach, and hold its name.
  const absl::Status late = testing_util::AnnounceMember(a->grpc_address(), dir_.path(), "c", old_id, ::getpid());
  EXPECT_EQ(late.code(), absl::StatusCode::kFailedPrecondition) << late;
  EXPECT_THAT(std::string(late.message()), HasSubstr("said goodbye and left the mesh"));
  {
    auto topo = a->Topology(true);
    ASSERT_TRUE(topo.ok()) << topo.status();
    const std::vector<mesh::v1::Member> cs = MembersNamed(*topo, "c");
    ASSERT_EQ(cs.size(), 1u) << topo->DebugString();
    EXPECT_EQ(cs[0].state(), mesh::v1::DOWN) << topo->DebugString();
  }

  // A new incarnation of c (a new id) joins through a.
  Node* c2 = Add("c", {"a"});
  ASSERT_NE(c2, nullptr);
  ASSERT_NE(c2->id(), old_id);
  ASSERT_TRUE(c2->Start().ok());
  ASSERT_TRUE(c2->WaitForPeers(2, absl::Now() + kLinkTimeout).ok());
  ASSERT_TRUE(a->WaitForPeers(2, absl::Now() + kLinkTimeout).ok());
  EXPECT_EQ(a->Peers(), (std::vector<std::string>{"b", "c"}));
  auto topo = a->Topology(true);
  ASSERT_TRUE(topo.ok()) << topo.status();
  const std::vector<mesh::v1::Member> cs = MembersNamed(*topo, "c");
  ASSERT_EQ(cs.size(), 1u) << topo->DebugString();
  EXPECT_EQ(cs[0].state(), mesh::v1::UP) << topo->DebugString();
  EXPECT_EQ(cs[0].id(), c2->id());
}

// 7. Each node logs a peer's up and its down exactly once.
TEST_F(NodeBehaviourTest, PeerUpAndDownAreLoggedOncePerNode) {
  StderrCapture log;
  ASSERT_TRUE(log.ok());
  auto info = [&](const std::string& name, const std::vector<std::string>& seeds) {
    mesh::v1::NodeConfig c = Config(name, seeds);
    c.set_log_level(mesh::v1::INFO);
    return Add(c);
  };
  Node* a = info("a", {});
  Node* b = info("b", {"a"});
  Node* c = info("c", {"b"});
  ASSERT_TRUE(a != nullptr && b != nullptr && c != nullptr);
  for (Node* n : {a, b, c}) ASSERT_TRUE(n->Start().ok()) << n->name();
  // A node's "peer up" line is written before WaitForPeers can see the
  // peer: no wait needed here (meshd logs "have N peers" after it).
  for (Node* n : {a, b, c}) {
    ASSERT_TRUE(n->WaitForPeers(2, absl::Now() + kLinkTimeout).ok()) << n->name();
    for (Node* peer : {a, b, c}) {
      if (peer == n) continue;
      EXPECT_EQ(log.Count({absl::StrCat("shmesh[", n->name(), "] INFO peer up: ", peer->name(), " (")}), 1)
          << n->name() << " at once after WaitForPeers\n" << log.All();
    }
  }
  b->Stop();
  for (const char* n : {"a", "c"}) {
    ASSERT_TRUE(log.WaitFor({absl::StrCat("shmesh[", n, "] INFO peer down: b (")}, absl::Seconds(5)))
        << n << "\n" << log.All();
  }
  absl::SleepFor(absl::Milliseconds(300));  // a second line would come now
  for (const char* n : {"a", "c"}) {
    const std::string who = absl::StrCat("shmesh[", n, "] INFO ");
    EXPECT_EQ(log.Count({absl::StrCat(who, "peer up: b (")}), 1) << n << "\n" << log.All();
    EXPECT_EQ(log.Count({absl::StrCat(who, "peer down: b (")}), 1) << n << "\n" << log.All();
  }
  EXPECT_EQ(log.Count({"shmesh[a] INFO peer up: c ("}), 1) << log.All();
  EXPECT_EQ(log.Count({"shmesh[c] INFO peer up: a ("}), 1) << log.All();
  EXPECT_EQ(log.Count({"shmesh[b] INFO peer up: a ("}), 1) << log.All();
  EXPECT_EQ(log.Count({"shmesh[b] INFO peer up: c ("}), 1) << log.All();
}

// 8. Nodes starting at the same moment race each other's servers and dials;
// that is normal and must not be logged as a WARNING.
TEST_F(NodeBehaviourTest, SimultaneousStartLogsNoWarning) {
  StderrCapture log;
  ASSERT_TRUE(log.ok());
  constexpr int kNodes = 4;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    std::vector<std::unique_ptr<Node>> nodes;
    for (int i = 0; i < kNodes; ++i) {
      mesh::v1::NodeConfig c = Config(absl::StrCat("n", i), {i == 0 ? "n1" : "n0"});
      // INFO, so that the capture is seen to work (the peer-up lines).
      if (c.log_level() != mesh::v1::DEBUG) c.set_log_level(mesh::v1::INFO);
      auto node = Node::Create(c);
      ASSERT_TRUE(node.ok()) << node.status();
      nodes.push_back(std::move(*node));
    }
    std::atomic<int> ready{0};
    std::vector<absl::Status> started(kNodes);
    std::vector<std::thread> threads;
    for (int i = 0; i < kNodes; ++i) {
      threads.emplace_back([&, i] {
        ready++;
        while (ready.load() < kNodes) {
        }
        started[i] = nodes[i]->Start();
      });
    }
    for (auto& t : threads) t.join();
    for (int i = 0; i < kNodes; ++i) ASSERT_TRUE(started[i].ok()) << "n" << i << ": " << started[i];
    for (const auto& n : nodes) {
      ASSERT_TRUE(n->WaitForPeers(kNodes - 1, absl::Now() + kLinkTimeout).ok()) << n->name() << "\n" << log.All();
    }
    nodes.clear();  // stops them
  }
  log.Stop();
  std::vector<std::string> warnings;
  int ups = 0;
  for (const std::string& line : log.Lines()) {
    if (absl::StrContains(line, " WARNING ")) warnings.push_back(line);
    if (absl::StrContains(line, " INFO peer up: ")) ++ups;
  }
  EXPECT_TRUE(warnings.empty()) << absl::StrJoin(warnings, "\n");
  // 3 rounds of 4 nodes, each with 3 peers.
  EXPECT_EQ(ups, 3 * kNodes * (kNodes - 1)) << "the log was not captured, or a peer-up line repeats";
}

// 9. Peer handlers run with no lock of the node held, after the link is
// usable: one may ask for Peers() and the topology, and send to the peer.
TEST_F(NodeBehaviourTest, PeerUpHandlerMayCallTheNode) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  ASSERT_TRUE(a != nullptr && b != nullptr);
  struct Seen {
    std::vector<std::string> peers;
    absl::Status topology;
    int topology_members = 0;
    absl::Status sent;
  };
  absl::Mutex mu;
  Seen seen;
  absl::Notification done;
  ASSERT_TRUE(a->SetPeerUpHandler([&](const PeerInfo& p) {
    if (done.HasBeenNotified()) return;
    Seen s;
    s.peers = a->Peers();
    auto topo = a->Topology(true);
    s.topology = topo.status();
    if (topo.ok()) s.topology_members = topo->members_size();
    s.sent = a->Send(p.name, "hello from peer-up", absl::Now() + absl::Seconds(5));
    {
      absl::MutexLock lock(&mu);
      seen = std::move(s);
    }
    done.Notify();
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  if (!done.WaitForNotificationWithTimeout(absl::Seconds(20))) {
    // A handler stuck on the node's lock cannot be unstuck: stop here.
    std::fprintf(stderr, "FATAL: a's peer-up handler did not finish in 20 s (deadlock?)\n");
    std::abort();
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(seen.peers, std::vector<std::string>{"b"});
    EXPECT_TRUE(seen.topology.ok()) << seen.topology;
    EXPECT_EQ(seen.topology_members, 2);
    EXPECT_TRUE(seen.sent.ok()) << seen.sent;
  }
  auto m = b->Receive(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->from, "a");
  EXPECT_EQ(m->payload, "hello from peer-up");
}

}  // namespace
}  // namespace mesh
