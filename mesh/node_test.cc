// In-process tests of mesh::Node: several nodes in one process, each with
// real sockets, memfd rings and a gRPC server. Multi-process suites live in
// tests/.
#include "mesh/node.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "fdpass/socket.h"
#include "gtest/gtest.h"

namespace mesh {
namespace {

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mnt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fds_before_ = fdpass::CountOpenFds();
  }
  void TearDown() override {
    nodes_.clear();
    std::error_code ec;
    // Stop() removes every socket: the directory must be empty.
    EXPECT_TRUE(std::filesystem::is_empty(dir_, ec)) << dir_;
    std::filesystem::remove_all(dir_, ec);
  }

  mesh::v1::NodeConfig Config(const std::string& name, const std::vector<std::string>& seeds) {
    mesh::v1::NodeConfig c;
    c.set_name(name);
    c.set_run_dir(dir_);
    for (const auto& s : seeds) c.add_seeds(absl::StrCat("unix:", dir_, "/", s, ".grpc"));
    c.set_ring_capacity_bytes(1 << 16);
    c.set_log_level(getenv("MESH_TEST_LOG") ? mesh::v1::DEBUG : mesh::v1::WARNING);
    return c;
  }

  Node* Add(const std::string& name, const std::vector<std::string>& seeds) {
    auto node = Node::Create(Config(name, seeds));
    EXPECT_TRUE(node.ok()) << node.status();
    nodes_.push_back(std::move(*node));
    return nodes_.back().get();
  }

  std::string dir_;
  size_t fds_before_ = 0;
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(NodeTest, TwoNodesExchangeMessagesInOrder) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  absl::Mutex mu;
  std::vector<std::string> got_b;
  b->SetMessageHandler([&](const MessageView& m) {
    absl::MutexLock lock(&mu);
    got_b.push_back(absl::StrCat(m.from, ":", m.payload));
  });
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(a->Peers(), std::vector<std::string>{"b"});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(a->Send("b", absl::StrCat(i)).ok());
  ASSERT_TRUE(b->Send("a", "pong").ok());
  auto m = a->Receive(absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->from, "b");
  EXPECT_EQ(m->payload, "pong");
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline) {
    absl::MutexLock lock(&mu);
    if (got_b.size() == 1000) break;
    mu.AwaitWithTimeout(absl::Condition(+[](std::vector<std::string>* v) { return v->size() == 1000; }, &got_b),
                        absl::Milliseconds(50));
  }
  absl::MutexLock lock(&mu);
  ASSERT_EQ(got_b.size(), 1000u);
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(got_b[i], absl::StrCat("a:", i));
}

TEST_F(NodeTest, ThreeNodesFormAFullMeshAndReportTopology) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  Node* c = Add("c", {"b"});
  for (Node* n : {a, b, c}) ASSERT_TRUE(n->Start().ok());
  for (Node* n : {a, b, c}) ASSERT_TRUE(n->WaitForPeers(2, absl::Now() + absl::Seconds(10)).ok()) << n->name();
  ASSERT_TRUE(c->Send("a", "x").ok());
  auto topo = b->Topology(false);
  ASSERT_TRUE(topo.ok()) << topo.status();
  EXPECT_EQ(topo->members_size(), 3);
  EXPECT_EQ(topo->links_size(), 3);
  for (const auto& l : topo->links()) EXPECT_TRUE(l.confirmed_by_both()) << l.a() << "-" << l.b();
}

TEST_F(NodeTest, StoppedPeerIsReportedDown) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  std::atomic<int> downs{0};
  a->SetPeerDownHandler([&](const PeerInfo& p) {
    if (p.name == "b") downs++;
  });
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  b->Stop();
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (downs.load() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(downs.load(), 1);
  EXPECT_TRUE(a->Peers().empty());
  EXPECT_EQ(a->Send("b", "x").code(), absl::StatusCode::kNotFound);
}

TEST_F(NodeTest, MessagesSentBeforeStopAreDelivered) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  constexpr int kCount = 5000;
  for (int i = 0; i < kCount; ++i) ASSERT_TRUE(b->Send("a", absl::StrCat(i), absl::Now() + absl::Seconds(5)).ok());
  b->Stop();  // sends Leave at once: a must still deliver all of the above
  for (int i = 0; i < kCount; ++i) {
    auto m = a->Receive(absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(m.ok()) << "message " << i << ": " << m.status();
    ASSERT_EQ(m->payload, absl::StrCat(i));
  }
}

TEST_F(NodeTest, FullRingFailsAtOnceOrAfterDeadline) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  // b has no handler and nobody calls Receive: its bounded queue fills, then
  // its ring from a, and a's sends hit backpressure.
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ(a->Send("b", std::string(1 << 20, 'x')).code(), absl::StatusCode::kInvalidArgument);
  const std::string msg(8000, 'm');
  // Fill until a send stays blocked for 50 ms: b's queue is at its bound
  // and the ring is full (b's receive thread may still be moving frames
  // into its queue before that).
  int sent = 0;
  absl::Status s;
  while ((s = a->Send("b", msg, absl::Now() + absl::Milliseconds(50))).ok()) {
    ASSERT_LT(++sent, 100000) << "the ring never filled up";
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GT(sent, 8);  // ring plus queue held a good number first
  s = a->Send("b", msg, absl::InfinitePast());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  absl::Time start = absl::Now();
  s = a->Send("b", msg, absl::Now() + absl::Milliseconds(100));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(90));
  // Draining b frees space: a blocking send then goes through, and every
  // message arrives in order.
  std::thread reader([&] {
    for (int i = 0; i <= sent; ++i) {
      auto m = b->Receive(absl::Now() + absl::Seconds(10));
      ASSERT_TRUE(m.ok()) << m.status();
      ASSERT_EQ(m->payload.size(), msg.size());
    }
  });
  EXPECT_TRUE(a->Send("b", msg, absl::Now() + absl::Seconds(10)).ok());
  reader.join();
}

TEST_F(NodeTest, SecondNodeWithSameNameIsRefused) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  auto dup = Node::Create(Config("a", {}));
  ASSERT_TRUE(dup.ok());
  absl::Status s = (*dup)->Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
}

}  // namespace
}  // namespace mesh
