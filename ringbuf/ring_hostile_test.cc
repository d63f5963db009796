// The peer is hostile: it writes anything into the shared region at any
// time. These tests corrupt the header and frames through a second mapping
// (as the peer process would) and check that the endpoints fail with
// DATA_LOSS, consistently, without crashing, reading out of bounds, or
// looping forever.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ringbuf/internal/test_util.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"
#include "ringbuf/ring_layout.h"

namespace ringbuf {
namespace {

using ::ringbuf::testing_internal::AttachSecondMapping;
using ::ringbuf::testing_internal::CountOpenFds;
using ::ringbuf::testing_internal::ForkChild;
using ::ringbuf::testing_internal::kUnderSanitizer;
using ::ringbuf::testing_internal::MapRawOrDie;
using ::ringbuf::testing_internal::WaitChild;
using ::testing::HasSubstr;

constexpr size_t kCapacity = 1024;

// A ring plus a second, raw mapping of its memfd to play the hostile peer.
class HostileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = CountOpenFds();
    absl::StatusOr<Ring> ring = Ring::Create(kCapacity);
    ASSERT_TRUE(ring.ok()) << ring.status();
    ring_.emplace(std::move(*ring));
    raw_.emplace(MapRawOrDie(*ring_));
    header_ = reinterpret_cast<RingHeader*>(raw_->data());
    data_ = raw_->data() + kRingHeaderSize;
  }
  void TearDown() override {
    raw_.reset();
    ring_.reset();
    EXPECT_EQ(CountOpenFds(), fds_before_) << "fd leak";
  }

  RingProducer& producer() { return ring_->producer(); }
  RingConsumer& consumer() { return ring_->consumer(); }

  void Write(size_t len) {
    ASSERT_TRUE(producer().Write(std::string(len, 'w'), absl::InfinitePast()).ok());
  }
  void ReadOne() {
    auto r = consumer().TryRead();
    ASSERT_TRUE(r.ok() && r->has_value()) << r.status();
  }
  void SetFrameWord(uint64_t index, uint64_t len, uint32_t type) {
    const uint64_t word = len | (uint64_t{type} << 32);
    std::memcpy(data_ + (index & (kCapacity - 1)), &word, 8);
  }

  // Every consumer entry point now reports the same DATA_LOSS, the ring is
  // marked closed by the consumer, and the (honest) producer stops.
  void ExpectConsumerFailed(const std::string& what, bool check_producer = true) {
    const absl::Status first = consumer().status();
    EXPECT_EQ(first.code(), absl::StatusCode::kDataLoss) << first;
    EXPECT_THAT(first.message(), HasSubstr(what));
    EXPECT_EQ(consumer().Peek().status(), first);
    EXPECT_EQ(consumer().TryRead().status(), first);
    EXPECT_EQ(consumer().Wait(absl::InfiniteFuture()), first);
    EXPECT_EQ(consumer().Read(absl::InfiniteFuture()).status(), first);
    EXPECT_EQ(consumer().Release(), first);
    EXPECT_EQ(consumer().Drain(10, [](absl::Span<const uint8_t>) {}).status(), first);
    EXPECT_FALSE(consumer().PrepareToSleep());
    EXPECT_NE(header_->closed.load() & kRingConsumerClosed, 0u);
    if (check_producer) {
      EXPECT_EQ(producer().Write("x", absl::InfinitePast()).code(),
                absl::StatusCode::kFailedPrecondition);
    }
  }
  void ExpectConsumerFailsWith(const std::string& what, bool check_producer = true) {
    auto r = consumer().Peek();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
    ExpectConsumerFailed(what, check_producer);
  }
  // A write that does not fit in a full ring, so it re-reads head.
  absl::Status WriteBig(absl::Time deadline = absl::InfinitePast()) {
    return producer().Write(std::string(100, 'b'), deadline);
  }

  void ExpectProducerFailed(const absl::Status& s, const std::string& what) {
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    EXPECT_THAT(s.message(), HasSubstr(what));
    EXPECT_EQ(producer().status(), s);
    EXPECT_EQ(producer().Write("x", absl::InfiniteFuture()), s);
    EXPECT_EQ(producer().Reserve(1, absl::InfiniteFuture()).status(), s);
    EXPECT_EQ(producer().Commit(0), s);
    EXPECT_EQ(producer().Publish(), s);
    EXPECT_FALSE(producer().PrepareToSleep(1));
    EXPECT_NE(header_->closed.load() & kRingProducerClosed, 0u);
  }

  // Fills the ring so that the next write has to re-read head.
  void Fill() {
    while (producer().Write(std::string(100, 'f'), absl::InfinitePast()).ok()) {
    }
  }

  int fds_before_ = 0;
  std::optional<Ring> ring_;
  std::optional<SharedRegion> raw_;
  RingHeader* header_ = nullptr;
  uint8_t* data_ = nullptr;
};

// ------------------------------------------------------------- Attach

TEST_F(HostileTest, AttachRefusesBadMagic) {
  header_->magic ^= 1;
  absl::StatusOr<Ring> b = AttachSecondMapping(*ring_);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("magic"));
}

TEST_F(HostileTest, AttachRefusesBadVersion) {
  header_->version = kRingVersion + 1;
  absl::StatusOr<Ring> b = AttachSecondMapping(*ring_);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr(absl::StrCat("version ", kRingVersion + 1)));
}

TEST_F(HostileTest, AttachRefusesBadHeaderSize) {
  header_->header_size = 64;
  absl::StatusOr<Ring> b = AttachSecondMapping(*ring_);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("header size"));
}

TEST_F(HostileTest, AttachRefusesBadCapacity) {
  for (uint64_t capacity : {uint64_t{0}, uint64_t{1000}, uint64_t{512}, uint64_t{2048},
                            uint64_t{1} << 40, ~uint64_t{0}, uint64_t{128}}) {
    header_->capacity = capacity;
    absl::StatusOr<Ring> b = AttachSecondMapping(*ring_);
    EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument) << capacity;
    EXPECT_THAT(b.status().message(), HasSubstr("capacity")) << capacity;
  }
  header_->capacity = kCapacity;
  EXPECT_TRUE(AttachSecondMapping(*ring_).ok());
}

TEST_F(HostileTest, AttachRefusesTinyRegion) {
  absl::StatusOr<SharedRegion> tiny = SharedRegion::Create("tiny", 100);
  ASSERT_TRUE(tiny.ok());
  absl::StatusOr<Ring> b =
      Ring::Attach(std::move(*tiny), testing_internal::DupOrDie(ring_->consumer_doorbell_fd()),
                   RingEnd::kConsumer);
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
}

// ------------------------------------------------------------- consumer

TEST_F(HostileTest, TailMoreThanCapacityAhead) {
  Write(10);
  header_->tail.store(kCapacity + 8);
  ExpectConsumerFailsWith("more than the capacity");
}

TEST_F(HostileTest, TailHuge) {
  header_->tail.store(~uint64_t{7});
  ExpectConsumerFailsWith("more than the capacity");
}

TEST_F(HostileTest, TailMovesBackwards) {
  Write(10);
  Write(10);
  ReadOne();
  ReadOne();
  header_->tail.store(header_->tail.load() - 8);
  ExpectConsumerFailsWith("backwards");
}

TEST_F(HostileTest, TailBelowHead) {
  Write(100);
  ReadOne();
  header_->tail.store(0);
  ExpectConsumerFailsWith("backwards");
}

TEST_F(HostileTest, TailMisaligned) {
  Write(10);
  header_->tail.store(header_->tail.load() + 3);
  ExpectConsumerFailsWith("aligned");
}

TEST_F(HostileTest, FrameLengthOverMax) {
  Write(10);
  SetFrameWord(0, MaxFrameSizeForCapacity(kCapacity) + 1, kFrameTypeData);
  ExpectConsumerFailsWith("maximum");
}

TEST_F(HostileTest, FrameLengthHuge) {
  Write(10);
  SetFrameWord(0, 0xffffffffu, kFrameTypeData);
  ExpectConsumerFailsWith("maximum");
}

TEST_F(HostileTest, FrameRunsPastTail) {
  Write(16);
  SetFrameWord(0, 200, kFrameTypeData);
  ExpectConsumerFailsWith("runs past tail");
}

TEST_F(HostileTest, UnknownFrameType) {
  Write(16);
  SetFrameWord(0, 16, 0x12345678);
  ExpectConsumerFailsWith("unknown frame type");
}

TEST_F(HostileTest, PaddingWithWrongLength) {
  Write(16);
  SetFrameWord(0, 16, kFrameTypePadding);
  ExpectConsumerFailsWith("padding frame");
}

TEST_F(HostileTest, PaddingPastTail) {
  Write(16);
  // A padding frame that claims to run to the end, but tail is at 24.
  SetFrameWord(0, kCapacity - 8, kFrameTypePadding);
  ExpectConsumerFailsWith("runs past tail");
}

TEST_F(HostileTest, FrameCrossesEndOfBuffer) {
  const size_t max = MaxFrameSizeForCapacity(kCapacity);  // 504: 512 bytes each
  // Move head and tail to 1008 = capacity - 16.
  Write(max - 8);
  ReadOne();
  Write(max - 8);
  ReadOne();
  ASSERT_EQ(header_->tail.load(), kCapacity - 16);
  SetFrameWord(kCapacity - 16, 100, kFrameTypeData);
  header_->tail.store(kCapacity - 16 + 128);
  ExpectConsumerFailsWith("crosses the end");
}

TEST_F(HostileTest, ClosedWordGarbage) {
  header_->closed.store(0x100);
  // (The producer fails on the same garbage word, so it is not checked.)
  ExpectConsumerFailsWith("closed word", /*check_producer=*/false);
  EXPECT_EQ(producer().Write("x", absl::InfinitePast()).code(), absl::StatusCode::kDataLoss);
}

TEST_F(HostileTest, ProducerWaitingGarbage) {
  Write(8);
  header_->producer_waiting.store(77);
  EXPECT_EQ(consumer().TryRead().status().code(), absl::StatusCode::kDataLoss);
  ExpectConsumerFailed("producer_waiting");
}

// A frame the peer rewrites after Peek() does not move the span: the
// returned span stays inside the ring (callers must still copy first).
TEST_F(HostileTest, RewriteAfterPeekDoesNotMoveSpan) {
  Write(16);
  auto p = consumer().Peek();
  ASSERT_TRUE(p.ok() && p->has_value());
  SetFrameWord(0, 500, kFrameTypeData);
  auto q = consumer().Peek();
  ASSERT_TRUE(q.ok() && q->has_value());
  EXPECT_EQ((*q)->size(), 16u);
  EXPECT_TRUE(consumer().Release().ok());
}

// ------------------------------------------------------------- producer

TEST_F(HostileTest, HeadBeyondTail) {
  Fill();
  header_->head.store(header_->tail.load() + 8);
  ExpectProducerFailed(WriteBig(), "beyond the published tail");
}

TEST_F(HostileTest, HeadMovesBackwards) {
  Fill();
  ReadOne();
  ReadOne();
  Fill();  // re-reads head: cached head is now past 0
  header_->head.store(0);
  ExpectProducerFailed(WriteBig(), "backwards");
}

TEST_F(HostileTest, HeadMisaligned) {
  Fill();
  header_->head.store(5);
  ExpectProducerFailed(WriteBig(), "aligned");
}

TEST_F(HostileTest, ConsumerWaitingGarbage) {
  header_->consumer_waiting.store(0xdead);
  ExpectProducerFailed(producer().Write("x", absl::InfinitePast()), "consumer_waiting");
}

// The producer sleeps on a full ring; the peer corrupts head and rings the
// producer (a byte from the consumer's end of the doorbell).
TEST_F(HostileTest, HeadCorruptWhileProducerWaits) {
  Fill();
  const uint64_t tail = header_->tail.load();
  std::thread peer([this, tail] {
    absl::SleepFor(absl::Milliseconds(20));
    header_->head.store(tail + 64);
    // The consumer's end rings the producer's.
    EXPECT_EQ(::send(ring_->consumer_doorbell_fd(), "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL), 1);
  });
  const absl::Time start = absl::Now();
  const absl::Status s = WriteBig(start + absl::Seconds(10));
  peer.join();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ExpectProducerFailed(s, "beyond");
}

// ------------------------------------------------------------- doorbells
//
// A doorbell end received with SCM_RIGHTS shares its open file description
// with the sender, and with it the file status flags: the peer can clear
// O_NONBLOCK on "our" end and fill the socket buffers, then ask for a
// doorbell (a waiting flag) so that a send that trusts the flags blocks for
// ever. Ringing and draining must not depend on them (MSG_DONTWAIT). Each
// test runs the victim's calls in a forked child under alarm(), so that a
// regression fails the test instead of hanging it.

constexpr unsigned kWatchdogSeconds = 10;

// Clears O_NONBLOCK on the file description behind `fd`, as a peer holding
// any copy of it can.
void ClearNonblock(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  ASSERT_GE(flags, 0);
  ASSERT_EQ(::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK), 0);
}

// Sends from `fd` without waiting until its buffers are full (EAGAIN even
// for one byte). Returns the bytes sent.
size_t FillFrom(int fd) {
  const std::string chunk(64 * 1024, 'z');
  size_t total = 0;
  for (size_t len = chunk.size(); len > 0;) {
    const ssize_t n = ::send(fd, chunk.data(), len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      total += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      len /= 2;  // 0 after a 1-byte send failed: full
    } else {
      ADD_FAILURE() << "send: " << std::strerror(errno);
      break;
    }
  }
  return total;
}

class HostileDoorbellTest : public HostileTest {
 protected:
  void TearDown() override {
    peer_consumer_end_.reset();
    peer_producer_end_.reset();
    HostileTest::TearDown();
  }

  // The peer's copies of both ends (as SCM_RIGHTS gives them: sharing the
  // file descriptions) made blocking and full in both directions, their
  // bytes never read.
  void MakeDoorbellsHostile() {
    peer_consumer_end_ = testing_internal::DupOrDie(ring_->consumer_doorbell_fd());
    peer_producer_end_ = testing_internal::DupOrDie(ring_->producer_doorbell_fd());
    ClearNonblock(peer_consumer_end_.get());
    ClearNonblock(peer_producer_end_.get());
    // Our own descriptors changed with them.
    for (int fd : {ring_->producer_doorbell_fd(), ring_->consumer_doorbell_fd()}) {
      EXPECT_EQ(::fcntl(fd, F_GETFL) & O_NONBLOCK, 0) << "fd " << fd;
    }
    EXPECT_GT(FillFrom(peer_producer_end_.get()), 0u);  // the producer's sends
    EXPECT_GT(FillFrom(peer_consumer_end_.get()), 0u);  // the consumer's sends
    // A send from either end now waits (only MSG_DONTWAIT saves it).
    for (int fd : {ring_->producer_doorbell_fd(), ring_->consumer_doorbell_fd()}) {
      errno = 0;
      EXPECT_EQ(::send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL), -1) << "fd " << fd;
      EXPECT_TRUE(errno == EAGAIN || errno == EWOULDBLOCK) << std::strerror(errno);
    }
  }

  // Runs `body` in a forked child that SIGALRM kills after
  // kWatchdogSeconds; returns its exit code (128 + SIGALRM if it hung).
  static int RunWithWatchdog(const std::function<int()>& body) {
    return testing_internal::RunInChild([&body] {
      ::alarm(kWatchdogSeconds);
      return body();
    });
  }

  base::UniqueFd peer_consumer_end_;
  base::UniqueFd peer_producer_end_;
};

TEST_F(HostileDoorbellTest, ProducerNeverBlocksRingingAFullBlockingDoorbell) {
  MakeDoorbellsHostile();
  const int code = RunWithWatchdog([this] {
    const absl::Time start = absl::Now();
    // Every publish finds the consumer "asleep" and rings.
    header_->consumer_waiting.store(1);
    if (!producer().Write("one", absl::InfinitePast()).ok()) return 2;
    header_->consumer_waiting.store(1);
    if (!producer().Reserve(8, absl::InfinitePast()).ok()) return 3;
    if (!producer().CommitNoPublish(8).ok()) return 4;
    if (!producer().Publish().ok()) return 5;
    header_->consumer_waiting.store(1);
    const absl::string_view batch[] = {"a", "b", "c"};
    if (!producer().WriteBatch(batch, absl::InfinitePast()).ok()) return 6;
    if (producer().stats().doorbells_rung != 3) return 7;  // it did try every time
    // Sleeping on a full ring drains (MSG_DONTWAIT) and times out.
    while (producer().Write(std::string(100, 'f'), absl::InfinitePast()).ok()) {
    }
    if (!absl::IsResourceExhausted(
            producer().Write(std::string(100, 'f'), absl::Now() + absl::Milliseconds(20)))) {
      return 8;
    }
    producer().Close();  // rings once more
    if (absl::Now() - start > absl::Seconds(2)) return 9;
    return 0;
  });
  EXPECT_EQ(code, 0) << (code == 128 + SIGALRM ? "the producer blocked on the doorbell" : "");
}

TEST_F(HostileDoorbellTest, ConsumerNeverBlocksRingingAFullBlockingDoorbell) {
  for (int i = 0; i < 4; ++i) Write(10);
  MakeDoorbellsHostile();
  const int code = RunWithWatchdog([this] {
    const absl::Time start = absl::Now();
    // Every head publish finds the producer "asleep" and rings.
    header_->producer_waiting.store(1);
    auto r = consumer().TryRead();
    if (!r.ok() || !r->has_value()) return 2;
    header_->producer_waiting.store(1);
    auto p = consumer().Peek();
    if (!p.ok() || !p->has_value()) return 3;
    if (!consumer().ReleaseNoPublish().ok()) return 4;
    if (!consumer().Publish().ok()) return 5;
    header_->producer_waiting.store(1);
    absl::StatusOr<size_t> n = consumer().Drain(10, [](absl::Span<const uint8_t>) {});
    if (!n.ok() || *n != 2) return 6;
    if (consumer().stats().doorbells_rung != 3) return 7;
    // Its own end keeps being rung (full of the producer's bytes): waiting
    // on an empty ring drains without blocking and times out.
    if (!absl::IsDeadlineExceeded(consumer().Wait(absl::Now() + absl::Milliseconds(20)))) return 8;
    if (!consumer().DrainDoorbell().ok()) return 9;
    consumer().Close();  // rings once more
    if (absl::Now() - start > absl::Seconds(2)) return 10;
    return 0;
  });
  EXPECT_EQ(code, 0) << (code == 128 + SIGALRM ? "the consumer blocked on the doorbell" : "");
}

// ------------------------------------------------------------- randomized

bool Allowed(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

// Reads from `consumer` until it reports empty or an error, checking every
// span lies inside the data area of `region`. Returns false if it did not
// stop within the number of frames the ring can possibly hold.
bool ReadUntilStopped(RingConsumer& consumer, const SharedRegion& region, size_t capacity) {
  const uint8_t* begin = region.data() + kRingHeaderSize;
  const uint8_t* end = begin + capacity;
  std::string copy;
  for (size_t i = 0; i < capacity / kFrameHeaderSize + 2; ++i) {
    auto p = consumer.Peek();
    if (!p.ok()) {
      EXPECT_TRUE(Allowed(p.status())) << p.status();
      return true;
    }
    if (!p->has_value()) return true;
    const absl::Span<const uint8_t> span = **p;
    EXPECT_GE(span.data(), begin);
    EXPECT_LE(span.data() + span.size(), end);
    EXPECT_LE(span.size(), consumer.MaxFrameSize());
    copy.assign(reinterpret_cast<const char*>(span.data()), span.size());
    const absl::Status s = consumer.Release();
    if (!s.ok()) {
      EXPECT_TRUE(Allowed(s)) << s;
      return true;
    }
  }
  return false;
}

TEST(HostileRandomTest, RandomCorruptionNeverCrashesOrLoops) {
  const int iterations = kUnderSanitizer ? 1500 : 4000;
  std::mt19937_64 rng(20240601);
  const int fds_before = CountOpenFds();
  int data_loss = 0;
  for (int iter = 0; iter < iterations; ++iter) {
    const size_t capacity = (iter % 2 == 0) ? 256 : 1024;
    absl::StatusOr<Ring> made = Ring::Create(capacity);
    ASSERT_TRUE(made.ok()) << made.status();
    Ring ring = std::move(*made);
    SharedRegion raw = MapRawOrDie(ring);
    auto* header = reinterpret_cast<RingHeader*>(raw.data());
    uint8_t* data = raw.data() + kRingHeaderSize;
    // Honest traffic first, so frames and padding exist at varied offsets.
    const int frames = rng() % 20;
    for (int i = 0; i < frames; ++i) {
      const size_t len = rng() % (ring.MaxFrameSize() + 1);
      (void)ring.producer().Write(std::string(len, 'h'), absl::InfinitePast());
      if (rng() % 3 == 0) (void)ring.consumer().TryRead();
    }
    // Corrupt.
    const int writes = 1 + rng() % 6;
    for (int w = 0; w < writes; ++w) {
      switch (rng() % 7) {
        case 0: {  // a random byte anywhere
          raw.data()[rng() % raw.size()] = static_cast<uint8_t>(rng());
          break;
        }
        case 1: {  // a random aligned word in the data
          const uint64_t v = rng();
          std::memcpy(data + (rng() % (capacity / 8)) * 8, &v, 8);
          break;
        }
        case 2: {  // a plausible-looking frame header
          const uint64_t len = rng() % (capacity + 16);
          const uint32_t type = (rng() % 2) ? kFrameTypeData : kFrameTypePadding;
          const uint64_t v = len | (uint64_t{type} << 32);
          std::memcpy(data + (rng() % (capacity / 8)) * 8, &v, 8);
          break;
        }
        case 3:  // tail nudged
          header->tail.store(header->tail.load() + (rng() % 64) - 32);
          break;
        case 4:  // head nudged
          header->head.store(header->head.load() + (rng() % 64) - 32);
          break;
        case 5: {  // a random byte in the header
          raw.data()[rng() % kRingHeaderSize] = static_cast<uint8_t>(rng());
          break;
        }
        default: {  // a random value in a header word
          const uint64_t v = rng() % 4 == 0 ? rng() : rng() % 4;
          std::memcpy(raw.data() + (rng() % (kRingHeaderSize / 8)) * 8, &v, 8);
          break;
        }
      }
    }
    // Read through the original endpoint, or through a fresh Attach (which
    // may refuse the header).
    if (rng() % 2 == 0) {
      ASSERT_TRUE(ReadUntilStopped(ring.consumer(), ring.region(), capacity)) << iter;
      if (absl::IsDataLoss(ring.consumer().status())) ++data_loss;
    } else {
      absl::StatusOr<Ring> attached = AttachSecondMapping(ring, RingEnd::kConsumer);
      if (attached.ok()) {
        ASSERT_TRUE(ReadUntilStopped(attached->consumer(), attached->region(), capacity)) << iter;
        absl::StatusOr<Ring> producer = AttachSecondMapping(ring, RingEnd::kProducer);
        ASSERT_TRUE(producer.ok()) << producer.status();  // the header was accepted above
        for (int i = 0; i < 4; ++i) {
          EXPECT_TRUE(Allowed(producer->producer().Write("p", absl::InfinitePast())));
        }
      } else {
        EXPECT_EQ(attached.status().code(), absl::StatusCode::kInvalidArgument);
      }
    }
    for (int i = 0; i < 4; ++i) {
      EXPECT_TRUE(
          Allowed(ring.producer().Write(std::string(rng() % 64, 'p'), absl::InfinitePast())));
    }
    EXPECT_TRUE(Allowed(ring.consumer().Wait(absl::InfinitePast())));
  }
  EXPECT_GT(data_loss, iterations / 20);
  EXPECT_EQ(CountOpenFds(), fds_before);
}

// A hostile peer *process* scribbling over the region while we use it.
TEST(HostileRandomTest, ScribblingPeerProcess) {
  const int rounds = kUnderSanitizer ? 4 : 10;
  const int fds_before = CountOpenFds();
  for (int round = 0; round < rounds; ++round) {
    absl::StatusOr<Ring> made = Ring::Create(1024, WaitOptions::FixedSpin(absl::Microseconds(5)));
    ASSERT_TRUE(made.ok());
    Ring ring = std::move(*made);
    // The child shares the MAP_SHARED mapping it inherits.
    uint8_t* region = const_cast<uint8_t*>(ring.region().data());
    const size_t size = ring.region_size();
    const pid_t pid = ForkChild([region, size, round] {
      std::mt19937_64 rng(round);
      auto* header = reinterpret_cast<RingHeader*>(region);
      for (uint64_t n = 0;; ++n) {
        switch (rng() % 4) {
          case 0:
            region[kRingHeaderSize + rng() % (size - kRingHeaderSize)] =
                static_cast<uint8_t>(rng());
            break;
          case 1:
            header->tail.store(header->tail.load() + (rng() % 3) * 8);
            break;
          case 2: {
            const uint64_t v = (rng() % 600) | (uint64_t{kFrameTypeData} << 32);
            std::memcpy(region + kRingHeaderSize + (rng() % ((size - kRingHeaderSize) / 8)) * 8, &v,
                        8);
            break;
          }
          default:
            if (n % 1000 == 0) header->head.store(rng() % 4096 * 8);
            break;
        }
        if (n % 64 == 0) absl::SleepFor(absl::Microseconds(10));
      }
      return 0;
    });
    const absl::Time end = absl::Now() + absl::Milliseconds(60);
    std::string copy;
    while (absl::Now() < end) {
      absl::Status w = ring.producer().Write(std::string(20, 'x'), absl::InfinitePast());
      EXPECT_TRUE(Allowed(w)) << w;
      absl::Status s = ring.consumer().Wait(absl::Now() + absl::Microseconds(200));
      EXPECT_TRUE(Allowed(s)) << s;
      auto p = ring.consumer().Peek();
      if (p.ok() && p->has_value()) {
        const uint8_t* begin = ring.region().data() + kRingHeaderSize;
        EXPECT_GE((*p)->data(), begin);
        EXPECT_LE((*p)->data() + (*p)->size(), begin + ring.capacity());
        copy.assign(reinterpret_cast<const char*>((*p)->data()), (*p)->size());
        EXPECT_TRUE(Allowed(ring.consumer().Release()));
      } else if (!p.ok()) {
        EXPECT_TRUE(Allowed(p.status())) << p.status();
      }
      if (!ring.consumer().status().ok() && !ring.producer().status().ok()) break;
    }
    ::kill(pid, SIGKILL);
    EXPECT_EQ(WaitChild(pid), 128 + SIGKILL);
  }
  EXPECT_EQ(CountOpenFds(), fds_before);
}

}  // namespace
}  // namespace ringbuf
