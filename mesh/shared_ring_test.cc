// PublisherOptions::shared_ring through real nodes (real rings, memfds,
// sockets and gRPC in one process): one write per publication for every
// subscriber, in order, history for a late subscriber, eviction of a
// subscriber that holds the ring past the deadline while the others go on,
// unsubscribing, a subscriber node stopping, a publisher going away, and
// what a shared ring refuses.
#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mesh/node.h"
#include "mesh/test_util.h"
#include "testing/temp_dir.h"

namespace mesh {
namespace {

using ::testing::HasSubstr;

// The sequence numbers a handler got, in order.
struct Seen {
  absl::Mutex mu;
  std::vector<int> got ABSL_GUARDED_BY(mu);
  std::function<void(const MessageView&)> Handler() {
    return [this](const MessageView& m) {
      int seq = -1;
      EXPECT_TRUE(absl::SimpleAtoi(m.payload, &seq)) << m.payload;
      absl::MutexLock lock(&mu);
      got.push_back(seq);
    };
  }
  bool WaitFor(size_t n, absl::Duration d = absl::Seconds(10)) {
    absl::MutexLock lock(&mu);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return got.size() >= n; };
    return mu.AwaitWithTimeout(absl::Condition(&enough), d);
  }
  std::vector<int> Get() {
    absl::MutexLock lock(&mu);
    return got;
  }
};

std::vector<int> Range(int from, int to) {
  std::vector<int> v;
  for (int i = from; i < to; ++i) v.push_back(i);
  return v;
}

PublisherOptions Shared(size_t history = 0) {
  PublisherOptions o;
  o.shared_ring = true;
  o.history = history;
  return o;
}

class SharedRingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)->Stop();
  }
  // n nodes; `max_message_bytes` 0: TestConfig's.
  std::vector<Node*> Mesh(int n, uint64_t max_message_bytes = 0) {
    std::vector<Node*> out;
    for (int i = 0; i < n; ++i) {
      mesh::v1::NodeConfig c = testing_util::TestConfig(
          dir_.path(), absl::StrCat("n", i), i == 0 ? std::vector<std::string>{} : std::vector<std::string>{"n0"});
      if (max_message_bytes != 0) c.set_max_message_bytes(max_message_bytes);
      auto node = Node::Create(c);
      EXPECT_TRUE(node.ok()) << node.status();
      if (!node.ok()) std::abort();
      nodes_.push_back(std::move(*node));
      out.push_back(nodes_.back().get());
    }
    for (Node* x : out) EXPECT_TRUE(x->Start().ok());
    for (Node* x : out) EXPECT_TRUE(x->WaitForPeers(n - 1, absl::Now() + absl::Seconds(10)).ok());
    return out;
  }
  // Messages n0 sent n<i> through the link's own ring.
  uint64_t LinkMessages(Node* any, const std::string& to) {
    auto topo = any->Topology();
    EXPECT_TRUE(topo.ok());
    for (const auto& l : topo->links()) {
      if (l.a() == "n0" && l.b() == to) return l.messages_a_to_b();
      if (l.b() == "n0" && l.a() == to) return l.messages_b_to_a();
    }
    return ~uint64_t{0};
  }

  shmesh::testing::ShortTempDir dir_{"srt-"};
  std::vector<std::unique_ptr<Node>> nodes_;
};

TEST_F(SharedRingTest, EveryMatchingSubscriberGetsEveryMessageInOrder) {
  std::vector<Node*> n = Mesh(4);
  Seen exact, star, none;
  auto s1 = n[1]->Subscribe("cam/front", exact.Handler());
  auto s2 = n[2]->Subscribe("cam/*", star.Handler());
  auto s3 = n[3]->Subscribe("lidar/**", none.Handler());
  ASSERT_TRUE(s1.ok() && s2.ok() && s3.ok());
  auto pub = n[0]->Advertise("cam/front", Shared());
  ASSERT_TRUE(pub.ok()) << pub.status();
  ASSERT_TRUE((*pub)->WaitForSubscribers(2, absl::Now() + absl::Seconds(5)).ok());
  const uint64_t link_before = LinkMessages(n[0], "n1");
  constexpr int kMessages = 3000;
  for (int i = 0; i < kMessages; ++i) {
    auto r = (*pub)->Publish(absl::StrCat(i), absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->delivered, 2u) << i;
    ASSERT_TRUE(r->not_reached.empty());
  }
  ASSERT_TRUE(exact.WaitFor(kMessages));
  ASSERT_TRUE(star.WaitFor(kMessages));
  EXPECT_EQ(exact.Get(), Range(0, kMessages));
  EXPECT_EQ(star.Get(), Range(0, kMessages));
  EXPECT_TRUE(none.Get().empty());
  // Not one of them went through n1's own ring.
  EXPECT_EQ(LinkMessages(n[0], "n1"), link_before);
  // The topology counts them as received.
  auto topo = n[3]->Topology();
  ASSERT_TRUE(topo.ok());
  for (const auto& t : topo->topics()) {
    if (t.node() != "n1") continue;
    ASSERT_EQ(t.received_size(), 1);
    EXPECT_EQ(t.received(0).messages(), static_cast<uint64_t>(kMessages));
  }
}

TEST_F(SharedRingTest, ALateSubscriberGetsTheHistoryThenTheLiveStream) {
  std::vector<Node*> n = Mesh(2);
  auto pub = n[0]->Advertise("t/h", Shared(/*history=*/5));
  ASSERT_TRUE(pub.ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*pub)->Publish(absl::StrCat(i)).ok());
  Seen late;
  auto sub = n[1]->Subscribe("t/h", late.Handler());
  ASSERT_TRUE(sub.ok());
  ASSERT_TRUE((*pub)->WaitForSubscribers(1, absl::Now() + absl::Seconds(5)).ok());
  // The history comes with the offer, before any new publication.
  ASSERT_TRUE(late.WaitFor(5));
  for (int i = 10; i < 20; ++i) ASSERT_TRUE((*pub)->Publish(absl::StrCat(i)).ok());
  ASSERT_TRUE(late.WaitFor(15));
  EXPECT_EQ(late.Get(), Range(5, 20));
}

TEST_F(SharedRingTest, ASubscriberThatHoldsTheRingIsEvictedAtTheDeadlineAndTheOthersGoOn) {
  std::vector<Node*> n = Mesh(3);
  SubscribeOptions one;
  one.queue_depth = 1;
  auto stuck = n[1]->Subscribe("t/e", one);  // pull form, never read until later
  ASSERT_TRUE(stuck.ok());
  Seen live;
  auto s2 = n[2]->Subscribe("t/e", live.Handler());
  ASSERT_TRUE(s2.ok());
  auto pub = n[0]->Advertise("t/e", Shared());
  ASSERT_TRUE(pub.ok());
  ASSERT_TRUE((*pub)->WaitForSubscribers(2, absl::Now() + absl::Seconds(5)).ok());
  constexpr int kMessages = 5000;
  int evictions = 0;
  for (int i = 0; i < kMessages; ++i) {
    const absl::Time start = absl::Now();
    auto r = (*pub)->Publish(absl::StrCat(i), start + absl::Milliseconds(30));
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->delivered + r->not_reached.size(), 2u);
    for (const auto& [name, why] : r->not_reached) {
      EXPECT_EQ(name, "n1");
      if (absl::IsDeadlineExceeded(why)) {
        ++evictions;
        EXPECT_THAT(why.message(), HasSubstr("evicted"));
        EXPECT_LT(absl::Now() - start, absl::Seconds(5));
      }
    }
  }
  EXPECT_GE(evictions, 1);
  // n2 got every message, in order.
  ASSERT_TRUE(live.WaitFor(kMessages));
  EXPECT_EQ(live.Get(), Range(0, kMessages));
  // n1 reads now: what it gets is in order, without duplicates, and its
  // first message is the first published.
  std::vector<int> got;
  for (;;) {
    auto m = (*stuck)->Receive(absl::Now() + absl::Milliseconds(300));
    if (!m.ok()) break;
    int seq = -1;
    ASSERT_TRUE(absl::SimpleAtoi(m->data(), &seq));
    got.push_back(seq);
  }
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.front(), 0);
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end());
  EXPECT_LT(got.size(), static_cast<size_t>(kMessages));
  // Offered the ring again, it gets the next publications.
  const int next = kMessages;
  for (int i = next; i < next + 3; ++i) {
    auto r = (*pub)->Publish(absl::StrCat(i), absl::Now() + absl::Seconds(5));
    ASSERT_TRUE(r.ok());
  }
  for (int i = 0; i < 50; ++i) {
    auto m = (*stuck)->Receive(absl::Now() + absl::Milliseconds(200));
    if (!m.ok()) break;
    int seq = -1;
    ASSERT_TRUE(absl::SimpleAtoi(m->data(), &seq));
    EXPECT_GT(seq, got.back());
    got.push_back(seq);
  }
  EXPECT_EQ(got.back(), next + 2);
}

TEST_F(SharedRingTest, UnsubscribingEndsTheRingForThatSubscriberOnly) {
  std::vector<Node*> n = Mesh(3);
  Seen a, b;
  auto sa = n[1]->Subscribe("t/u", a.Handler());
  auto sb = n[2]->Subscribe("t/u", b.Handler());
  ASSERT_TRUE(sa.ok() && sb.ok());
  auto pub = n[0]->Advertise("t/u", Shared());
  ASSERT_TRUE(pub.ok());
  ASSERT_TRUE((*pub)->WaitForSubscribers(2, absl::Now() + absl::Seconds(5)).ok());
  for (int i = 0; i < 100; ++i) ASSERT_TRUE((*pub)->Publish(absl::StrCat(i)).ok());
  ASSERT_TRUE(a.WaitFor(100));
  sa->reset();
  // The publisher learns it within a control round trip.
  const absl::Time until = absl::Now() + absl::Seconds(5);
  while ((*pub)->matched() != 1 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ((*pub)->matched(), 1u);
  for (int i = 100; i < 200; ++i) {
    auto r = (*pub)->Publish(absl::StrCat(i));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->delivered, 1u);
  }
  ASSERT_TRUE(b.WaitFor(200));
  EXPECT_EQ(b.Get(), Range(0, 200));
  EXPECT_EQ(a.Get(), Range(0, 100));
}

TEST_F(SharedRingTest, AStoppedSubscriberNodeDoesNotHoldThePublisher) {
  std::vector<Node*> n = Mesh(3);
  SubscribeOptions one;
  one.queue_depth = 1;
  auto stuck = n[1]->Subscribe("t/s", one);  // holds the ring once it fills
  Seen live;
  auto s2 = n[2]->Subscribe("t/s", live.Handler());
  ASSERT_TRUE(stuck.ok() && s2.ok());
  auto pub = n[0]->Advertise("t/s", Shared());
  ASSERT_TRUE(pub.ok());
  ASSERT_TRUE((*pub)->WaitForSubscribers(2, absl::Now() + absl::Seconds(5)).ok());
  // Its node stops while the publisher waits for it (no deadline): the
  // link goes down, and the publisher gives up on it.
  std::thread stopper([&] {
    absl::SleepFor(absl::Milliseconds(200));
    n[1]->Stop();
  });
  const absl::Time start = absl::Now();
  for (int i = 0; i < 3000; ++i) {
    auto r = (*pub)->Publish(absl::StrCat(i));  // InfiniteFuture
    ASSERT_TRUE(r.ok()) << r.status();
  }
  stopper.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  ASSERT_TRUE(live.WaitFor(3000));
  EXPECT_EQ(live.Get(), Range(0, 3000));
}

TEST_F(SharedRingTest, APublisherGoingAwayEndsItsRingAndANewOneIsOffered) {
  std::vector<Node*> n = Mesh(2);
  Seen seen;
  auto sub = n[1]->Subscribe("t/p", seen.Handler());
  ASSERT_TRUE(sub.ok());
  {
    auto pub = n[0]->Advertise("t/p", Shared());
    ASSERT_TRUE(pub.ok());
    ASSERT_TRUE((*pub)->WaitForSubscribers(1, absl::Now() + absl::Seconds(5)).ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*pub)->Publish(absl::StrCat(i)).ok());
    ASSERT_TRUE(seen.WaitFor(10));
  }
  auto again = n[0]->Advertise("t/p", Shared());
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE((*again)->WaitForSubscribers(1, absl::Now() + absl::Seconds(5)).ok());
  for (int i = 10; i < 20; ++i) ASSERT_TRUE((*again)->Publish(absl::StrCat(i)).ok());
  ASSERT_TRUE(seen.WaitFor(20));
  EXPECT_EQ(seen.Get(), Range(0, 20));
}

TEST_F(SharedRingTest, WhatASharedRingRefuses) {
  std::vector<Node*> n = Mesh(2, /*max_message_bytes=*/1 << 20);
  Seen seen;
  auto sub = n[1]->Subscribe("t/r", seen.Handler());
  ASSERT_TRUE(sub.ok());
  auto pub = n[0]->Advertise("t/r", Shared());
  ASSERT_TRUE(pub.ok());
  ASSERT_TRUE((*pub)->WaitForSubscribers(1, absl::Now() + absl::Seconds(5)).ok());
  const size_t ring = testing_util::TestConfig(dir_.path(), "x", {}).ring_capacity_bytes();
  auto big = (*pub)->Publish(std::string(ring / 2, 'x'));
  EXPECT_TRUE(absl::IsInvalidArgument(big.status())) << big.status();
  EXPECT_THAT(big.status().message(), HasSubstr("shared ring"));
  auto loan = (*pub)->Loan(100);
  EXPECT_TRUE(absl::IsInvalidArgument(loan.status())) << loan.status();
  // Nothing was sent; the next message is the first.
  ASSERT_TRUE((*pub)->Publish("0").ok());
  ASSERT_TRUE(seen.WaitFor(1));
  EXPECT_EQ(seen.Get(), Range(0, 1));
}

}  // namespace
}  // namespace mesh
