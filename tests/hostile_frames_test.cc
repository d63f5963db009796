// A hostile peer against a node's topics and services: a raw link (a real
// mesh::Link, dialed by the book after announcing itself through
// Discovery.Join) that writes frames straight into its ring. Frames for
// topic ids never declared, declarations of invalid or unsubscribed topics,
// requests to unknown service ids, responses nobody asked for or with
// forged correlation ids, short and unknown frames: the node must drop
// them all (deliver nothing, answer nothing it should not), keep the link
// and keep serving, both this peer and an honest node.
//
// Everything is real (memfd rings, the link socket, gRPC discovery); the
// peer runs in the test process, with the test's pid, as the peer that the
// node's SO_PEERCRED check expects.
//
// Thread contract: the test's main thread drives the raw link (the single
// consumer of its receive ring); the nodes run their own threads; state
// their handlers share with the test is under `mu`.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <utility>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/links/link.h"
#include "mesh/node.h"
#include "tests/raw_peer.h"
#include "tests/stderr_capture.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "mesh/v1/mesh.pb.h"

namespace {

using mesh::FrameKind;

constexpr char kEvil[] = "0evil";  // sorts first: it dials
constexpr uint64_t kEvilId = 0x0e0e0e0e0e0e0e0eULL;
constexpr uint64_t kRingBytes = 1 << 16;
// The declaration flag of a kTopic frame (envelope.h, kFrameFlagDeclare).
constexpr uint16_t kDeclare = 1;
constexpr uint32_t kEvilServiceId = 7;

std::string Frame(FrameKind kind, uint16_t flags, uint32_t channel, uint64_t correlation,
                  absl::string_view payload) {
  mesh::FrameHeader h;
  h.kind = static_cast<uint8_t>(kind);
  h.flags = flags;
  h.channel = channel;
  h.correlation = correlation;
  char buf[mesh::kMaxFrameHeaderBytes];
  const size_t n = mesh::EncodeFrameHeader(h, buf);
  return std::string(buf, n) + std::string(payload);
}

// A response body: 4-byte little-endian status code, then the bytes.
std::string ResponseBody(uint32_t code, absl::string_view rest) {
  char le[4] = {static_cast<char>(code & 0xff), static_cast<char>((code >> 8) & 0xff),
                static_cast<char>((code >> 16) & 0xff), static_cast<char>((code >> 24) & 0xff)};
  return std::string(le, 4) + std::string(rest);
}

using shmesh::testing::StderrCapture;

mesh::v1::NodeConfig Config(const std::string& dir, const std::string& name, const std::vector<std::string>& seeds) {
  mesh::v1::NodeConfig c;
  c.set_name(name);
  c.set_run_dir(dir);
  for (const auto& s : seeds) c.add_seeds(absl::StrCat("unix:", dir, "/", s, ".grpc"));
  c.set_ring_capacity_bytes(kRingBytes);
  // WARNING: the drops of hostile frames are logged (and checked below).
  c.set_log_level(getenv("MESH_TEST_LOG") ? mesh::v1::DEBUG : mesh::v1::WARNING);
  return c;
}

// The hostile peer's side: a raw link to node `a` and what it read.
class RawPeer {
 public:
  // Announces kEvil (this process) to `a` and dials it.
  static absl::StatusOr<std::unique_ptr<RawPeer>> Connect(mesh::Node* a, const std::string& dir) {
    absl::StatusOr<std::shared_ptr<mesh::Link>> link =
        shmesh::testing::DialAsRawPeer(a, dir, kEvil, kEvilId, kRingBytes);
    if (!link.ok()) return link.status();
    return std::unique_ptr<RawPeer>(new RawPeer(std::move(*link)));
  }

  mesh::Link& link() { return *link_; }

  absl::Status Write(const std::string& frame) { return link_->Send(frame, absl::Now() + absl::Seconds(5)); }

  // Reads control messages and frames until `done` (checked after each)
  // or `timeout`. Frames are parsed; unparseable ones fail the test.
  bool PumpUntil(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10)) {
    for (absl::Time end = absl::Now() + timeout;;) {
      absl::StatusOr<std::optional<mesh::ControlMessage>> c = link_->ReadControl();
      if (c.ok() && c->has_value()) {
        if ((*c)->message.has_interest()) interests.push_back((*c)->message.interest());
        continue;
      }
      absl::StatusOr<size_t> n = link_->Drain(64, [&](absl::string_view f) {
        mesh::ParsedFrame p = mesh::ParseFrame(f);
        EXPECT_TRUE(p.ok()) << "the node wrote an invalid frame: " << mesh::FrameErrorName(p.error);
        frames.push_back({p.header, std::string(p.payload)});
        return true;  // taken
      });
      EXPECT_TRUE(n.ok()) << n.status();
      if (done()) return true;
      if (absl::Now() > end) return false;
      if (!n.ok() || *n == 0) absl::SleepFor(absl::Milliseconds(1));
    }
  }

  // The requests of service id `id` read so far.
  std::vector<std::pair<mesh::FrameHeader, std::string>> Requests(uint32_t id) const {
    std::vector<std::pair<mesh::FrameHeader, std::string>> out;
    for (const auto& f : frames) {
      if (f.first.frame_kind() == FrameKind::kRequest && f.first.channel == id) out.push_back(f);
    }
    return out;
  }

  std::vector<mesh::v1::LinkControl::Interest> interests;
  std::vector<std::pair<mesh::FrameHeader, std::string>> frames;

 private:
  explicit RawPeer(std::shared_ptr<mesh::Link> link) : link_(std::move(link)) {}
  std::shared_ptr<mesh::Link> link_;
};

class HostileFramesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mhf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::string dir_;
};

TEST_F(HostileFramesTest, ForgedAndUnknownFramesAreDroppedAndTheNodeKeepsServing) {
  absl::Mutex mu;
  std::vector<mesh::Message> got;  // what a's subscription received
  auto a_or = mesh::Node::Create(Config(dir_, "a", {}));
  ASSERT_TRUE(a_or.ok()) << a_or.status();
  std::unique_ptr<mesh::Node> a = std::move(*a_or);
  ASSERT_TRUE(a->Start().ok());
  absl::Cleanup stop_a = [&] { a->Stop(); };
  auto sub = a->Subscribe("n/*", [&](const mesh::MessageView& m) {
    absl::MutexLock lock(&mu);
    got.push_back({std::string(m.from), std::string(m.payload), std::string(m.topic)});
  });
  ASSERT_TRUE(sub.ok()) << sub.status();
  auto served = a->Serve("svc", [](const mesh::RequestView& r) -> absl::StatusOr<std::string> {
    return absl::StrCat("re:", r.payload);
  });
  ASSERT_TRUE(served.ok()) << served.status();
  auto pub = a->Advertise("h/t");
  ASSERT_TRUE(pub.ok()) << pub.status();

  auto evil_or = RawPeer::Connect(a.get(), dir_);
  ASSERT_TRUE(evil_or.ok()) << evil_or.status();
  RawPeer& evil = **evil_or;
  // a tells us what it subscribes to and serves.
  uint32_t svc_id = 0;
  ASSERT_TRUE(evil.PumpUntil([&] {
    for (const auto& i : evil.interests) {
      for (const auto& s : i.serve()) {
        if (s.name() == "svc") svc_id = s.id();
      }
    }
    return svc_id != 0;
  })) << "no Interest with the service from the node";
  mesh::v1::LinkControl hello;
  hello.mutable_interest()->set_reset(true);
  hello.mutable_interest()->add_subscribe("h/**");
  auto* evil_service = hello.mutable_interest()->add_serve();
  evil_service->set_name("evil");
  evil_service->set_id(kEvilServiceId);
  ASSERT_TRUE(evil.link().SendControl(hello).ok());
  ASSERT_TRUE((*pub)->WaitForSubscribers(1, absl::Now() + absl::Seconds(10)).ok());
  EXPECT_EQ((*pub)->subscribers(), std::vector<std::string>{kEvil});
  for (absl::Time end = absl::Now() + absl::Seconds(10); a->Servers("evil").empty() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  ASSERT_EQ(a->Servers("evil"), std::vector<std::string>{kEvil});

  // The honest wire format, as documented: a declaration, then the message.
  ASSERT_TRUE((*pub)->Publish("hello").ok());
  ASSERT_TRUE(evil.PumpUntil([&] { return evil.frames.size() >= 2; }));
  ASSERT_EQ(evil.frames[0].first.frame_kind(), FrameKind::kTopic);
  EXPECT_EQ(evil.frames[0].first.flags, kDeclare);
  EXPECT_EQ(evil.frames[0].second, "h/t");
  EXPECT_EQ(evil.frames[1].first.frame_kind(), FrameKind::kTopic);
  EXPECT_EQ(evil.frames[1].first.flags, 0);
  EXPECT_EQ(evil.frames[1].first.channel, evil.frames[0].first.channel);
  EXPECT_EQ(evil.frames[1].second, "hello");

  // Garbage, in one burst. What the node logs meanwhile is kept: each kind
  // of drop is counted and logged (rate-limited), which is all a test can
  // see of the counters (mesh/pubsub's and mesh/rpc's are not public).
  auto capture = std::make_unique<StderrCapture>(dir_ + "/stderr");
  const std::vector<std::string> garbage = {
      Frame(FrameKind::kTopic, 0, 999, 0, "never declared"),
      Frame(FrameKind::kTopic, kDeclare, 5, 0, "bad//name"),
      Frame(FrameKind::kTopic, 0, 5, 0, "on an invalid topic"),
      Frame(FrameKind::kTopic, kDeclare, 6, 0, "other/topic"),
      Frame(FrameKind::kTopic, 0, 6, 0, "on a topic a does not subscribe to"),
      Frame(FrameKind::kTopic, kDeclare, 9, 0, std::string(300, 'x')),  // over 255 bytes
      Frame(FrameKind::kTopic, kDeclare, 10, 0, ""),
      Frame(FrameKind::kTopic, 0, 10, 0, "on an empty topic"),
      Frame(FrameKind::kResponse, 0, 0, 0xdeadbeefULL, ResponseBody(0, "nobody asked")),
      Frame(FrameKind::kResponse, 0, 0, 1, "\x01"),  // shorter than its status
      Frame(FrameKind::kRequest, 0, 4242, 5, "to no service"),
      // A pool reference of 4 bytes, not 32: dropped as bad_size and
      // counted (pools[0].dropped_bad_refs, checked below).
      Frame(FrameKind::kPoolRef, 0, 0, 0, "pool"),
      // A pool release of 7 bytes (not whole tokens): dropped.
      Frame(FrameKind::kPoolRelease, 0, 0, 0, "release"),
      std::string("\x02\x01\0\0\0\0\0\0bad version", 19),
      Frame(FrameKind::kTopic, 0x8000, 8, 0, "unknown flag"),
      std::string("\x01\x04\0\0\0\0\0\0", 8),  // a response cut short
  };
  for (const std::string& f : garbage) ASSERT_TRUE(evil.Write(f).ok());
  // Then honest frames: a topic a subscribes to, and a request to svc.
  ASSERT_TRUE(evil.Write(Frame(FrameKind::kTopic, kDeclare, 8, 0, "n/x")).ok());
  ASSERT_TRUE(evil.Write(Frame(FrameKind::kTopic, 0, 8, 0, "good")).ok());
  ASSERT_TRUE(evil.Write(Frame(FrameKind::kRequest, 0, svc_id, 42, "ping")).ok());
  auto response_to = [&](uint64_t correlation) -> const std::pair<mesh::FrameHeader, std::string>* {
    for (const auto& f : evil.frames) {
      if (f.first.frame_kind() == FrameKind::kResponse && f.first.correlation == correlation) return &f;
    }
    return nullptr;
  };
  ASSERT_TRUE(evil.PumpUntil([&] { return response_to(42) != nullptr; })) << "the request after the garbage was not answered";
  EXPECT_EQ(response_to(42)->second, ResponseBody(0, "re:ping"));
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(got.size(), 1u) << "garbage was delivered";
    EXPECT_EQ(got[0].from, kEvil);
    EXPECT_EQ(got[0].topic, "n/x");
    EXPECT_EQ(got[0].payload, "good");
  }
  // A request to an unknown service id is not handled; if it is answered
  // at all, then with an error.
  if (const auto* r = response_to(5); r != nullptr) {
    ASSERT_GE(r->second.size(), 4u);
    EXPECT_NE(r->second.substr(0, 4), std::string(4, '\0')) << "an unknown service id answered OK";
  }
  EXPECT_EQ((*served)->handled(), 1u);
  EXPECT_EQ(a->Peers(), std::vector<std::string>{kEvil}) << "the link was dropped";
  const std::string log = capture->Text();
  EXPECT_NE(log.find("dropped a topic frame from 0evil"), std::string::npos) << log;
  EXPECT_NE(log.find("a pool reference that does not resolve (bad_size)"), std::string::npos) << log;
  {
    absl::StatusOr<mesh::v1::TopologySnapshot> topology = a->Topology(true);
    ASSERT_TRUE(topology.ok()) << topology.status();
    ASSERT_EQ(topology->pools_size(), 1);
    EXPECT_EQ(topology->pools(0).dropped_bad_refs(), 1u);
    EXPECT_EQ(topology->pools(0).bad_releases(), 0u) << "a malformed release counted as tokens";
  }
  capture.reset();

  // Calls to the hostile peer's service: forged correlation ids first,
  // then the real answer; then an error status; then no answer at all.
  {
    absl::StatusOr<std::string> result;
    std::thread t([&] { result = a->Call("evil", "req1", absl::Now() + absl::Seconds(10)); });
    EXPECT_TRUE(evil.PumpUntil([&] { return evil.Requests(kEvilServiceId).size() >= 1; }));
    const auto req = evil.Requests(kEvilServiceId).empty() ? std::make_pair(mesh::FrameHeader{}, std::string())
                                                            : evil.Requests(kEvilServiceId)[0];
    EXPECT_EQ(req.second, "req1");
    EXPECT_TRUE(evil.Write(Frame(FrameKind::kResponse, 0, 0, req.first.correlation + 1, ResponseBody(0, "forged"))).ok());
    EXPECT_TRUE(evil.Write(Frame(FrameKind::kResponse, 0, 0, req.first.correlation ^ (uint64_t{1} << 40),
                                 ResponseBody(0, "forged too"))).ok());
    EXPECT_TRUE(evil.Write(Frame(FrameKind::kResponse, 0, 0, req.first.correlation, ResponseBody(0, "real"))).ok());
    t.join();
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(*result, "real");
  }
  {
    absl::StatusOr<std::string> result;
    std::thread t([&] { result = a->Call("evil", "req2", absl::Now() + absl::Seconds(10)); });
    EXPECT_TRUE(evil.PumpUntil([&] { return evil.Requests(kEvilServiceId).size() >= 2; }));
    const auto req = evil.Requests(kEvilServiceId).size() < 2 ? std::make_pair(mesh::FrameHeader{}, std::string())
                                                              : evil.Requests(kEvilServiceId)[1];
    EXPECT_TRUE(evil.Write(Frame(FrameKind::kResponse, 0, 0, req.first.correlation,
                                 ResponseBody(static_cast<uint32_t>(absl::StatusCode::kFailedPrecondition), "no way")))
                    .ok());
    t.join();
    EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition) << result.status();
    EXPECT_NE(result.status().message().find("no way"), absl::string_view::npos) << result.status();
  }
  {
    absl::StatusOr<std::string> result;
    std::thread t([&] { result = a->Call("evil", "req3", absl::Now() + absl::Milliseconds(200)); });
    EXPECT_TRUE(evil.PumpUntil([&] { return evil.Requests(kEvilServiceId).size() >= 3; }));
    t.join();
    EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded) << result.status();
    // The answer comes too late: dropped.
    ASSERT_GE(evil.Requests(kEvilServiceId).size(), 3u);
    const auto req = evil.Requests(kEvilServiceId)[2];
    ASSERT_TRUE(evil.Write(Frame(FrameKind::kResponse, 0, 0, req.first.correlation, ResponseBody(0, "late"))).ok());
  }

  // The node still serves an honest node: a call to svc and a publication.
  auto b_or = mesh::Node::Create(Config(dir_, "b", {"a"}));
  ASSERT_TRUE(b_or.ok());
  std::unique_ptr<mesh::Node> b = std::move(*b_or);
  ASSERT_TRUE(b->Start().ok());
  absl::Cleanup stop_b = [&] { b->Stop(); };
  std::vector<std::string> b_got;
  auto b_sub = b->Subscribe("h/*", [&](const mesh::MessageView& m) {
    absl::MutexLock lock(&mu);
    b_got.emplace_back(m.payload);
  });
  ASSERT_TRUE(b_sub.ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + absl::Seconds(20)).ok());
  absl::StatusOr<std::string> reply;
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end; absl::SleepFor(absl::Milliseconds(5))) {
    reply = b->Call("svc", "honest", absl::Now() + absl::Seconds(5));
    if (!absl::IsNotFound(reply.status())) break;
  }
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "re:honest");
  ASSERT_TRUE((*pub)->WaitForSubscribers(2, absl::Now() + absl::Seconds(10)).ok());
  ASSERT_TRUE((*pub)->Publish("to both").ok());
  for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end; absl::SleepFor(absl::Milliseconds(2))) {
    absl::MutexLock lock(&mu);
    if (!b_got.empty()) break;
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(b_got, std::vector<std::string>{"to both"});
  }
  EXPECT_EQ(a->Peers(), (std::vector<std::string>{kEvil, "b"}));

  // Call ids are sequential: the hostile peer can guess the id of a's call
  // to b's slow service and answer it first. Such an answer comes on the
  // wrong link: dropped; the call gets b's answer.
  auto slow = b->Serve("slow", [](const mesh::RequestView& r) -> absl::StatusOr<std::string> {
    absl::SleepFor(absl::Milliseconds(300));
    return absl::StrCat("b:", r.payload);
  });
  ASSERT_TRUE(slow.ok()) << slow.status();
  for (absl::Time end = absl::Now() + absl::Seconds(10); a->Servers("slow").empty() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  const uint64_t last_seen = evil.Requests(kEvilServiceId).back().first.correlation;
  {
    capture = std::make_unique<StderrCapture>(dir_ + "/stderr2");
    absl::StatusOr<std::string> result;
    std::thread t([&] { result = a->Call("slow", "mine", absl::Now() + absl::Seconds(10)); });
    absl::SleepFor(absl::Milliseconds(100));  // the request is on its way to b
    for (uint64_t id = last_seen + 1; id <= last_seen + 64; ++id) {
      EXPECT_TRUE(evil.Write(Frame(FrameKind::kResponse, 0, 0, id, ResponseBody(0, "forged"))).ok());
    }
    t.join();
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(*result, "b:mine") << "a forged response completed a call to another server";
    const std::string log2 = capture->Text();
    EXPECT_NE(log2.find("dropped a response from 0evil to a call that went to b"), std::string::npos) << log2;
    capture.reset();
  }

  // A malformed Interest is a protocol violation: a drops that link, and
  // goes on serving b.
  mesh::v1::LinkControl bad;
  bad.mutable_interest()->add_subscribe("a//b");
  ASSERT_TRUE(evil.link().SendControl(bad).ok());
  for (absl::Time end = absl::Now() + absl::Seconds(10); a->Peers().size() != 1 && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_EQ(a->Peers(), std::vector<std::string>{"b"}) << "a kept a link that sent a malformed Interest";
  reply = b->Call("svc", "still", absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(*reply, "re:still");
  slow->reset();
  // Handlers capture locals of this test: stop the nodes before they go.
  std::move(stop_b).Invoke();
  b_sub->reset();
  std::move(stop_a).Invoke();
}

}  // namespace
