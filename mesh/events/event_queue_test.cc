#include "mesh/events/event_queue.h"

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace mesh {
namespace events {
namespace {

absl::Time Soon() { return absl::Now() + absl::Seconds(10); }

TEST(EventQueueTest, RunsInPostingOrderPerThread) {
  EventQueue q("evq-fifo");
  ASSERT_TRUE(q.Start().ok());
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  // Written only by the queue's thread; read after Flush (which synchronizes
  // through the queue's mutex).
  std::vector<std::pair<int, int>> ran;
  std::vector<std::thread> posters;
  for (int t = 0; t < kThreads; ++t) {
    posters.emplace_back([&q, &ran, t] {
      for (int i = 0; i < kPerThread; ++i) {
        EXPECT_TRUE(q.Post([&ran, t, i] { ran.emplace_back(t, i); }));
      }
    });
  }
  for (auto& p : posters) p.join();
  ASSERT_TRUE(q.Flush(Soon()).ok());
  ASSERT_EQ(ran.size(), size_t{kThreads * kPerThread});
  std::vector<int> next(kThreads, 0);
  for (const auto& [t, i] : ran) {
    EXPECT_EQ(i, next[t]) << "thread " << t;
    next[t] = i + 1;
  }
  const EventQueueStats s = q.stats();
  EXPECT_EQ(s.posted, uint64_t{kThreads * kPerThread});
  EXPECT_EQ(s.done, s.posted);
  EXPECT_EQ(s.pending, 0u);
  EXPECT_GE(s.high_water, 1u);
}

TEST(EventQueueTest, BlockedClosureDoesNotBlockPost) {
  EventQueue q("evq-block");
  ASSERT_TRUE(q.Start().ok());
  absl::Notification release, entered;
  ASSERT_TRUE(q.Post([&] {
    entered.Notify();
    release.WaitForNotification();
  }));
  ASSERT_TRUE(entered.WaitForNotificationWithTimeout(absl::Seconds(10)));
  std::atomic<int> ran{0};
  const absl::Time start = absl::Now();
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(q.Post([&ran] { ran.fetch_add(1); }));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(ran.load(), 0);
  EXPECT_EQ(q.stats().pending, 101u);
  EXPECT_GE(q.stats().high_water, 101u);
  // Flush cannot finish while the first closure blocks.
  EXPECT_EQ(q.Flush(absl::Now() + absl::Milliseconds(50)).code(), absl::StatusCode::kDeadlineExceeded);
  release.Notify();
  ASSERT_TRUE(q.Flush(Soon()).ok());
  EXPECT_EQ(ran.load(), 100);
}

TEST(EventQueueTest, ClosureMayPostAnother) {
  EventQueue q("evq-chain");
  ASSERT_TRUE(q.Start().ok());
  std::vector<std::string> order;  // queue thread only until WaitIdle
  ASSERT_TRUE(q.Post([&] {
    order.push_back("a");
    EXPECT_TRUE(q.Post([&] {
      order.push_back("c");
      EXPECT_TRUE(q.Post([&] { order.push_back("d"); }));
    }));
  }));
  ASSERT_TRUE(q.Post([&] { order.push_back("b"); }));
  // WaitIdle (unlike Flush) also waits for what the closures post.
  ASSERT_TRUE(q.WaitIdle(Soon()).ok());
  EXPECT_EQ(order, (std::vector<std::string>{"a", "b", "c", "d"}));
}

TEST(EventQueueTest, NoLockHeldWhileAClosureRuns) {
  // A closure of `a` waits for a closure on another thread (queue `b`) that
  // uses `a`: that can only finish if `a` holds no lock while running.
  EventQueue a("evq-a"), b("evq-b");
  ASSERT_TRUE(a.Start().ok());
  ASSERT_TRUE(b.Start().ok());
  absl::Notification b_done, follow_up_ran;
  bool waited = false;
  ASSERT_TRUE(a.Post([&] {
    EXPECT_TRUE(b.Post([&] {
      EXPECT_TRUE(a.Post([&] { follow_up_ran.Notify(); }));
      EXPECT_EQ(a.stats().pending, 2u);  // this closure's poster + the follow-up
      EXPECT_FALSE(a.InQueueThread());
      EXPECT_TRUE(b.InQueueThread());
      b_done.Notify();
    }));
    waited = b_done.WaitForNotificationWithTimeout(absl::Seconds(10));
    EXPECT_TRUE(a.InQueueThread());
  }));
  ASSERT_TRUE(a.Flush(Soon()).ok());
  EXPECT_TRUE(waited);
  EXPECT_TRUE(follow_up_ran.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(EventQueueTest, StopRunsWhatWasPostedBefore) {
  EventQueue q("evq-stop");
  ASSERT_TRUE(q.Start().ok());
  int ran = 0;  // queue thread only until Stop joins it
  ASSERT_TRUE(q.Post([] { absl::SleepFor(absl::Milliseconds(50)); }));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(q.Post([&ran] { ++ran; }));
  q.Stop();
  EXPECT_EQ(ran, 10);
  EXPECT_FALSE(q.Post([&ran] { ++ran; }));
  EXPECT_EQ(q.stats().rejected, 1u);
  EXPECT_EQ(q.stats().pending, 0u);
  q.Stop();  // idempotent
  EXPECT_EQ(q.Start().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(EventQueueTest, StopFromInsideAClosureDoesNotDeadlock) {
  auto q = std::make_unique<EventQueue>("evq-self");
  ASSERT_TRUE(q->Start().ok());
  std::atomic<int> ran{0};
  absl::Notification stopped;
  bool post_after_stop = true;
  ASSERT_TRUE(q->Post([&] {
    q->Stop();  // returns at once: cannot join its own thread
    post_after_stop = q->Post([&ran] { ran.fetch_add(100); });
    stopped.Notify();
  }));
  ASSERT_TRUE(q->Post([&ran] { ran.fetch_add(1); }));  // before Stop: runs
  ASSERT_TRUE(stopped.WaitForNotificationWithTimeout(absl::Seconds(10)));
  q->Stop();  // joins the thread, which ends by itself
  EXPECT_FALSE(post_after_stop);
  EXPECT_EQ(ran.load(), 1);
  q.reset();
}

TEST(EventQueueTest, ConcurrentStops) {
  EventQueue q("evq-stops");
  ASSERT_TRUE(q.Start().ok());
  std::atomic<int> ran{0};
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(q.Post([&ran] { ran.fetch_add(1); }));
  std::vector<std::thread> stoppers;
  for (int i = 0; i < 4; ++i) stoppers.emplace_back([&q] { q.Stop(); });
  for (auto& t : stoppers) t.join();
  EXPECT_EQ(ran.load(), 100);
}

TEST(EventQueueTest, PostedBeforeStartRunsAfterStart) {
  EventQueue q("evq-early");
  std::vector<int> order;
  ASSERT_TRUE(q.Post([&order] { order.push_back(1); }));
  EXPECT_EQ(q.Flush(Soon()).code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(q.Start().ok());
  EXPECT_EQ(q.Start().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(q.Post([&order] { order.push_back(2); }));
  ASSERT_TRUE(q.Flush(Soon()).ok());
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(EventQueueTest, DestructionWithoutStartDestroysClosuresUnrun) {
  auto token = std::make_shared<int>(0);
  bool ran = false;
  {
    EventQueue q("evq-never");
    ASSERT_TRUE(q.Post([token, &ran] { ran = true; }));
    EXPECT_EQ(token.use_count(), 2);
    EXPECT_EQ(q.stats().pending, 1u);
  }
  EXPECT_FALSE(ran);
  EXPECT_EQ(token.use_count(), 1);
}

TEST(EventQueueTest, FlushAndWaitIdleFromInsideAClosureFail) {
  EventQueue q("evq-flush");
  ASSERT_TRUE(q.Start().ok());
  absl::Status flush, idle;
  ASSERT_TRUE(q.Post([&] {
    flush = q.Flush(Soon());
    idle = q.WaitIdle(Soon());
  }));
  ASSERT_TRUE(q.Flush(Soon()).ok());
  EXPECT_EQ(flush.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(idle.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(EventQueueTest, NamesItsThread) {
  EventQueue q("evq-a-long-thread-name");
  ASSERT_TRUE(q.Start().ok());
  std::string comm;
  ASSERT_TRUE(q.Post([&comm] {
    std::ifstream f("/proc/thread-self/comm");
    std::getline(f, comm);
  }));
  ASSERT_TRUE(q.Flush(Soon()).ok());
  EXPECT_EQ(comm, "evq-a-long-thre");  // 15 bytes: the kernel's limit
}

}  // namespace
}  // namespace events
}  // namespace mesh
