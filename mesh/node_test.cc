// In-process tests of mesh::Node: several nodes in one process, each with
// real sockets, memfd rings and a gRPC server. Multi-process suites live in
// tests/.
#include "mesh/dataplane/envelope.h"
#include "mesh/node.h"

#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/test_util.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "ringbuf/ring.h"
#include "testing/fd_count.h"

namespace mesh {
namespace {

using testing_util::ReadLine;
using testing_util::ThreadCpu;

class NodeTest : public ::testing::Test {
 protected:
  // Stops every node, newest first. After it no handler runs, so a test
  // whose handlers capture its own locals holds
  //   absl::Cleanup stop_nodes = [this] { StopNodes(); };
  // declared after those locals: the nodes stop before the locals go.
  void StopNodes() {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)->Stop();
  }
  void SetUp() override {
    char tmpl[] = "/tmp/mnt-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fds_before_ = shmesh::testing::CountOpenFds();
  }
  void TearDown() override {
    nodes_.clear();
    std::error_code ec;
    // Stop() removes every socket: the directory must be empty.
    EXPECT_TRUE(std::filesystem::is_empty(dir_, ec)) << dir_;
    std::filesystem::remove_all(dir_, ec);
  }

  mesh::v1::NodeConfig Config(const std::string& name, const std::vector<std::string>& seeds) {
    return testing_util::TestConfig(dir_, name, seeds);
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
  EXPECT_TRUE(b->SetMessageHandler([&](const MessageView& m) {
    absl::MutexLock lock(&mu);
    got_b.push_back(absl::StrCat(m.from, ":", m.payload));
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
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
  EXPECT_TRUE(a->SetPeerDownHandler([&](const PeerInfo& p) {
    if (p.name == "b") downs++;
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
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
  // Fill until sends stay blocked: b's queue is at its bound and the ring is
  // full. Three timed-out sends in a row, so that a loaded machine pausing
  // b's receive thread for a while is not mistaken for a full queue.
  int sent = 0;
  int blocked = 0;
  while (blocked < 3) {
    absl::Status s = a->Send("b", msg, absl::Now() + absl::Milliseconds(50));
    if (s.ok()) {
      ++sent;
      blocked = 0;
    } else {
      ASSERT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
      ++blocked;
    }
    ASSERT_LT(sent, 100000) << "the ring never filled up";
  }
  EXPECT_GT(sent, 8);  // ring plus queue held a good number first
  absl::Status s;
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

TEST_F(NodeTest, ReceiveFdIsReadableWhileAMessageIsQueued) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  pollfd p{a->receive_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "readable with nothing queued";
  ASSERT_TRUE(b->Send("a", "wake up").ok());
  // An application's event loop: wait on the descriptor, then Receive.
  ASSERT_EQ(::poll(&p, 1, 5000), 1);
  auto m = a->Receive(absl::InfinitePast());
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->payload, "wake up");
  EXPECT_EQ(::poll(&p, 1, 0), 0) << "still readable after the queue emptied";
  EXPECT_EQ(a->Receive(absl::InfinitePast()).status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(NodeTest, ManyThreadsSendingToOnePeerKeepEachThreadsOrder) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  absl::Mutex mu;
  std::vector<int> next(kThreads, 0);
  int errors = 0, total = 0;
  EXPECT_TRUE(a->SetMessageHandler([&](const MessageView& m) {
    int thread = 0, seq = 0;
    std::string copy(m.payload);  // shared memory: copy before parsing
    if (std::sscanf(copy.c_str(), "%d:%d", &thread, &seq) != 2 || thread < 0 || thread >= kThreads) {
      absl::MutexLock lock(&mu);
      ++errors;
      return;
    }
    absl::MutexLock lock(&mu);
    if (seq != next[thread]) ++errors;
    next[thread] = seq + 1;
    ++total;
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        ASSERT_TRUE(b->Send("a", absl::StrCat(t, ":", i), absl::Now() + absl::Seconds(10)).ok());
      }
    });
  }
  for (auto& t : senders) t.join();
  absl::MutexLock lock(&mu);
  auto all_in = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return total + errors >= kThreads * kPerThread; };
  mu.AwaitWithTimeout(absl::Condition(&all_in), absl::Seconds(10));
  EXPECT_EQ(errors, 0);
  EXPECT_EQ(total, kThreads * kPerThread);
}

TEST_F(NodeTest, WatchTopologyStreamsChanges) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  auto stub = mesh::v1::Topology::NewStub(
      grpc::CreateChannel(a->grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  mesh::v1::WatchTopologyRequest req;
  req.set_local_only(true);
  req.set_min_interval_ms(1);
  auto reader = stub->WatchTopology(&ctx, req);
  mesh::v1::TopologySnapshot snap;
  ASSERT_TRUE(reader->Read(&snap));
  EXPECT_EQ(snap.members_size(), 1);  // just a
  Node* b = Add("b", {"a"});
  ASSERT_TRUE(b->Start().ok());
  // Snapshots follow each change until one shows b linked.
  bool linked = false;
  while (!linked && reader->Read(&snap)) linked = snap.members_size() == 2 && snap.links_size() == 1;
  EXPECT_TRUE(linked) << snap.DebugString();
  ctx.TryCancel();
  mesh::v1::TopologySnapshot ignored;
  while (reader->Read(&ignored)) {
  }
  (void)reader->Finish();
}

TEST_F(NodeTest, ServesStandardHealthChecking) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  // grpc.health.v1.Health/Check with an empty HealthCheckRequest (service
  // ""), through a generic stub: what any generic gRPC client would send.
  grpc::GenericStub stub(grpc::CreateChannel(a->grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::ByteBuffer request, response;
  grpc::Slice empty("", 0);
  request = grpc::ByteBuffer(&empty, 1);
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &response,
                 [&](grpc::Status s) {
                   status = std::move(s);
                   done.Notify();
                 });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  // HealthCheckResponse{status: SERVING (1)}: field 1, varint 1.
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

// Speaks the link handshake by hand on `node`'s link socket, claiming to be
// `claimed` (name, id): returns the reject reason, or "" if welcomed.
std::string HandshakeAs(const std::string& dir, const std::string& node, const mesh::v1::Member& claimed,
                        uint64_t node_id) {
  auto sock = fdpass::ConnectSeqpacket(absl::StrCat(dir, "/", node, ".link"), absl::Now() + absl::Seconds(2));
  if (!sock.ok()) return absl::StrCat("connect failed: ", sock.status().ToString());
  mesh::v1::LinkHello hello;
  hello.set_version(2);
  hello.set_name(claimed.name());
  hello.set_id(claimed.id());
  hello.set_to_name(node);
  hello.set_to_id(node_id);
  hello.set_ring_capacity_bytes(4096);
  std::string bytes;
  hello.SerializeToString(&bytes);
  // No ring descriptors: a real hello carries two; refusal must come first
  // for identity problems either way. A node that refuses us at accept may
  // have answered and closed before the hello went out: as Link::Dial
  // does, read its reason then.
  const bool sent = fdpass::SendMessage(sock->get(), bytes, {}, absl::Now() + absl::Seconds(2)).ok();
  auto reply = fdpass::ReceiveMessage(sock->get(), sent ? absl::Now() + absl::Seconds(5) : absl::InfinitePast());
  if (!sent && !reply.ok()) return "send failed";
  if (!reply.ok()) return absl::StrCat("no reply: ", reply.status().ToString());
  mesh::v1::LinkReply r;
  if (!r.ParseFromString(reply->bytes)) return "malformed reply";
  return r.has_reject_reason() ? r.reject_reason() : "";
}

TEST_F(NodeTest, LinkFromProcessThatNeverJoinedIsRefused) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  mesh::v1::Member ghost;
  ghost.set_name("ghost");
  ghost.set_id(42);
  std::string reason = HandshakeAs(dir_, "a", ghost, a->id());
  EXPECT_NE(reason.find("has not joined through discovery"), std::string::npos) << reason;
  EXPECT_TRUE(a->Peers().empty());
}

TEST_F(NodeTest, LinkClaimingAnotherMembersNameIsRefused) {
  // b is a real member (in this process). A forked child, with its own pid,
  // claims to be b on a's link socket: SO_PEERCRED gives it away. The child
  // is forked before this test's nodes start, while no thread of ours
  // allocates (a fork amid the nodes' link-up traffic can copy a held
  // allocator lock into the child: it hung under ASan); it waits for the
  // ids on a pipe, then uses only fdpass and protobuf.
  int in[2], out[2];
  ASSERT_EQ(::pipe(in), 0);
  ASSERT_EQ(::pipe(out), 0);
  pid_t child = ::fork();
  if (child == 0) {
    ::close(in[1]);
    ::close(out[0]);
    uint64_t ids[2] = {0, 0};  // b's, a's
    size_t got = 0;
    while (got < sizeof(ids)) {
      const ssize_t r = ::read(in[0], reinterpret_cast<char*>(ids) + got, sizeof(ids) - got);
      if (r <= 0) _exit(1);
      got += static_cast<size_t>(r);
    }
    mesh::v1::Member impostor;
    impostor.set_name("b");
    impostor.set_id(ids[0]);
    std::string reason = HandshakeAs(dir_, "a", impostor, ids[1]);
    reason += absl::StrCat("|child pid ", ::getpid());
    (void)!::write(out[1], reason.data(), reason.size());
    _exit(0);
  }
  ::close(in[0]);
  ::close(out[1]);
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  const uint64_t ids[2] = {b->id(), a->id()};
  ASSERT_EQ(::write(in[1], ids, sizeof(ids)), static_cast<ssize_t>(sizeof(ids)));
  ::close(in[1]);
  std::string reason;
  char buf[512];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof(buf))) > 0) reason.append(buf, n);
  ::close(out[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  // Refused at accept by its SO_PEERCRED pid, before its hello is read:
  // no member runs as that process. (A member's process claiming another
  // member's name is refused by the hello check: "pid P claims to be 'b',
  // which discovery announced as pid Q"; see the link_handshake fuzz
  // target's accept_wrong_pid.)
  EXPECT_NE(reason.find(absl::StrCat("pid ", child, " has not joined through discovery")), std::string::npos)
      << reason;
  EXPECT_EQ(a->Peers(), std::vector<std::string>{"b"});  // the real b is unaffected
}

TEST_F(NodeTest, PeerWithUidNotAllowedIsRefused) {
  // a only accepts uid 12345; b runs as our uid, so a refuses b's Join (and
  // would refuse its link socket by SO_PEERCRED) and they never link.
  mesh::v1::NodeConfig ca = Config("a", {});
  ca.add_allowed_peer_uids(12345);
  auto a = Node::Create(ca);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE((*a)->Start().ok());
  Node* b = Add("b", {"a"});
  ASSERT_TRUE(b->Start().ok());
  EXPECT_EQ(b->WaitForPeers(1, absl::Now() + absl::Milliseconds(500)).code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE((*a)->Peers().empty());
  // The link socket check on its own: a hello from our uid is refused
  // before anything else is looked at.
  mesh::v1::Member me;
  me.set_name("b");
  me.set_id(b->id());
  std::string reason = HandshakeAs(dir_, "a", me, (*a)->id());
  EXPECT_NE(reason.find("not in allowed_peer_uids"), std::string::npos) << reason;
}

TEST_F(NodeTest, DoorbellSpamDoesNotPinTheReceiver) {
  // A hostile peer, in a child forked before any node thread exists, that
  // links with a by the book (announced through discovery with its own pid,
  // a real sealed ring) and then rings a's doorbell as fast as it can
  // without writing anything. a's receive thread must not burn a core on
  // it, and a real message written after the spam must still arrive.
  int to_child[2], from_child[2];
  ASSERT_EQ(::pipe(to_child), 0);
  ASSERT_EQ(::pipe(from_child), 0);
  const std::string a_link = absl::StrCat(dir_, "/a.link");
  constexpr absl::Duration kSpam = absl::Seconds(2);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(to_child[1]);
    ::close(from_child[0]);
    auto say = [&](const std::string& l) { (void)!::write(from_child[1], (l + "\n").data(), l.size() + 1); };
    const uint64_t a_id = std::stoull(ReadLine(to_child[0]));
    auto ring = ringbuf::Ring::Create(4096);
    auto sock = fdpass::ConnectSeqpacket(a_link, absl::Now() + absl::Seconds(5));
    if (!ring.ok() || !sock.ok()) {
      say("ERROR setup");
      _exit(1);
    }
    mesh::v1::LinkHello hello;
    hello.set_version(2);
    hello.set_name("0evil");
    hello.set_id(77);
    hello.set_to_name("a");
    hello.set_to_id(a_id);
    hello.set_ring_capacity_bytes(4096);
    const int fds[2] = {ring->region_fd(), ring->consumer_doorbell_fd()};
    auto sent = fdpass::SendMessage(sock->get(), hello.SerializeAsString(), absl::MakeConstSpan(fds),
                                    absl::Now() + absl::Seconds(5));
    auto reply = fdpass::ReceiveMessage(sock->get(), absl::Now() + absl::Seconds(5));
    mesh::v1::LinkReply r;
    if (!sent.ok() || !reply.ok() || !r.ParseFromString(reply->bytes) || !r.has_welcome()) {
      say(absl::StrCat("ERROR handshake: ", r.reject_reason()));
      _exit(1);
    }
    ring->DropConsumerDoorbell();  // a has its copy
    say("LINKED");
    (void)ReadLine(to_child[0]);  // "spam"
    uint64_t rings = 0;
    // The producer's end rings a's (the consumer's) end; never waits (a
    // full socket buffer is EAGAIN).
    for (absl::Time end = absl::Now() + kSpam; absl::Now() < end;) {
      for (int i = 0; i < 64; ++i, ++rings) {
        (void)::send(ring->producer_doorbell_fd(), "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
      }
    }
    // Now a real message, the honest way.
    bool wrote = ring->producer().Write(mesh::kMessagePrefix, "after the spam", absl::Now() + absl::Seconds(5)).ok();
    say(absl::StrCat("SPAMMED ", rings, wrote ? " wrote" : " write-failed"));
    (void)ReadLine(to_child[0]);  // EOF: the test is done
    _exit(0);
  }
  ::close(to_child[0]);
  ::close(from_child[1]);
  base::UniqueFd to(to_child[1]), from(from_child[0]);

  mesh::v1::NodeConfig config = Config("a", {});
  config.set_unresponsive_after_ms(500);
  auto created = Node::Create(config);
  ASSERT_TRUE(created.ok()) << created.status();
  nodes_.push_back(std::move(*created));
  Node* a = nodes_.back().get();
  absl::Mutex mu;
  std::vector<std::string> got;
  EXPECT_TRUE(a->SetMessageHandler([&](const MessageView& m) {
    absl::MutexLock lock(&mu);
    got.push_back(absl::StrCat(m.from, ":", m.payload));
  }).ok());
  std::vector<std::string> unresponsive_events;
  EXPECT_TRUE(a->SetPeerUnresponsiveHandler([&](const PeerInfo& p, bool unresponsive) {
    absl::MutexLock lock(&mu);
    unresponsive_events.push_back(absl::StrCat(p.name, unresponsive ? " unresponsive" : " responsive"));
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
  ASSERT_TRUE(a->Start().ok());
  // Announce the child as member "0evil" (it sorts first, so it dials).
  {
    absl::Status announced = testing_util::AnnounceMember(a->grpc_address(), dir_, "0evil", 77, child);
    ASSERT_TRUE(announced.ok()) << announced;
  }
  const std::string id_line = absl::StrCat(a->id(), "\n");
  ASSERT_EQ(::write(to.get(), id_line.data(), id_line.size()), static_cast<ssize_t>(id_line.size()));
  ASSERT_EQ(ReadLine(from.get()), "LINKED");
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());

  const absl::Duration cpu_before = ThreadCpu("mesh-recv");
  ASSERT_GE(cpu_before, absl::ZeroDuration()) << "no thread named mesh-recv";
  ASSERT_EQ(::write(to.get(), "spam\n", 5), 5);
  const std::string spammed = ReadLine(from.get());
  const absl::Duration cpu = ThreadCpu("mesh-recv") - cpu_before;
  std::printf("doorbell spam: %s; a's receive thread used %s of CPU in %s\n", spammed.c_str(),
              absl::FormatDuration(cpu).c_str(), absl::FormatDuration(kSpam).c_str());
  ASSERT_TRUE(absl::StartsWith(spammed, "SPAMMED ")) << spammed;
  EXPECT_TRUE(absl::EndsWith(spammed, " wrote")) << spammed;
  uint64_t rings = 0;
  ASSERT_TRUE(absl::SimpleAtoi(std::vector<std::string>(absl::StrSplit(spammed, ' '))[1], &rings));
  EXPECT_GT(rings, 10000u) << "the child hardly rang: the test proves nothing";
  // Unguarded, every ring wakes the receiver for nothing and it spins
  // after each wake-up: a whole core for the whole spam.
  EXPECT_LT(cpu, kSpam / 4) << "the receive thread burned CPU on a doorbell that carried no data";
  // The link still works, and the real message arrives.
  bool arrived = false;
  for (absl::Time end = absl::Now() + absl::Seconds(5); !arrived && absl::Now() < end;
       absl::SleepFor(absl::Milliseconds(5))) {
    absl::MutexLock lock(&mu);
    arrived = std::find(got.begin(), got.end(), "0evil:after the spam") != got.end();
  }
  EXPECT_TRUE(arrived) << "the message written after the spam never arrived";
  // The child runs no node, so it never beats the heartbeat in a's ring:
  // after unresponsive_after_ms (500 ms here; the spam took 2 s) a
  // reports it unresponsive, once.
  EXPECT_EQ(a->UnresponsivePeers(), std::vector<std::string>{"0evil"});
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(unresponsive_events, std::vector<std::string>{"0evil unresponsive"});
  }
  to.reset();  // the child exits
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
}  // namespace mesh
