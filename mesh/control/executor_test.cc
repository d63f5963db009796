#include "mesh/control/executor.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace mesh {
namespace control {
namespace {

TEST(ExecutorTest, RunsTasksOnItsWorkers) {
  Executor ex({"test-exec", 2, 8});
  absl::Mutex mu;
  int ran = 0;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(ex.Schedule([&] {
                    absl::MutexLock lock(&mu);
                    ++ran;
                  }).ok());
  }
  absl::MutexLock lock(&mu);
  auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return ran == 8; };
  EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
}

TEST(ExecutorTest, FullQueueIsResourceExhaustedNamingTheLimit) {
  Executor ex({"test-exec", 1, 2});
  absl::Notification started, release;
  ASSERT_TRUE(ex.Schedule([&] {
                  started.Notify();
                  release.WaitForNotification();
                }).ok());
  started.WaitForNotification();
  ASSERT_TRUE(ex.Schedule([] {}).ok());
  ASSERT_TRUE(ex.Schedule([] {}).ok());
  absl::Status full = ex.Schedule([] {});
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(full.message().find("2 tasks already wait"), absl::string_view::npos) << full;
  // Delayed tasks are not counted.
  absl::Notification timed;
  ex.RunAt(absl::Now(), [&] { timed.Notify(); });
  release.Notify();
  EXPECT_TRUE(timed.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

TEST(ExecutorTest, RunAtWaitsAndKeepsOrder) {
  Executor ex({"test-exec", 1, 8});
  absl::Mutex mu;
  std::vector<int> order;
  const absl::Time start = absl::Now();
  absl::Time first_ran;
  ex.RunAt(start + absl::Milliseconds(200), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(2);
  });
  ex.RunAt(start + absl::Milliseconds(100), [&] {
    absl::MutexLock lock(&mu);
    first_ran = absl::Now();
    order.push_back(1);
  });
  ex.RunAt(start + absl::Milliseconds(200), [&] {
    absl::MutexLock lock(&mu);
    order.push_back(3);
  });
  absl::MutexLock lock(&mu);
  auto all = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return order.size() == 3; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(first_ran - start, absl::Milliseconds(100));
}

TEST(ExecutorTest, DestructionDropsPendingTasksAndReleasesCaptures) {
  auto token = std::make_shared<int>(0);
  std::atomic<int> ran{0};
  {
    Executor ex({"test-exec", 1, 8});
    // relaxed: a counter, read after the executor is joined.
    ex.RunAt(absl::Now() + absl::Hours(1), [token, &ran] { ran.fetch_add(1, std::memory_order_relaxed); });
    EXPECT_EQ(token.use_count(), 2);
  }
  EXPECT_EQ(token.use_count(), 1);
  EXPECT_EQ(ran.load(std::memory_order_relaxed), 0);
}

}  // namespace
}  // namespace control
}  // namespace mesh
