// A hostile peer against a node's shared rings (mesh/dataplane/
// shared_rings.h, LinkControl.SharedRing): a raw link (a real mesh::Link,
// dialed after announcing itself through Discovery.Join, as in
// hostile_pool_test.cc) that offers rings of its own making.
//
//   * a malformed offer (no or too few descriptors, channel 0, a capacity
//     that is not a power of two or too large, a bad topic name, a region
//     that other processes could write (no F_SEAL_FUTURE_WRITE), of the
//     wrong size or not a broadcast ring, a cursor page of the wrong size,
//     a doorbell that is not a socket, more rings than one link may have):
//     the node fails the link ("peer broke the shared ring protocol") and
//     goes on running;
//   * an honest ring: its publications reach the node's subscription;
//   * a ring whose contents turn to garbage: the node drops that ring
//     (logged), delivers nothing of it, and keeps the link;
//   * a SharedRingEnd for a ring it never offered: ignored.
//
// Everything is real (memfds, the doorbell socket pairs, the link socket,
// gRPC discovery); the peer runs in the test process.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mesh/dataplane/shared_rings.h"
#include "mesh/links/link.h"
#include "mesh/node.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/broadcast.h"
#include "tests/raw_peer.h"
#include "tests/stderr_capture.h"

namespace {

constexpr char kEvil[] = "0evil";  // sorts first: it dials
constexpr uint64_t kEvilId = 0x0e0e0e0e0e0e0e0eULL;
constexpr uint64_t kRingBytes = 1 << 16;
constexpr size_t kCapacity = 4096;

using shmesh::testing::StderrCapture;

// A broadcast ring of the peer's with one consumer (for the node).
struct EvilRing {
  std::unique_ptr<ringbuf::BroadcastProducer> producer;
  ringbuf::BroadcastProducer::NewConsumer consumer;
};

EvilRing MakeRing() {
  absl::StatusOr<ringbuf::BroadcastProducer> p =
      ringbuf::BroadcastProducer::Create("evil-ring", ringbuf::BroadcastOptions{kCapacity, 4, 0});
  EXPECT_TRUE(p.ok()) << p.status();
  auto producer = std::make_unique<ringbuf::BroadcastProducer>(std::move(*p));
  absl::StatusOr<ringbuf::BroadcastProducer::NewConsumer> c = producer->AddConsumer(0);
  EXPECT_TRUE(c.ok()) << c.status();
  return EvilRing{std::move(producer), std::move(*c)};
}

mesh::v1::LinkControl Offer(uint32_t channel, const std::string& topic, uint64_t capacity, uint64_t start = 0) {
  mesh::v1::LinkControl msg;
  mesh::v1::LinkControl::SharedRing* r = msg.mutable_shared_ring();
  r->set_channel(channel);
  r->set_topic(topic);
  r->set_capacity(capacity);
  r->set_start(start);
  return msg;
}

class HostileSharedRingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mhs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    link_.reset();
    sub_.reset();
    if (node_ != nullptr) node_->Stop();
    node_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Node "a" (in run directory `sub`), subscribed to evil/**, and the
  // hostile peer's link to it.
  void StartNodeAndPeer(const std::string& sub) {
    link_.reset();
    sub_.reset();
    if (node_ != nullptr) node_->Stop();
    node_.reset();
    downs_.Clear();
    {
      absl::MutexLock lock(&mu_);
      got_.clear();
    }
    const std::string dir = dir_ + "/" + sub;
    std::filesystem::create_directories(dir);
    mesh::v1::NodeConfig c;
    c.set_name("a");
    c.set_run_dir(dir);
    c.set_ring_capacity_bytes(kRingBytes);
    c.set_log_level(mesh::v1::INFO);
    auto a = mesh::Node::Create(c);
    ASSERT_TRUE(a.ok()) << a.status();
    node_ = std::move(*a);
    ASSERT_TRUE(node_->SetPeerDownHandler(downs_.Handler()).ok());
    auto s = node_->Subscribe("evil/**", [this](const mesh::MessageView& m) {
      absl::MutexLock lock(&mu_);
      got_.push_back(absl::StrCat(m.topic, " ", m.payload));
    });
    ASSERT_TRUE(s.ok()) << s.status();
    sub_ = std::move(*s);
    ASSERT_TRUE(node_->Start().ok());
    absl::StatusOr<std::shared_ptr<mesh::Link>> link =
        shmesh::testing::DialAsRawPeer(node_.get(), dir, kEvil, kEvilId, kRingBytes);
    ASSERT_TRUE(link.ok()) << link.status();
    link_ = std::move(*link);
    for (absl::Time end = absl::Now() + absl::Seconds(10); node_->Peers().empty() && absl::Now() < end;) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_EQ(node_->Peers(), std::vector<std::string>{kEvil});
  }

  void ExpectLinkFails(const std::string& what) { downs_.ExpectLinkFails(node_.get(), kEvil, what); }

  bool WaitForGot(size_t n) {
    for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end; absl::SleepFor(absl::Milliseconds(2))) {
      absl::MutexLock lock(&mu_);
      if (got_.size() >= n) return true;
    }
    return false;
  }
  std::vector<std::string> Got() {
    absl::MutexLock lock(&mu_);
    return got_;
  }

  std::string dir_;
  std::unique_ptr<mesh::Node> node_;
  std::unique_ptr<mesh::Subscription> sub_;
  std::shared_ptr<mesh::Link> link_;
  absl::Mutex mu_;
  shmesh::testing::PeerDowns downs_;
  std::vector<std::string> got_ ABSL_GUARDED_BY(mu_);
};

TEST_F(HostileSharedRingTest, MalformedOffersFailTheLink) {
  struct Case {
    std::string name;
    std::function<void(mesh::Link&)> offer;
  };
  auto send = [](mesh::Link& link, const mesh::v1::LinkControl& msg, std::vector<int> fds) {
    EXPECT_TRUE(link.SendControl(msg, fds).ok());
  };
  auto ring_fds = [](const EvilRing& r) {
    return std::vector<int>{r.producer->region_fd(), r.consumer.cursor_fd.get(), r.consumer.doorbell_fd.get()};
  };
  const std::vector<Case> cases = {
      {"no descriptors", [&](mesh::Link& l) { send(l, Offer(1, "evil/a", kCapacity), {}); }},
      {"two descriptors",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         send(l, Offer(1, "evil/a", kCapacity), {r.producer->region_fd(), r.consumer.cursor_fd.get()});
       }},
      {"channel 0",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         send(l, Offer(0, "evil/a", kCapacity), ring_fds(r));
       }},
      {"capacity not a power of two",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         send(l, Offer(1, "evil/a", kCapacity + 8), ring_fds(r));
       }},
      {"capacity over the limit",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         send(l, Offer(1, "evil/a", uint64_t{1} << 31), ring_fds(r));
       }},
      {"capacity other than the region's",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         send(l, Offer(1, "evil/a", kCapacity * 2), ring_fds(r));
       }},
      {"a bad topic name",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         send(l, Offer(1, "evil//a", kCapacity), ring_fds(r));
       }},
      {"a region others could write",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         absl::StatusOr<ringbuf::SharedRegion> plain =
             ringbuf::SharedRegion::Create("plain", ringbuf::kBroadcastHeaderSize + kCapacity);
         ASSERT_TRUE(plain.ok());
         send(l, Offer(1, "evil/a", kCapacity),
              {plain->fd(), r.consumer.cursor_fd.get(), r.consumer.doorbell_fd.get()});
       }},
      {"a region that is not a broadcast ring",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         absl::StatusOr<ringbuf::SharedRegion> zeros =
             ringbuf::SharedRegion::CreateWriterOnly("zeros", ringbuf::kBroadcastHeaderSize + kCapacity);
         ASSERT_TRUE(zeros.ok());
         send(l, Offer(1, "evil/a", kCapacity),
              {zeros->fd(), r.consumer.cursor_fd.get(), r.consumer.doorbell_fd.get()});
       }},
      {"a cursor page of the wrong size",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         absl::StatusOr<ringbuf::SharedRegion> page = ringbuf::SharedRegion::Create("page", 8192);
         ASSERT_TRUE(page.ok());
         send(l, Offer(1, "evil/a", kCapacity), {r.producer->region_fd(), page->fd(), r.consumer.doorbell_fd.get()});
       }},
      {"a doorbell that is a pipe",
       [&](mesh::Link& l) {
         EvilRing r = MakeRing();
         int p[2];
         ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
         send(l, Offer(1, "evil/a", kCapacity), {r.producer->region_fd(), r.consumer.cursor_fd.get(), p[0]});
         ::close(p[0]);
         ::close(p[1]);
       }},
      {"more rings than a link may have",
       [&](mesh::Link& l) {
         // Kept open: a ring whose producer is gone is dropped once read.
         static std::vector<EvilRing> rings;
         rings.clear();
         for (uint32_t ch = 1; ch <= mesh::kMaxSharedRingsPerLink + 1; ++ch) {
           rings.push_back(MakeRing());
           send(l, Offer(ch, "evil/a", kCapacity), ring_fds(rings.back()));
         }
       }},
  };
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_NO_FATAL_FAILURE(StartNodeAndPeer(absl::StrCat("run", i++)));
    auto capture = std::make_unique<StderrCapture>(absl::StrCat(dir_, "/stderr", i));
    c.offer(*link_);
    ExpectLinkFails(c.name);
    std::string log = capture->Text();
    for (absl::Time end = absl::Now() + absl::Seconds(5);
         log.find("peer broke the shared ring protocol") == std::string::npos && absl::Now() < end;
         log = capture->Text()) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    EXPECT_NE(log.find("peer broke the shared ring protocol"), std::string::npos) << log;
  }
}

TEST_F(HostileSharedRingTest, AnHonestRingIsReadAndAGarbledOneIsDroppedWithoutTheLink) {
  ASSERT_NO_FATAL_FAILURE(StartNodeAndPeer("run"));
  // An unknown end is ignored.
  mesh::v1::LinkControl end;
  end.mutable_shared_ring_end()->set_channel(77);
  ASSERT_TRUE(link_->SendControl(end).ok());
  // An honest ring.
  EvilRing honest = MakeRing();
  ASSERT_TRUE(link_
                  ->SendControl(Offer(1, "evil/a", kCapacity),
                                {honest.producer->region_fd(), honest.consumer.cursor_fd.get(),
                                 honest.consumer.doorbell_fd.get()})
                  .ok());
  ASSERT_TRUE(honest.producer->Write("", "one", absl::Now() + absl::Seconds(5), nullptr).ok());
  ASSERT_TRUE(WaitForGot(1));
  EXPECT_EQ(Got(), std::vector<std::string>{"evil/a one"});
  // A ring made by hand whose tail says more than it holds.
  absl::StatusOr<ringbuf::SharedRegion> evil =
      ringbuf::SharedRegion::CreateWriterOnly("garbled", ringbuf::kBroadcastHeaderSize + kCapacity);
  ASSERT_TRUE(evil.ok());
  auto* h = new (evil->data()) ringbuf::BroadcastHeader;
  h->magic = ringbuf::kBroadcastMagic;
  h->version = ringbuf::kBroadcastVersion;
  h->header_size = ringbuf::kBroadcastHeaderSize;
  h->capacity = kCapacity;
  absl::StatusOr<ringbuf::SharedRegion> page = ringbuf::SharedRegion::Create("page", ringbuf::kBroadcastCursorBytes);
  ASSERT_TRUE(page.ok());
  int bell[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, bell), 0);
  auto capture = std::make_unique<StderrCapture>(dir_ + "/stderr");
  ASSERT_TRUE(link_->SendControl(Offer(2, "evil/b", kCapacity), {evil->fd(), page->fd(), bell[1]}).ok());
  absl::SleepFor(absl::Milliseconds(20));
  h->tail.store(kCapacity * 4);
  char byte = 1;
  ASSERT_EQ(::send(bell[0], &byte, 1, MSG_DONTWAIT), 1);
  std::string log = capture->Text();
  for (absl::Time until = absl::Now() + absl::Seconds(5);
       log.find("dropped the shared ring of topic evil/b") == std::string::npos && absl::Now() < until;
       log = capture->Text()) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  EXPECT_NE(log.find("dropped the shared ring of topic evil/b"), std::string::npos) << log;
  // The link and the honest ring go on.
  EXPECT_EQ(node_->Peers(), std::vector<std::string>{kEvil});
  ASSERT_TRUE(honest.producer->Write("", "two", absl::Now() + absl::Seconds(5), nullptr).ok());
  ASSERT_TRUE(WaitForGot(2));
  EXPECT_EQ(Got(), (std::vector<std::string>{"evil/a one", "evil/a two"}));
  ::close(bell[0]);
  ::close(bell[1]);
}

}  // namespace
