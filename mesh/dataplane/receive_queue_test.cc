#include "mesh/dataplane/receive_queue.h"

#include <poll.h>

#include <thread>

#include "base/eventfd.h"
#include "gtest/gtest.h"

namespace mesh {
namespace {

bool Readable(int fd) {
  pollfd p = {fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1;
}

std::vector<Message> Batch(int from, int n, size_t bytes = 4) {
  std::vector<Message> out;
  for (int i = from; i < from + n; ++i) out.push_back(Message{"p", std::string(bytes, 'a' + i % 26)});
  return out;
}

TEST(ReceiveQueueTest, FifoAndReadyFdFollowsContents) {
  auto q = ReceiveQueue::Create("n", {});
  ASSERT_TRUE(q.ok());
  EXPECT_FALSE(Readable((*q)->ready_fd()));
  auto b = Batch(0, 3);
  (*q)->PushBatch(&b);
  EXPECT_TRUE(b.empty());
  EXPECT_TRUE(Readable((*q)->ready_fd()));
  for (int i = 0; i < 3; ++i) {
    auto m = (*q)->Receive(absl::InfinitePast());
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(m->payload, std::string(4, 'a' + i));
  }
  EXPECT_FALSE(Readable((*q)->ready_fd()));
  auto none = (*q)->Receive(absl::Now() + absl::Milliseconds(5));
  EXPECT_EQ(none.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(none.status().message().find("no message for n"), absl::string_view::npos);
}

TEST(ReceiveQueueTest, FullByCountOrBytesAndResumeIsSignalled) {
  auto resume = base::MakeEventFd();
  ASSERT_TRUE(resume.ok());
  auto q = ReceiveQueue::Create("n", {/*max_messages=*/3, /*max_bytes=*/1 << 20});
  ASSERT_TRUE(q.ok());
  (*q)->set_resume_fd(resume->get());
  auto b = Batch(0, 3);
  (*q)->PushBatch(&b);
  EXPECT_TRUE((*q)->full());
  ASSERT_TRUE((*q)->Receive(absl::InfinitePast()).ok());
  EXPECT_FALSE((*q)->full());
  EXPECT_TRUE(Readable(resume->get()));  // the paused receiver is woken

  auto by_bytes = ReceiveQueue::Create("n", {/*max_messages=*/100, /*max_bytes=*/10});
  ASSERT_TRUE(by_bytes.ok());
  auto big = Batch(0, 2, 6);
  (*by_bytes)->PushBatch(&big);
  EXPECT_TRUE((*by_bytes)->full());
}

TEST(ReceiveQueueTest, CloseWakesWaitersAndDropsLaterPushes) {
  auto q = ReceiveQueue::Create("n", {});
  ASSERT_TRUE(q.ok());
  std::thread waiter([&] {
    auto m = (*q)->Receive(absl::InfiniteFuture());
    EXPECT_EQ(m.status().code(), absl::StatusCode::kCancelled);
    EXPECT_NE(m.status().message().find("node n is stopped"), absl::string_view::npos);
  });
  absl::SleepFor(absl::Milliseconds(20));
  (*q)->Close();
  waiter.join();
  auto b = Batch(0, 2);
  (*q)->PushBatch(&b);
  EXPECT_EQ((*q)->size(), 0u);
  EXPECT_FALSE(Readable((*q)->ready_fd()));
}

TEST(ReceiveQueueTest, ProducerAndConsumerThreadsKeepOrder) {
  auto q = ReceiveQueue::Create("n", {/*max_messages=*/64, /*max_bytes=*/1 << 20});
  ASSERT_TRUE(q.ok());
  constexpr int kMessages = 20000;
  std::thread producer([&] {
    int next = 0;
    while (next < kMessages) {
      if ((*q)->full()) {
        std::this_thread::yield();
        continue;
      }
      std::vector<Message> b;
      for (int i = 0; i < 16 && next < kMessages; ++i, ++next) b.push_back(Message{"p", std::to_string(next)});
      (*q)->PushBatch(&b);
    }
  });
  for (int i = 0; i < kMessages; ++i) {
    auto m = (*q)->Receive(absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_EQ(m->payload, std::to_string(i));
  }
  producer.join();
}

}  // namespace
}  // namespace mesh
