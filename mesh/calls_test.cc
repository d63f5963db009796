// Node::Call's fast path through real nodes in one process (real rings,
// sockets and gRPC): a spinning caller takes its response from the ring
// itself (the link's consumer role, Transport::BorrowConsumer) and hands
// everything else to the receive thread. These tests put other traffic on
// the same link while calls are in flight, responses that come after the
// caller stopped spinning, and the SLEEP policy (no spin at all), and check
// that nothing is lost, reordered or left waiting.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "mesh/node.h"
#include "mesh/test_util.h"
#include "testing/temp_dir.h"

namespace mesh {
namespace {

// Sequence numbers of what a handler got, per kind.
struct Seen {
  absl::Mutex mu;
  std::vector<int> messages ABSL_GUARDED_BY(mu);
  std::vector<int> publications ABSL_GUARDED_BY(mu);
  void Add(std::vector<int>* to, absl::string_view payload) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int seq = -1;
    EXPECT_TRUE(absl::SimpleAtoi(payload, &seq)) << payload;
    to->push_back(seq);
  }
  bool WaitFor(size_t messages_wanted, size_t publications_wanted, absl::Duration d) {
    absl::MutexLock lock(&mu);
    auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
      return messages.size() >= messages_wanted && publications.size() >= publications_wanted;
    };
    return mu.AwaitWithTimeout(absl::Condition(&enough), d);
  }
};

// 0, 1, ..., n-1 exactly.
void ExpectSequence(const std::vector<int>& got, int n, const char* what) {
  ASSERT_EQ(got.size(), static_cast<size_t>(n)) << what;
  for (int i = 0; i < n; ++i) {
    if (got[i] != i) {
      ADD_FAILURE() << what << ": position " << i << " holds " << got[i];
      return;
    }
  }
}

class CallsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  void TearDown() override {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)->Stop();
  }
  // A started pair: "client" seeded through "server", linked, and the
  // client knows the server serves `service` (served by `serve`).
  void Pair(mesh::v1::WaitPolicy::Mode mode, const std::function<void(Node*)>& serve, const std::string& service,
            const std::function<void(const MessageView&)>& on_message = nullptr) {
    for (const char* name : {"server", "client"}) {
      mesh::v1::NodeConfig config = testing_util::TestConfig(
          dir_.path(), name, std::string(name) == "server" ? std::vector<std::string>{} : std::vector<std::string>{"server"});
      config.mutable_wait()->set_mode(mode);
      auto node = Node::Create(config);
      ASSERT_TRUE(node.ok()) << node.status();
      nodes_.push_back(std::move(*node));
    }
    server_ = nodes_[0].get();
    client_ = nodes_[1].get();
    serve(server_);
    if (on_message) {
      ASSERT_TRUE(client_->SetMessageHandler(on_message).ok());
    }
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(client_->Start().ok());
    ASSERT_TRUE(client_->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
    for (absl::Time end = absl::Now() + absl::Seconds(5); client_->Servers(service).empty() && absl::Now() < end;) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_FALSE(client_->Servers(service).empty());
  }

  shmesh::testing::ShortTempDir dir_{"mcl-"};
  std::vector<std::unique_ptr<Node>> nodes_;
  Node* server_ = nullptr;
  Node* client_ = nullptr;
};

// The server sends plain messages and publications to the client on the
// same link while the client calls it from two threads: the frames that
// are not responses go to the receive thread (the caller leaves them), in
// order, none lost; every call gets its own response.
TEST_F(CallsTest, MessagesAndPublicationsOnTheLinkOfCallsInFlight) {
  constexpr int kCalls = 2000, kMessages = 2000;
  Seen seen;
  std::unique_ptr<ServiceRegistration> echo;
  std::unique_ptr<Subscription> sub;
  Pair(
      mesh::v1::WaitPolicy::ADAPTIVE,
      [&](Node* server) {
        auto served = server->Serve("echo", [](const RequestView& r) -> absl::StatusOr<std::string> {
          return absl::StrCat("re:", r.payload);
        });
        ASSERT_TRUE(served.ok()) << served.status();
        echo = std::move(*served);
      },
      "echo",
      [&](const MessageView& m) {
        absl::MutexLock lock(&seen.mu);
        seen.Add(&seen.messages, m.payload);
      });
  auto subscribed = client_->Subscribe("news", [&](const MessageView& m) {
    absl::MutexLock lock(&seen.mu);
    seen.Add(&seen.publications, m.payload);
  });
  ASSERT_TRUE(subscribed.ok()) << subscribed.status();
  sub = std::move(*subscribed);
  auto publisher = server_->Advertise("news");
  ASSERT_TRUE(publisher.ok()) << publisher.status();
  ASSERT_TRUE((*publisher)->WaitForSubscribers(1, absl::Now() + absl::Seconds(5)).ok());

  std::atomic<int> good{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 2; ++t) {
    callers.emplace_back([&, t] {
      for (int i = 0; i < kCalls / 2; ++i) {
        const std::string request = absl::StrCat(t, ".", i);
        auto got = client_->Call("echo", request, absl::Now() + absl::Seconds(10));
        if (got.ok() && *got == "re:" + request) {
          good.fetch_add(1);
        } else {
          ADD_FAILURE() << request << ": " << (got.ok() ? *got : got.status().ToString());
        }
      }
    });
  }
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(server_->Send("client", absl::StrCat(i), absl::Now() + absl::Seconds(10)).ok());
    auto published = (*publisher)->Publish(absl::StrCat(i), absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(published.ok()) << published.status();
    if (i % 100 == 0) absl::SleepFor(absl::Microseconds(300));  // let the client's receive thread fall asleep
  }
  for (auto& t : callers) t.join();
  EXPECT_EQ(good.load(), kCalls);
  ASSERT_TRUE(seen.WaitFor(kMessages, kMessages, absl::Seconds(10)));
  absl::MutexLock lock(&seen.mu);
  ExpectSequence(seen.messages, kMessages, "messages");
  ExpectSequence(seen.publications, kMessages, "publications");
}

// A response that comes after the caller stopped spinning reaches it
// through the receive thread; and after a streak of calls, a message to
// the client (whose receive thread went to sleep while a caller had the
// ring) still wakes it: nothing is left waiting in the ring.
TEST_F(CallsTest, SlowResponsesAndFramesAfterACallStreakAreDelivered) {
  Seen seen;
  std::unique_ptr<ServiceRegistration> svc;
  Pair(
      mesh::v1::WaitPolicy::ADAPTIVE,
      [&](Node* server) {
        auto served = server->Serve("maybe_slow", [](const RequestView& r) -> absl::StatusOr<std::string> {
          if (r.payload == "slow") absl::SleepFor(absl::Milliseconds(5));  // far past the caller's spin
          return std::string(r.payload);
        });
        ASSERT_TRUE(served.ok()) << served.status();
        svc = std::move(*served);
      },
      "maybe_slow",
      [&](const MessageView& m) {
        absl::MutexLock lock(&seen.mu);
        seen.Add(&seen.messages, m.payload);
      });
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 50; ++i) {
      auto got = client_->Call("maybe_slow", "fast", absl::Now() + absl::Seconds(10));
      ASSERT_TRUE(got.ok() && *got == "fast") << got.status();
    }
    auto slow = client_->Call("maybe_slow", "slow", absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(slow.ok() && *slow == "slow") << slow.status();
    // The client's receive thread sleeps by now (nothing but responses for
    // it for longer than its spin); a message must wake it.
    absl::SleepFor(absl::Milliseconds(1));
    ASSERT_TRUE(server_->Send("client", absl::StrCat(round), absl::Now() + absl::Seconds(10)).ok());
    ASSERT_TRUE(seen.WaitFor(round + 1, 0, absl::Seconds(5))) << "message " << round << " was left in the ring";
  }
  absl::MutexLock lock(&seen.mu);
  ExpectSequence(seen.messages, 20, "messages");
}

// SLEEP: callers never spin (nor take the ring); the receive thread
// completes every call.
TEST_F(CallsTest, SleepPolicyCallsComplete) {
  std::unique_ptr<ServiceRegistration> echo;
  Pair(
      mesh::v1::WaitPolicy::SLEEP,
      [&](Node* server) {
        auto served = server->Serve("echo", [](const RequestView& r) -> absl::StatusOr<std::string> {
          return std::string(r.payload);
        });
        ASSERT_TRUE(served.ok()) << served.status();
        echo = std::move(*served);
      },
      "echo");
  for (int i = 0; i < 200; ++i) {
    auto got = client_->Call("echo", absl::StrCat(i), absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(got.ok() && *got == absl::StrCat(i)) << got.status();
  }
}

}  // namespace
}  // namespace mesh
