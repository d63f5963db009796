#include "ringbuf/ring.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ringbuf/internal/test_util.h"
#include "ringbuf/ring_layout.h"
#include "ringbuf/wait.h"

namespace ringbuf {
namespace {

using ::ringbuf::testing_internal::AttachSecondMapping;
using ::ringbuf::testing_internal::CountOpenFds;
using ::ringbuf::testing_internal::DupOrDie;
using ::ringbuf::testing_internal::MapRawOrDie;
using ::testing::HasSubstr;

absl::Time Soon(absl::Duration d) { return absl::Now() + d; }

std::string Pattern(size_t len, uint32_t seed) {
  std::string s(len, '\0');
  for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>((seed * 131 + i * 7) & 0xff);
  return s;
}

class RingTest : public ::testing::Test {
 protected:
  void SetUp() override { fds_before_ = CountOpenFds(); }
  void TearDown() override { EXPECT_EQ(CountOpenFds(), fds_before_) << "fd leak"; }

  static Ring MakeRing(size_t capacity, const WaitOptions& options = WaitOptions()) {
    absl::StatusOr<Ring> ring = Ring::Create(capacity, options);
    EXPECT_TRUE(ring.ok()) << ring.status();
    return std::move(*ring);
  }
  int fds_before_ = 0;
};

TEST_F(RingTest, CreateRejectsBadCapacity) {
  for (size_t capacity :
       {size_t{0}, size_t{100}, size_t{128}, size_t{3000}, kMaxRingCapacity * 2, size_t{4097}}) {
    EXPECT_EQ(Ring::Create(capacity).status().code(), absl::StatusCode::kInvalidArgument)
        << capacity;
  }
  EXPECT_TRUE(Ring::Create(kMinRingCapacity).ok());
}

TEST_F(RingTest, SizesAndFds) {
  Ring ring = MakeRing(4096);
  EXPECT_EQ(ring.capacity(), 4096u);
  EXPECT_EQ(ring.region_size(), RingRegionSize(4096));
  EXPECT_EQ(ring.MaxFrameSize(), 4096u / 2 - 8);
  EXPECT_EQ(ring.producer().MaxFrameSize(), ring.MaxFrameSize());
  EXPECT_EQ(ring.consumer().MaxFrameSize(), ring.MaxFrameSize());
  EXPECT_GE(ring.region_fd(), 0);
  // A created ring holds both doorbell ends, one per endpoint.
  EXPECT_GE(ring.producer_doorbell_fd(), 0);
  EXPECT_GE(ring.consumer_doorbell_fd(), 0);
  EXPECT_NE(ring.producer_doorbell_fd(), ring.consumer_doorbell_fd());
  EXPECT_EQ(ring.producer().doorbell_fd(), ring.producer_doorbell_fd());
  EXPECT_EQ(ring.consumer().doorbell_fd(), ring.consumer_doorbell_fd());
  for (int fd : {ring.region_fd(), ring.producer_doorbell_fd(), ring.consumer_doorbell_fd()}) {
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0) << "fd " << fd << " is not close-on-exec";
  }
}

// The two doorbell ends are the two ends of one connected AF_UNIX stream
// socket pair: a byte sent on one is read on the other, both ways.
TEST_F(RingTest, DoorbellEndsAreOneConnectedStreamSocketPair) {
  Ring ring = MakeRing(4096);
  for (int fd : {ring.producer_doorbell_fd(), ring.consumer_doorbell_fd()}) {
    int domain = 0, type = 0;
    socklen_t len = sizeof(domain);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len), 0);
    len = sizeof(type);
    ASSERT_EQ(::getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len), 0);
    EXPECT_EQ(domain, AF_UNIX);
    EXPECT_EQ(type, SOCK_STREAM);
  }
  const int ends[2] = {ring.producer_doorbell_fd(), ring.consumer_doorbell_fd()};
  for (int from = 0; from < 2; ++from) {
    const int to = 1 - from;
    ASSERT_EQ(::send(ends[from], "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL), 1);
    struct pollfd pfd = {ends[to], POLLIN, 0};
    ASSERT_EQ(::poll(&pfd, 1, 1000), 1);
    char c = 0;
    EXPECT_EQ(::recv(ends[to], &c, 1, MSG_DONTWAIT), 1);
    EXPECT_EQ(c, 'x');
    // The sender's own end saw nothing.
    struct pollfd self = {ends[from], POLLIN, 0};
    EXPECT_EQ(::poll(&self, 1, 0), 0);
  }
  // An attached ring holds only the end of the side it was attached for.
  absl::StatusOr<Ring> consumer = AttachSecondMapping(ring, RingEnd::kConsumer);
  ASSERT_TRUE(consumer.ok()) << consumer.status();
  EXPECT_EQ(consumer->producer_doorbell_fd(), -1);
  EXPECT_EQ(consumer->producer().doorbell_fd(), -1);
  EXPECT_GE(consumer->consumer_doorbell_fd(), 0);
  EXPECT_EQ(consumer->consumer().doorbell_fd(), consumer->consumer_doorbell_fd());
  absl::StatusOr<Ring> producer = AttachSecondMapping(ring, RingEnd::kProducer);
  ASSERT_TRUE(producer.ok()) << producer.status();
  EXPECT_EQ(producer->consumer_doorbell_fd(), -1);
  EXPECT_EQ(producer->consumer().doorbell_fd(), -1);
  EXPECT_GE(producer->producer_doorbell_fd(), 0);
  EXPECT_EQ(producer->producer().doorbell_fd(), producer->producer_doorbell_fd());
  // The attached ends are the same sockets: the attached producer's end
  // rings the attached consumer's end.
  ASSERT_EQ(::send(producer->producer_doorbell_fd(), "y", 1, MSG_DONTWAIT | MSG_NOSIGNAL), 1);
  struct pollfd pfd = {consumer->consumer_doorbell_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 1000), 1);
  EXPECT_TRUE(consumer->consumer().DrainDoorbell().ok());
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
}

// The creator hands the consumer's end to the peer, then closes its copy.
TEST_F(RingTest, DropConsumerDoorbellClosesTheDescriptor) {
  Ring ring = MakeRing(4096, WaitOptions::NoSpin());
  // The peer's side, attached before the drop as if the end had been sent.
  absl::StatusOr<Ring> peer = AttachSecondMapping(ring, RingEnd::kConsumer, WaitOptions::NoSpin());
  ASSERT_TRUE(peer.ok()) << peer.status();
  const int dropped = ring.consumer_doorbell_fd();
  const int before = CountOpenFds();
  ring.DropConsumerDoorbell();
  EXPECT_EQ(CountOpenFds(), before - 1);
  EXPECT_EQ(ring.consumer_doorbell_fd(), -1);
  EXPECT_EQ(ring.consumer().doorbell_fd(), -1);
  EXPECT_EQ(::fcntl(dropped, F_GETFD), -1) << "fd " << dropped << " is still open";
  ring.DropConsumerDoorbell();  // idempotent
  EXPECT_EQ(CountOpenFds(), before - 1);
  EXPECT_GE(ring.producer_doorbell_fd(), 0);
  // The producer still wakes the peer's sleeping consumer through the end
  // the peer holds.
  SharedRegion raw = MapRawOrDie(ring);
  const auto* header = reinterpret_cast<const RingHeader*>(raw.data());
  std::thread producer([&] {
    while (header->consumer_waiting.load() == 0) absl::SleepFor(absl::Microseconds(100));
    EXPECT_TRUE(ring.producer().Write("after the drop", absl::InfinitePast()).ok());
  });
  absl::StatusOr<std::string> r = peer->consumer().Read(Soon(absl::Seconds(10)));
  producer.join();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "after the drop");
  EXPECT_EQ(ring.producer().stats().doorbells_rung, 1u);
}

TEST_F(RingTest, EmptyRing) {
  Ring ring = MakeRing(4096);
  absl::StatusOr<std::optional<std::string>> r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
  auto peek = ring.consumer().Peek();
  ASSERT_TRUE(peek.ok());
  EXPECT_FALSE(peek->has_value());
  EXPECT_EQ(ring.consumer().Release().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ring.producer().Commit(0).code(), absl::StatusCode::kFailedPrecondition);
  absl::StatusOr<size_t> drained = ring.consumer().Drain(10, [](absl::Span<const uint8_t>) {});
  ASSERT_TRUE(drained.ok());
  EXPECT_EQ(*drained, 0u);
  // Misuse errors are not sticky.
  EXPECT_TRUE(ring.consumer().status().ok());
  EXPECT_TRUE(ring.producer().status().ok());
}

TEST_F(RingTest, QueuedBytesTracksUnconsumedFrames) {
  Ring ring = MakeRing(4096);
  EXPECT_EQ(ring.QueuedBytes(), 0u);
  // A frame takes its 8-byte header plus the payload rounded up to 8.
  ASSERT_TRUE(ring.producer().Write("12345", absl::InfinitePast()).ok());
  ASSERT_TRUE(ring.producer().Write(std::string(16, 'x'), absl::InfinitePast()).ok());
  EXPECT_EQ(ring.QueuedBytes(), (8u + 8u) + (8u + 16u));
  auto r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(ring.QueuedBytes(), 8u + 16u);
  r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(ring.QueuedBytes(), 0u);
}

TEST_F(RingTest, ConsumerHeartbeatIsSharedAndIndependentOfData) {
  Ring ring = MakeRing(4096);
  const uint32_t start = ring.ConsumerHeartbeat();
  ring.BeatConsumerHeartbeat();
  ring.BeatConsumerHeartbeat();
  EXPECT_EQ(ring.ConsumerHeartbeat(), start + 2);
  // It lives in the shared header (which the peer maps too), at the offset
  // ring_layout.h declares.
  const auto* header = reinterpret_cast<const RingHeader*>(ring.region().data());
  EXPECT_EQ(header->consumer_heartbeat.load(), start + 2);
  // Beats never touch the data path.
  EXPECT_EQ(ring.QueuedBytes(), 0u);
  ASSERT_TRUE(ring.producer().Write("x", absl::InfinitePast()).ok());
  auto r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(ring.ConsumerHeartbeat(), start + 2);
}

TEST_F(RingTest, ZeroByteFrames) {
  Ring ring = MakeRing(256);
  for (int round = 0; round < 50; ++round) {
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(ring.producer().Write("", absl::InfinitePast()).ok());
    }
    for (int i = 0; i < 10; ++i) {
      auto r = ring.consumer().TryRead();
      ASSERT_TRUE(r.ok() && r->has_value());
      EXPECT_EQ(**r, "");
    }
    auto r = ring.consumer().TryRead();
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_value());
  }
  EXPECT_EQ(ring.producer().stats().frames, 500u);
  EXPECT_EQ(ring.consumer().stats().frames, 500u);
  EXPECT_EQ(ring.consumer().stats().bytes, 0u);
}

TEST_F(RingTest, MaxSizeFramesAtEveryPhase) {
  Ring ring = MakeRing(1024);
  const size_t max = ring.MaxFrameSize();
  // Shift the ring's phase by 8 bytes each round so max-size frames land at
  // every alignment relative to the end, with and without padding.
  for (uint32_t round = 0; round < 300; ++round) {
    const std::string frame = Pattern(max, round);
    ASSERT_TRUE(ring.producer().Write(frame, absl::InfinitePast()).ok()) << round;
    auto r = ring.consumer().TryRead();
    ASSERT_TRUE(r.ok() && r->has_value()) << round;
    ASSERT_EQ(**r, frame);
    ASSERT_TRUE(ring.producer().Write("", absl::InfinitePast()).ok());
    ASSERT_TRUE(ring.consumer().TryRead().ok());
  }
}

TEST_F(RingTest, TooBigFrameIsInvalidArgument) {
  Ring ring = MakeRing(1024);
  const std::string big(ring.MaxFrameSize() + 1, 'x');
  EXPECT_EQ(ring.producer().Write(big, absl::InfiniteFuture()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ring.producer().Reserve(1 << 20, absl::InfiniteFuture()).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Not sticky.
  ASSERT_TRUE(ring.producer().Write("ok", absl::InfinitePast()).ok());
  auto r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(**r, "ok");
}

// Random sizes, random fill/drain patterns, compared with a std::deque.
TEST_F(RingTest, WrapAroundWithRandomSizesMatchesModel) {
  Ring ring = MakeRing(1024);
  std::mt19937 rng(12345);
  std::deque<std::string> model;
  const size_t max = ring.MaxFrameSize();
  uint32_t seq = 0;
  uint64_t frames_read = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    const int writes = rng() % 8;
    for (int i = 0; i < writes; ++i) {
      size_t len;
      switch (rng() % 4) {
        case 0:
          len = 0;
          break;
        case 1:
          len = rng() % 16;
          break;
        case 2:
          len = rng() % 128;
          break;
        default:
          len = rng() % (max + 1);
          break;
      }
      const std::string frame = Pattern(len, seq);
      absl::Status s;
      switch (rng() % 3) {
        case 0:
          s = ring.producer().Write(frame, absl::InfinitePast());
          break;
        case 1: {
          auto span = ring.producer().Reserve(len, absl::InfinitePast());
          s = span.status();
          if (span.ok()) {
            std::memcpy(span->data(), frame.data(), len);
            s = ring.producer().Commit(len);
          }
          break;
        }
        default: {
          absl::string_view frames[1] = {frame};
          s = ring.producer().WriteBatch(frames, absl::InfinitePast());
          break;
        }
      }
      if (s.ok()) {
        model.push_back(frame);
        ++seq;
      } else {
        ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        break;
      }
    }
    const int reads = rng() % 8;
    for (int i = 0; i < reads; ++i) {
      if (rng() % 2 == 0) {
        auto r = ring.consumer().TryRead();
        ASSERT_TRUE(r.ok()) << r.status();
        if (!r->has_value()) {
          ASSERT_TRUE(model.empty());
          break;
        }
        ASSERT_FALSE(model.empty());
        ASSERT_EQ(**r, model.front()) << "frame " << frames_read;
        model.pop_front();
        ++frames_read;
      } else {
        auto p = ring.consumer().Peek();
        ASSERT_TRUE(p.ok()) << p.status();
        if (!p->has_value()) {
          ASSERT_TRUE(model.empty());
          break;
        }
        ASSERT_FALSE(model.empty());
        ASSERT_EQ(std::string(reinterpret_cast<const char*>((*p)->data()), (*p)->size()),
                  model.front());
        model.pop_front();
        ++frames_read;
        ASSERT_TRUE(ring.consumer().Release().ok());
      }
    }
  }
  EXPECT_GT(frames_read, 20000u);
  EXPECT_EQ(ring.producer().stats().frames, seq);
}

TEST_F(RingTest, FullRingWithPastDeadlineFailsAtOnce) {
  Ring ring = MakeRing(256);
  const std::string frame(40, 'a');  // 48 bytes per frame
  int written = 0;
  while (ring.producer().Write(frame, absl::InfinitePast()).ok()) ++written;
  EXPECT_EQ(written, 256 / 48);
  const absl::Time start = absl::Now();
  absl::Status s = ring.producer().Write(frame, absl::InfinitePast());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("ring full"));
  s = ring.producer().Write(frame, absl::Now());
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(100));
  EXPECT_GE(ring.producer().stats().full_events, 3u);
  // Not sticky: free one frame and write again.
  ASSERT_TRUE(ring.consumer().TryRead().ok());
  EXPECT_TRUE(ring.producer().Write(frame, absl::InfinitePast()).ok());
}

TEST_F(RingTest, FullRingWaitsUntilDeadline) {
  for (const WaitOptions& options : {WaitOptions(), WaitOptions::NoSpin()}) {
    Ring ring = MakeRing(256, options);
    while (ring.producer().Write("xxxxxxxx", absl::InfinitePast()).ok()) {
    }
    const absl::Time start = absl::Now();
    absl::Status s = ring.producer().Write("xxxxxxxx", start + absl::Milliseconds(30));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
    EXPECT_GE(took, absl::Milliseconds(30));
    EXPECT_LT(took, absl::Seconds(5));
  }
}

TEST_F(RingTest, FullRingWaitsThenSucceedsWhenConsumerFreesSpace) {
  for (const WaitOptions& options : {WaitOptions(), WaitOptions::NoSpin()}) {
    Ring ring = MakeRing(256, options);
    SharedRegion raw = MapRawOrDie(ring);
    const auto* header = reinterpret_cast<const RingHeader*>(raw.data());
    const std::string frame(100, 'f');
    ASSERT_TRUE(ring.producer().Write(frame, absl::InfinitePast()).ok());
    ASSERT_TRUE(ring.producer().Write(frame, absl::InfinitePast()).ok());
    ASSERT_EQ(ring.producer().Write(frame, absl::InfinitePast()).code(),
              absl::StatusCode::kResourceExhausted);
    std::thread consumer([&ring, header] {
      absl::SleepFor(absl::Milliseconds(50));
      // Make sure the producer is asleep (not just slow to get there).
      while (header->producer_waiting.load() == 0) absl::SleepFor(absl::Microseconds(100));
      auto r = ring.consumer().TryRead();
      EXPECT_TRUE(r.ok() && r->has_value());
    });
    const absl::Time start = absl::Now();
    absl::Status s = ring.producer().Write(frame, Soon(absl::Seconds(10)));
    const absl::Duration took = absl::Now() - start;
    consumer.join();
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_GE(took, absl::Milliseconds(40));
    EXPECT_LT(took, absl::Seconds(5));
    // 50 ms is far beyond any spin: the producer slept and was woken.
    EXPECT_GE(ring.producer().stats().sleeps, 1u);
    EXPECT_EQ(ring.consumer().stats().doorbells_rung, 1u);
  }
}

TEST_F(RingTest, ReserveCommit) {
  Ring ring = MakeRing(1024);
  auto span = ring.producer().Reserve(100, absl::InfinitePast());
  ASSERT_TRUE(span.ok()) << span.status();
  ASSERT_EQ(span->size(), 100u);
  std::memset(span->data(), 'r', 100);
  // Longer than reserved: refused, reservation kept.
  EXPECT_EQ(ring.producer().Commit(101).code(), absl::StatusCode::kInvalidArgument);
  // Nothing is visible before the commit.
  auto p = ring.consumer().Peek();
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->has_value());
  ASSERT_TRUE(ring.producer().Commit(60).ok());
  auto r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(**r, std::string(60, 'r'));
  // A second Reserve replaces an uncommitted one.
  ASSERT_TRUE(ring.producer().Reserve(10, absl::InfinitePast()).ok());
  span = ring.producer().Reserve(5, absl::InfinitePast());
  ASSERT_TRUE(span.ok());
  std::memcpy(span->data(), "hello", 5);
  ASSERT_TRUE(ring.producer().Commit(5).ok());
  EXPECT_EQ(ring.producer().Commit(5).code(), absl::StatusCode::kFailedPrecondition);
  r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(**r, "hello");
}

TEST_F(RingTest, PeekRelease) {
  Ring ring = MakeRing(1024);
  ASSERT_TRUE(ring.producer().Write("first", absl::InfinitePast()).ok());
  ASSERT_TRUE(ring.producer().Write("second", absl::InfinitePast()).ok());
  auto a = ring.consumer().Peek();
  ASSERT_TRUE(a.ok() && a->has_value());
  auto b = ring.consumer().Peek();  // same frame until released
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*a)->data(), (*b)->data());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*a)->data()), (*a)->size()), "first");
  ASSERT_TRUE(ring.consumer().Release().ok());
  auto c = ring.consumer().Peek();
  ASSERT_TRUE(c.ok() && c->has_value());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>((*c)->data()), (*c)->size()), "second");
  ASSERT_TRUE(ring.consumer().Release().ok());
  EXPECT_EQ(ring.consumer().Release().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(RingTest, CommitNoPublishIsInvisibleUntilPublish) {
  Ring ring = MakeRing(4096);
  for (int i = 0; i < 10; ++i) {
    auto span = ring.producer().Reserve(4, absl::InfinitePast());
    ASSERT_TRUE(span.ok());
    std::memcpy(span->data(), &i, 4);
    ASSERT_TRUE(ring.producer().CommitNoPublish(4).ok());
  }
  auto p = ring.consumer().Peek();
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->has_value());
  ASSERT_TRUE(ring.producer().Publish().ok());
  int expected = 0;
  absl::StatusOr<size_t> n = ring.consumer().Drain(100, [&](absl::Span<const uint8_t> f) {
    int v;
    ASSERT_EQ(f.size(), 4u);
    std::memcpy(&v, f.data(), 4);
    EXPECT_EQ(v, expected++);
  });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 10u);
}

TEST_F(RingTest, DrainStopsAtMaxFrames) {
  Ring ring = MakeRing(4096);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(ring.producer().Write(std::string(i, 'd'), absl::InfinitePast()).ok());
  }
  size_t next = 0;
  auto check = [&](absl::Span<const uint8_t> f) { EXPECT_EQ(f.size(), next++); };
  absl::StatusOr<size_t> n = ring.consumer().Drain(4, check);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4u);
  n = ring.consumer().Drain(100, check);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 6u);
  EXPECT_EQ(next, 10u);
}

// A batch becomes visible with one tail store and wakes a sleeping consumer
// with exactly one doorbell write.
TEST_F(RingTest, WriteBatchPublishesOnceAndRingsOnce) {
  Ring ring = MakeRing(1 << 16, WaitOptions::NoSpin());
  SharedRegion raw = MapRawOrDie(ring);
  const auto* header = reinterpret_cast<const RingHeader*>(raw.data());
  std::atomic<bool> woke{false};
  std::thread consumer([&] {
    absl::Status s = ring.consumer().Wait(Soon(absl::Seconds(10)));
    EXPECT_TRUE(s.ok()) << s;
    woke = true;
  });
  // Wait until the consumer has announced its sleep.
  while (header->consumer_waiting.load() == 0) absl::SleepFor(absl::Microseconds(100));
  std::vector<std::string> storage;
  for (int i = 0; i < 100; ++i) storage.push_back(Pattern(i, i));
  std::vector<absl::string_view> frames(storage.begin(), storage.end());
  size_t written = 0;
  ASSERT_TRUE(ring.producer().WriteBatch(frames, absl::InfinitePast(), &written).ok());
  EXPECT_EQ(written, 100u);
  consumer.join();
  EXPECT_TRUE(woke);
  EXPECT_EQ(ring.producer().stats().doorbells_rung, 1u);
  int i = 0;
  absl::StatusOr<size_t> n = ring.consumer().Drain(1000, [&](absl::Span<const uint8_t> f) {
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), storage[i++]);
  });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 100u);
}

// A batch larger than the ring is published in parts while it waits.
TEST_F(RingTest, WriteBatchLargerThanRing) {
  Ring ring = MakeRing(512);
  std::vector<std::string> storage;
  for (int i = 0; i < 500; ++i) storage.push_back(Pattern(i % 100, i));
  std::vector<absl::string_view> frames(storage.begin(), storage.end());
  std::thread consumer([&] {
    for (size_t i = 0; i < storage.size(); ++i) {
      absl::StatusOr<std::string> r = ring.consumer().Read(Soon(absl::Seconds(20)));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(*r, storage[i]);
    }
  });
  size_t written = 0;
  absl::Status s = ring.producer().WriteBatch(frames, Soon(absl::Seconds(20)), &written);
  consumer.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(written, 500u);
}

TEST_F(RingTest, WriteBatchReportsPrefixOnFullRing) {
  Ring ring = MakeRing(256);
  std::vector<std::string> storage(10, std::string(40, 'b'));  // 48 bytes each
  std::vector<absl::string_view> frames(storage.begin(), storage.end());
  size_t written = 99;
  absl::Status s = ring.producer().WriteBatch(frames, absl::InfinitePast(), &written);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(written, 5u);
  absl::StatusOr<size_t> n = ring.consumer().Drain(100, [](absl::Span<const uint8_t>) {});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5u);  // all of the prefix was published
}

TEST_F(RingTest, WaitTimesOut) {
  Ring ring = MakeRing(1024);
  EXPECT_EQ(ring.consumer().Wait(absl::InfinitePast()).code(), absl::StatusCode::kDeadlineExceeded);
  const absl::Time start = absl::Now();
  EXPECT_EQ(ring.consumer().Wait(start + absl::Milliseconds(30)).code(),
            absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
  EXPECT_EQ(ring.consumer().Read(Soon(absl::Milliseconds(5))).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RingTest, WaitWakesOnData) {
  for (const WaitOptions& options : {WaitOptions(), WaitOptions::NoSpin()}) {
    Ring ring = MakeRing(1024, options);
    SharedRegion raw = MapRawOrDie(ring);
    const auto* header = reinterpret_cast<const RingHeader*>(raw.data());
    std::thread producer([&] {
      absl::SleepFor(absl::Milliseconds(30));
      // Make sure the consumer is asleep (not just slow to get there).
      while (header->consumer_waiting.load() == 0) absl::SleepFor(absl::Microseconds(100));
      EXPECT_TRUE(ring.producer().Write("wake", absl::InfinitePast()).ok());
    });
    const absl::Time start = absl::Now();
    absl::StatusOr<std::string> r = ring.consumer().Read(Soon(absl::Seconds(10)));
    const absl::Duration took = absl::Now() - start;
    producer.join();
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, "wake");
    EXPECT_LT(took, absl::Seconds(5));
    EXPECT_GE(ring.consumer().stats().sleeps, 1u);
    EXPECT_EQ(ring.producer().stats().doorbells_rung, 1u);
  }
}

// A busy stream makes no doorbell syscalls: while frames keep coming, the
// consumer never announces a sleep, so the producer never rings.
TEST_F(RingTest, BusyPollNeverRings) {
  Ring ring = MakeRing(4096, WaitOptions::BusyPoll());
  constexpr int kFrames = 20000;
  std::thread consumer([&] {
    for (int i = 0; i < kFrames; ++i) {
      absl::StatusOr<std::string> r = ring.consumer().Read(Soon(absl::Seconds(30)));
      ASSERT_TRUE(r.ok()) << r.status();
    }
  });
  for (int i = 0; i < kFrames; ++i) {
    ASSERT_TRUE(ring.producer().Write("busy", Soon(absl::Seconds(30))).ok());
  }
  consumer.join();
  EXPECT_EQ(ring.producer().stats().doorbells_rung, 0u);
  EXPECT_EQ(ring.consumer().stats().doorbells_rung, 0u);
  EXPECT_EQ(ring.consumer().stats().sleeps, 0u);
  EXPECT_EQ(ring.producer().stats().sleeps, 0u);
}

// A peer ringing the doorbell in a loop without writing data: the consumer
// keeps going back to sleep, times out at its deadline, and reads nothing.
TEST_F(RingTest, DoorbellSpamDoesNotProduceFramesOrHang) {
  Ring ring = MakeRing(1024);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> rings{0};
  // The producer's end rings the consumer's.
  const int fd = ring.producer_doorbell_fd();
  std::thread spammer([&] {
    while (!stop.load()) {
      if (::send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) rings.fetch_add(1);
      absl::SleepFor(absl::Microseconds(20));
    }
  });
  const absl::Time start = absl::Now();
  absl::Status s = ring.consumer().Wait(start + absl::Milliseconds(100));
  const absl::Duration took = absl::Now() - start;
  stop = true;
  spammer.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GE(took, absl::Milliseconds(100));
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_GT(rings.load(), 10u);
  auto r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(ring.consumer().status().ok());
}

// A withdrawn sleep: the producer's next write rings nothing.
TEST_F(RingTest, CancelSleepStopsTheRing) {
  Ring ring = MakeRing(1024);
  SharedRegion raw = MapRawOrDie(ring);
  const auto* header = reinterpret_cast<const RingHeader*>(raw.data());
  RingConsumer& consumer = ring.consumer();
  ASSERT_TRUE(consumer.PrepareToSleep());
  consumer.CancelSleep();
  EXPECT_EQ(header->consumer_waiting.load(), 0u);
  ASSERT_TRUE(ring.producer().Write("x", absl::InfinitePast()).ok());
  struct pollfd pfd = {consumer.doorbell_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 50), 0);
  EXPECT_EQ(ring.producer().stats().doorbells_rung, 0u);
  auto r = consumer.TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
}

// The split form for event loops.
TEST_F(RingTest, PrepareToSleepAndDrainDoorbell) {
  Ring ring = MakeRing(1024);
  SharedRegion raw = MapRawOrDie(ring);
  const auto* header = reinterpret_cast<const RingHeader*>(raw.data());
  RingConsumer& consumer = ring.consumer();
  ASSERT_TRUE(consumer.PrepareToSleep());
  EXPECT_EQ(header->consumer_waiting.load(), 1u);
  struct pollfd pfd = {consumer.doorbell_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);  // nothing rung yet
  ASSERT_TRUE(ring.producer().Write("x", absl::InfinitePast()).ok());
  EXPECT_EQ(header->consumer_waiting.load(), 0u);  // the producer cleared it...
  EXPECT_EQ(::poll(&pfd, 1, 1000), 1);             // ...and rang
  ASSERT_TRUE(consumer.DrainDoorbell().ok());
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
  // Data is there: must not sleep.
  EXPECT_FALSE(consumer.PrepareToSleep());
  EXPECT_EQ(header->consumer_waiting.load(), 0u);
  auto r = consumer.TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  // A second write while nobody sleeps rings nothing.
  ASSERT_TRUE(ring.producer().Write("y", absl::InfinitePast()).ok());
  EXPECT_EQ(::poll(&pfd, 1, 0), 0);
  EXPECT_EQ(ring.producer().stats().doorbells_rung, 1u);

  // Producer side: a full ring.
  RingProducer& producer = ring.producer();
  while (producer.Write(std::string(100, 'z'), absl::InfinitePast()).ok()) {
  }
  ASSERT_TRUE(producer.PrepareToSleep(100));
  EXPECT_EQ(header->producer_waiting.load(), 1u);
  struct pollfd sfd = {producer.doorbell_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&sfd, 1, 0), 0);
  for (;;) {  // empty the ring; the first release rings the space doorbell
    auto frame = consumer.TryRead();
    ASSERT_TRUE(frame.ok());
    if (!frame->has_value()) break;
  }
  EXPECT_EQ(header->producer_waiting.load(), 0u);
  EXPECT_EQ(::poll(&sfd, 1, 1000), 1);
  EXPECT_EQ(consumer.stats().doorbells_rung, 1u);
  ASSERT_TRUE(producer.DrainDoorbell().ok());
  EXPECT_FALSE(producer.PrepareToSleep(100));
  EXPECT_TRUE(producer.Write(std::string(100, 'z'), absl::InfinitePast()).ok());
}

TEST_F(RingTest, ProducerCloseIsEndOfStream) {
  Ring ring = MakeRing(1024);
  ASSERT_TRUE(ring.producer().Write("a", absl::InfinitePast()).ok());
  ASSERT_TRUE(ring.producer().Reserve(3, absl::InfinitePast()).ok());
  ASSERT_TRUE(ring.producer().CommitNoPublish(3).ok());
  ring.producer().Close();
  ring.producer().Close();  // idempotent
  EXPECT_EQ(ring.producer().Write("late", absl::InfinitePast()).code(),
            absl::StatusCode::kFailedPrecondition);
  // Frames published before the close (including the unpublished commit)
  // are still delivered, then end of stream, consistently.
  auto r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(**r, "a");
  r = ring.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ring.consumer().TryRead().status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_EQ(ring.consumer().Wait(absl::InfiniteFuture()).code(), absl::StatusCode::kOutOfRange);
  }
}

TEST_F(RingTest, ProducerCloseWakesSleepingConsumer) {
  Ring ring = MakeRing(1024, WaitOptions::NoSpin());
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(30));
    ring.producer().Close();
  });
  absl::Status s = ring.consumer().Wait(Soon(absl::Seconds(10)));
  closer.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
}

TEST_F(RingTest, ConsumerCloseStopsBlockedProducer) {
  Ring ring = MakeRing(256, WaitOptions::NoSpin());
  while (ring.producer().Write("fill", absl::InfinitePast()).ok()) {
  }
  std::thread closer([&] {
    absl::SleepFor(absl::Milliseconds(30));
    ring.consumer().Close();
  });
  const absl::Time start = absl::Now();
  absl::Status s = ring.producer().Write("more", Soon(absl::Seconds(10)));
  closer.join();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(ring.consumer().TryRead().status().code(), absl::StatusCode::kFailedPrecondition);
}

// The producer's process died without closing the ring (so the closed
// word says nothing): its end of the doorbell is gone, which the consumer's
// end reports as EOF. The consumer delivers what was published, then its
// Wait() fails UNAVAILABLE at once instead of sleeping until the deadline
// (or, on an end that stays readable, spinning until it).
TEST_F(RingTest, ConsumerWaitIsUnavailableOnceTheProducerEndIsClosed) {
  for (const WaitOptions& options : {WaitOptions(), WaitOptions::NoSpin()}) {
    std::optional<Ring> creator(MakeRing(1024, options));
    absl::StatusOr<Ring> peer = AttachSecondMapping(*creator, RingEnd::kConsumer, options);
    ASSERT_TRUE(peer.ok()) << peer.status();
    creator->DropConsumerDoorbell();
    ASSERT_TRUE(creator->producer().Write("last words", absl::InfinitePast()).ok());
    creator.reset();  // closes the producer's end, its only copy
    RingConsumer& consumer = peer->consumer();
    absl::StatusOr<std::string> r = consumer.Read(Soon(absl::Seconds(30)));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, "last words");
    const absl::Time start = absl::Now();
    const absl::Status s = consumer.Wait(start + absl::Seconds(30));
    const absl::Duration took = absl::Now() - start;
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_LT(took, absl::Seconds(2));
    EXPECT_LE(consumer.stats().sleeps, 1u);
    EXPECT_EQ(consumer.DrainDoorbell().code(), absl::StatusCode::kUnavailable);
    // The split form says the same: the end is readable for ever.
    ASSERT_TRUE(consumer.PrepareToSleep());
    struct pollfd pfd = {consumer.doorbell_fd(), POLLIN, 0};
    EXPECT_EQ(::poll(&pfd, 1, 0), 1);
    EXPECT_EQ(consumer.DrainDoorbell().code(), absl::StatusCode::kUnavailable);
    // Not a ring failure: the endpoint itself is still OK (no DATA_LOSS).
    EXPECT_TRUE(consumer.status().ok()) << consumer.status();
  }
}

// The consumer's process died without closing the ring: a producer waiting
// for room fails UNAVAILABLE at once instead of waiting for the deadline.
TEST_F(RingTest, ProducerWaitForSpaceIsUnavailableOnceTheConsumerEndIsClosed) {
  for (const WaitOptions& options : {WaitOptions(), WaitOptions::NoSpin()}) {
    std::optional<Ring> creator(MakeRing(256, options));
    absl::StatusOr<Ring> peer = AttachSecondMapping(*creator, RingEnd::kProducer, options);
    ASSERT_TRUE(peer.ok()) << peer.status();
    RingProducer& producer = peer->producer();
    const std::string frame(40, 'f');
    while (producer.Write(frame, absl::InfinitePast()).ok()) {
    }
    creator.reset();  // closes the consumer's end, its only copy
    absl::Time start = absl::Now();
    absl::Status s = producer.WaitForSpace(frame.size(), start + absl::Seconds(30));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
    start = absl::Now();
    s = producer.Write(frame, start + absl::Seconds(30));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
    EXPECT_LE(producer.stats().sleeps, 2u);
    EXPECT_EQ(producer.DrainDoorbell().code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(producer.status().ok()) << producer.status();
  }
}

TEST_F(RingTest, AttachSecondMappingRoundTrip) {
  Ring a = MakeRing(4096);
  absl::StatusOr<Ring> b = AttachSecondMapping(a, RingEnd::kConsumer);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->capacity(), 4096u);
  ASSERT_TRUE(a.producer().Write("across", absl::InfinitePast()).ok());
  auto r = b->consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(**r, "across");
  // A producer attached through a third mapping continues the stream.
  absl::StatusOr<Ring> c = AttachSecondMapping(a, RingEnd::kProducer);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(c->producer().Write("back", absl::InfinitePast()).ok());
  r = b->consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(**r, "back");
  EXPECT_EQ(a.producer().stats().frames, 1u);
  EXPECT_EQ(c->producer().stats().frames, 1u);
}

// A doorbell must be one end of an AF_UNIX stream socket pair: anything
// else is refused with INVALID_ARGUMENT naming the problem, for either end.
TEST_F(RingTest, AttachRefusesDoorbellsThatAreNotStreamSocketPairEnds) {
  Ring a = MakeRing(4096);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  base::UniqueFd read_end(p[0]), write_end(p[1]);
  char path[] = "/tmp/shmesh-ring-test-XXXXXX";
  const int file_fd = ::mkostemp(path, O_CLOEXEC);
  ASSERT_GE(file_fd, 0);
  ::unlink(path);
  base::UniqueFd file(file_fd);
  base::UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  ASSERT_TRUE(event.valid());
  base::UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(udp.valid());
  int d[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, d), 0);
  base::UniqueFd dgram(d[0]), dgram_peer(d[1]);
  int q[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, q), 0);
  base::UniqueFd seqpacket(q[0]), seqpacket_peer(q[1]);
  const struct {
    const char* what;
    int fd;
    const char* message;
  } cases[] = {
      {"pipe", read_end.get(), "is not a socket"},
      {"pipe write end", write_end.get(), "is not a socket"},
      {"regular file", file.get(), "is not a socket"},
      {"memfd", a.region_fd(), "is not a socket"},
      {"eventfd", event.get(), "is not a socket"},
      {"UDP socket", udp.get(), "not an AF_UNIX SOCK_STREAM socket pair end"},
      {"AF_UNIX datagram socket", dgram.get(), "not an AF_UNIX SOCK_STREAM socket pair end"},
      {"AF_UNIX seqpacket socket", seqpacket.get(), "not an AF_UNIX SOCK_STREAM socket pair end"},
  };
  for (const auto& c : cases) {
    for (RingEnd end : {RingEnd::kProducer, RingEnd::kConsumer}) {
      absl::StatusOr<SharedRegion> region =
          SharedRegion::Map(DupOrDie(a.region_fd()), a.region_size());
      ASSERT_TRUE(region.ok());
      absl::StatusOr<Ring> b = Ring::Attach(std::move(*region), DupOrDie(c.fd), end);
      EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << c.what;
      EXPECT_THAT(b.status().message(), HasSubstr(c.message)) << c.what;
    }
  }
  absl::StatusOr<SharedRegion> region = SharedRegion::Map(DupOrDie(a.region_fd()), a.region_size());
  ASSERT_TRUE(region.ok());
  absl::StatusOr<Ring> none =
      Ring::Attach(std::move(*region), base::UniqueFd(), RingEnd::kConsumer);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("doorbell fd missing"));
  // The real ends are accepted.
  EXPECT_TRUE(AttachSecondMapping(a, RingEnd::kConsumer).ok());
  EXPECT_TRUE(AttachSecondMapping(a, RingEnd::kProducer).ok());
}

TEST_F(RingTest, MovedRingKeepsEndpoints) {
  Ring a = MakeRing(4096);
  RingProducer* producer = &a.producer();
  Ring b = std::move(a);
  EXPECT_EQ(&b.producer(), producer);
  ASSERT_TRUE(b.producer().Write("moved", absl::InfinitePast()).ok());
  auto r = b.consumer().TryRead();
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ(**r, "moved");
}

// ---- frames written as a fixed prefix + payload (Write/WriteBatch with a
// prefix): one frame each, no joined copy, limits count both parts.

std::string ReadString(Ring& ring) {
  absl::StatusOr<std::optional<std::string>> r = ring.consumer().TryRead();
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok() || !r->has_value()) return "<none>";
  return **r;
}

TEST_F(RingTest, PrefixWriteRoundTrip) {
  Ring ring = MakeRing(4096);
  RingProducer& p = ring.producer();
  ASSERT_TRUE(p.Write("HDR:", "payload", absl::InfinitePast()).ok());
  ASSERT_TRUE(p.Write("", "bare", absl::InfinitePast()).ok());
  ASSERT_TRUE(p.Write("only-prefix", "", absl::InfinitePast()).ok());
  ASSERT_TRUE(p.Write("", "", absl::InfinitePast()).ok());
  const std::string binary_prefix("\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
  ASSERT_TRUE(p.Write(binary_prefix, Pattern(61, 3), absl::InfinitePast()).ok());
  EXPECT_EQ(ReadString(ring), "HDR:payload");
  EXPECT_EQ(ReadString(ring), "bare");
  EXPECT_EQ(ReadString(ring), "only-prefix");
  EXPECT_EQ(ReadString(ring), "");
  EXPECT_EQ(ReadString(ring), binary_prefix + Pattern(61, 3));
  absl::StatusOr<std::optional<std::string>> empty = ring.consumer().TryRead();
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());
  // The counters count whole frames: prefix + payload.
  EXPECT_EQ(p.stats().frames, 5u);
  EXPECT_EQ(p.stats().bytes, 11u + 4u + 11u + 0u + 77u);
  EXPECT_EQ(ring.consumer().stats().bytes, p.stats().bytes);
}

TEST_F(RingTest, WriteBatchWithPrefix) {
  Ring ring = MakeRing(4096);
  std::vector<std::string> storage;
  for (int i = 0; i < 20; ++i) storage.push_back(Pattern(i * 3, i));
  std::vector<absl::string_view> payloads(storage.begin(), storage.end());
  const std::string prefix = "0123456789abcdef";
  size_t written = 99;
  ASSERT_TRUE(ring.producer().WriteBatch(prefix, payloads, absl::InfinitePast(), &written).ok());
  EXPECT_EQ(written, 20u);
  size_t i = 0;
  absl::StatusOr<size_t> n = ring.consumer().Drain(100, [&](absl::Span<const uint8_t> f) {
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), prefix + storage[i]);
    ++i;
  });
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 20u);
  // An empty batch with a prefix writes nothing and succeeds; so does the
  // plain form, which is the empty-prefix case.
  ASSERT_TRUE(ring.producer().WriteBatch(prefix, {}, absl::InfinitePast(), &written).ok());
  EXPECT_EQ(written, 0u);
  ASSERT_TRUE(ring.producer().WriteBatch("", payloads, absl::InfinitePast(), &written).ok());
  EXPECT_EQ(written, 20u);
  i = 0;
  n = ring.consumer().Drain(100, [&](absl::Span<const uint8_t> f) {
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), f.size()), storage[i]);
    ++i;
  });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 20u);
}

TEST_F(RingTest, PrefixCountsTowardsMaxFrameSize) {
  Ring ring = MakeRing(1024);
  RingProducer& p = ring.producer();
  const size_t max = p.MaxFrameSize();
  const std::string prefix(16, 'h');
  // Exactly the maximum fits ...
  ASSERT_TRUE(p.Write(prefix, std::string(max - 16, 'p'), absl::InfinitePast()).ok());
  EXPECT_EQ(ReadString(ring).size(), max);
  // ... one more byte does not, although the payload alone would.
  absl::Status s = p.Write(prefix, std::string(max - 15, 'p'), absl::InfinitePast());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat(max + 1, " bytes")));
  EXPECT_TRUE(p.status().ok());  // not sticky: the ring is fine
  // A batch stops at the first frame that is too big with its prefix.
  const std::string fits(max - 16, 'a'), too_big(max - 15, 'b');
  const std::vector<absl::string_view> payloads = {"x", fits, too_big, "never"};
  size_t written = 99;
  s = p.WriteBatch(prefix, payloads, absl::InfinitePast(), &written);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(written, 2u);
  EXPECT_EQ(ReadString(ring), prefix + "x");
  EXPECT_EQ(ReadString(ring), prefix + fits);
  absl::StatusOr<std::optional<std::string>> empty = ring.consumer().TryRead();
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());
}

// Prefixed frames wrap around a small ring many times (padding frames
// included), singly and in batches, byte-exact at every position.
TEST_F(RingTest, PrefixWrapAround) {
  Ring ring = MakeRing(256);
  RingProducer& p = ring.producer();
  const std::string prefix("\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
  uint64_t expected_bytes = 0;
  for (int i = 0; i < 300; ++i) {
    const std::string payload = Pattern(i % 53, i);
    ASSERT_TRUE(p.Write(prefix, payload, absl::InfinitePast()).ok()) << i;
    ASSERT_EQ(ReadString(ring), prefix + payload) << i;
    expected_bytes += prefix.size() + payload.size();
  }
  for (int i = 0; i < 100; ++i) {
    std::vector<std::string> storage;
    for (int j = 0; j < 1 + i % 4; ++j) storage.push_back(Pattern((i * 7 + j) % 29, i + j));
    std::vector<absl::string_view> payloads(storage.begin(), storage.end());
    size_t written = 0;
    ASSERT_TRUE(p.WriteBatch(prefix, payloads, absl::InfinitePast(), &written).ok()) << i;
    ASSERT_EQ(written, storage.size());
    for (const std::string& payload : storage) {
      ASSERT_EQ(ReadString(ring), prefix + payload) << i;
      expected_bytes += prefix.size() + payload.size();
    }
  }
  EXPECT_EQ(p.stats().bytes, expected_bytes);
  // A prefixed batch that fills the ring publishes the frames that fit and
  // reports how many (each frame takes 8 + 16 + 40 = 64 bytes: 4 fit).
  std::vector<std::string> storage(10, std::string(40, 'z'));
  std::vector<absl::string_view> payloads(storage.begin(), storage.end());
  size_t written = 99;
  absl::Status s = p.WriteBatch(prefix, payloads, absl::InfinitePast(), &written);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_GE(written, 3u);
  EXPECT_LE(written, 4u);
  for (size_t i = 0; i < written; ++i) EXPECT_EQ(ReadString(ring), prefix + storage[i]);
  absl::StatusOr<std::optional<std::string>> empty = ring.consumer().TryRead();
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->has_value());
}

// The prefixed batch waits for room like the plain one (a consumer thread
// drains a 512-byte ring while 500 prefixed frames go through it).
TEST_F(RingTest, PrefixWriteBatchLargerThanRing) {
  Ring ring = MakeRing(512);
  const std::string prefix = "<envelope-bytes>";
  std::vector<std::string> storage;
  for (int i = 0; i < 500; ++i) storage.push_back(Pattern(i % 100, i));
  std::vector<absl::string_view> payloads(storage.begin(), storage.end());
  std::thread consumer([&] {
    for (size_t i = 0; i < storage.size(); ++i) {
      absl::StatusOr<std::string> r = ring.consumer().Read(Soon(absl::Seconds(20)));
      ASSERT_TRUE(r.ok()) << r.status();
      ASSERT_EQ(*r, prefix + storage[i]);
    }
  });
  size_t written = 0;
  absl::Status s = ring.producer().WriteBatch(prefix, payloads, Soon(absl::Seconds(20)), &written);
  consumer.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(written, 500u);
}

TEST(AdaptiveSpinTest, GrowsWhenPeerIsActiveShrinksWhenIdle) {
  WaitOptions options;
  options.spin = absl::Microseconds(64);
  options.min_spin = absl::Microseconds(2);
  AdaptiveSpin spin(options);
  EXPECT_EQ(spin.budget(), absl::Microseconds(64));
  for (int i = 0; i < 10; ++i) spin.OnSlept(absl::Seconds(1), true);  // idle
  EXPECT_EQ(spin.budget(), absl::Microseconds(2));
  spin.OnSlept(absl::Milliseconds(5), false);  // timeout: still idle
  EXPECT_EQ(spin.budget(), absl::Microseconds(2));
  spin.OnSlept(absl::Microseconds(20), true);  // answered soon after sleeping
  EXPECT_EQ(spin.budget(), absl::Microseconds(4));
  for (int i = 0; i < 10; ++i) spin.OnSlept(absl::Microseconds(20), true);
  EXPECT_EQ(spin.budget(), absl::Microseconds(64));
}

TEST(AdaptiveSpinTest, FixedPolicies) {
  AdaptiveSpin none(WaitOptions::NoSpin());
  EXPECT_EQ(none.budget(), absl::ZeroDuration());
  none.OnSlept(absl::Microseconds(1), true);
  EXPECT_EQ(none.budget(), absl::ZeroDuration());
  AdaptiveSpin busy(WaitOptions::BusyPoll());
  EXPECT_TRUE(busy.busy_poll());
  EXPECT_EQ(busy.budget(), absl::InfiniteDuration());
  busy.OnSlept(absl::Seconds(1), false);
  EXPECT_EQ(busy.budget(), absl::InfiniteDuration());
  AdaptiveSpin fixed(WaitOptions::FixedSpin(absl::Microseconds(5)));
  fixed.OnSlept(absl::Seconds(1), true);
  EXPECT_EQ(fixed.budget(), absl::Microseconds(5));
  // A zero floor still lets an active peer grow the budget back.
  WaitOptions zero_floor;
  zero_floor.min_spin = absl::ZeroDuration();
  AdaptiveSpin adaptive(zero_floor);
  for (int i = 0; i < 40; ++i) adaptive.OnSlept(absl::Seconds(1), true);
  EXPECT_EQ(adaptive.budget(), absl::ZeroDuration());
  adaptive.OnSlept(absl::Microseconds(10), true);
  EXPECT_EQ(adaptive.budget(), absl::Microseconds(1));
}

TEST(SpinUntilTest, RespectsBudgetAndDeadline) {
  int calls = 0;
  EXPECT_FALSE(
      SpinUntil([&] { return ++calls, false; }, absl::ZeroDuration(), absl::InfiniteFuture()));
  EXPECT_EQ(calls, 0);
  const absl::Time start = absl::Now();
  EXPECT_FALSE(SpinUntil([] { return false; }, absl::Milliseconds(5), absl::InfiniteFuture()));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(5));
  EXPECT_FALSE(SpinUntil([] { return false; }, absl::InfiniteDuration(),
                         absl::Now() + absl::Milliseconds(5)));
  int n = 0;
  EXPECT_TRUE(
      SpinUntil([&] { return ++n == 100; }, absl::InfiniteDuration(), absl::InfiniteFuture()));
}

}  // namespace
}  // namespace ringbuf
