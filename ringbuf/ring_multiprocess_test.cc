// Cross-process streaming over a ring: a fork'd child maps its own dup of
// the memfd, attaches with a dup of its doorbell end (as a peer that
// received them over a socket would), and streams or checks 200k frames of random
// sizes through wrap-around and full/empty states, in both directions.
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "ringbuf/internal/test_util.h"
#include "ringbuf/ring.h"

namespace ringbuf {
namespace {

using ::ringbuf::testing_internal::AttachSecondMapping;
using ::ringbuf::testing_internal::CountOpenFds;
using ::ringbuf::testing_internal::Fnv1a;
using ::ringbuf::testing_internal::kUnderSanitizer;
using ::ringbuf::testing_internal::RunInChild;

constexpr size_t kCapacity = 16 * 1024;
constexpr uint64_t kFrames = kUnderSanitizer ? 50'000 : 200'000;
constexpr uint64_t kSeed = 0x5eed;

// Frame i's length: mostly small, some medium, a few up to the maximum
// (including exactly 0 and exactly the maximum).
size_t NextLength(std::mt19937_64& rng, size_t max) {
  const uint64_t r = rng();
  const uint64_t bucket = r % 100;
  if (bucket < 2) return 0;
  if (bucket < 3) return max;
  if (bucket < 5) return (r >> 8) % (max + 1);
  if (bucket < 30) return (r >> 8) % 1025;
  return (r >> 8) % 65;
}

// Frame contents: [seq u64][FNV-1a of the rest u64][pseudo-random bytes]
// for frames of 16+ bytes; shorter frames are pseudo-random bytes only.
void FillFrame(uint8_t* p, size_t len, uint64_t seq) {
  uint64_t x = seq * 0x9e3779b97f4a7c15ULL + 1;
  const size_t body = len >= 16 ? 16 : 0;
  for (size_t i = body; i < len; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = static_cast<uint8_t>(x);
  }
  if (len >= 16) {
    const uint64_t hash = Fnv1a(p + 16, len - 16);
    std::memcpy(p, &seq, 8);
    std::memcpy(p + 8, &hash, 8);
  }
}

// Returns "" if `frame` is frame `seq` of length `len`, else what is wrong.
std::string CheckFrame(absl::Span<const uint8_t> frame, size_t len, uint64_t seq,
                       std::vector<uint8_t>& scratch) {
  if (frame.size() != len) {
    return absl::StrCat("frame ", seq, ": length ", frame.size(), ", expected ", len);
  }
  // Copy out of shared memory before checking (the peer could still write).
  std::vector<uint8_t> copy(frame.begin(), frame.end());
  if (len >= 16) {
    uint64_t got_seq, got_hash;
    std::memcpy(&got_seq, copy.data(), 8);
    std::memcpy(&got_hash, copy.data() + 8, 8);
    if (got_seq != seq) return absl::StrCat("frame ", seq, ": carries sequence ", got_seq);
    if (got_hash != Fnv1a(copy.data() + 16, len - 16)) {
      return absl::StrCat("frame ", seq, ": checksum mismatch");
    }
  }
  scratch.resize(len);
  FillFrame(scratch.data(), len, seq);
  if (len > 0 && std::memcmp(scratch.data(), copy.data(), len) != 0) {
    return absl::StrCat("frame ", seq, ": contents differ");
  }
  return "";
}

// Streams `frames` frames, mixing the copy, zero-copy and batch APIs and
// pausing now and then so the consumer drains the ring and sleeps; then
// closes. Returns 0 or a nonzero code after printing the reason.
int Produce(RingProducer& producer, uint64_t frames) {
  std::mt19937_64 lengths(kSeed);
  std::mt19937_64 choices(kSeed + 1);
  const size_t max = producer.MaxFrameSize();
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  std::vector<uint8_t> buffer(max);
  std::vector<std::string> batch;
  uint64_t seq = 0;
  while (seq < frames) {
    if (choices() % 4000 == 0) absl::SleepFor(absl::Milliseconds(1));
    absl::Status s;
    switch (choices() % 4) {
      case 0: {
        const size_t len = NextLength(lengths, max);
        FillFrame(buffer.data(), len, seq);
        s = producer.Write(absl::string_view(reinterpret_cast<const char*>(buffer.data()), len),
                           deadline);
        ++seq;
        break;
      }
      case 1: {
        const size_t len = NextLength(lengths, max);
        absl::StatusOr<absl::Span<uint8_t>> span = producer.Reserve(len, deadline);
        s = span.status();
        if (s.ok()) {
          FillFrame(span->data(), len, seq);
          s = producer.Commit(len);
        }
        ++seq;
        break;
      }
      case 2: {
        batch.clear();
        const uint64_t n = std::min<uint64_t>(1 + choices() % 16, frames - seq);
        for (uint64_t i = 0; i < n; ++i) {
          const size_t len = NextLength(lengths, max);
          std::string frame(len, '\0');
          FillFrame(reinterpret_cast<uint8_t*>(frame.data()), len, seq + i);
          batch.push_back(std::move(frame));
        }
        std::vector<absl::string_view> views(batch.begin(), batch.end());
        size_t written = 0;
        s = producer.WriteBatch(views, deadline, &written);
        if (s.ok() && written != n) s = absl::InternalError("short batch");
        seq += n;
        break;
      }
      default: {
        const uint64_t n = std::min<uint64_t>(1 + choices() % 8, frames - seq);
        for (uint64_t i = 0; i < n && s.ok(); ++i) {
          const size_t len = NextLength(lengths, max);
          absl::StatusOr<absl::Span<uint8_t>> span = producer.Reserve(len, deadline);
          s = span.status();
          if (!s.ok()) break;
          FillFrame(span->data(), len, seq + i);
          s = producer.CommitNoPublish(len);
        }
        if (s.ok()) s = producer.Publish();
        seq += n;
        break;
      }
    }
    if (!s.ok()) {
      std::fprintf(stderr, "producer: frame %llu: %s\n", static_cast<unsigned long long>(seq),
                   s.ToString().c_str());
      return 2;
    }
  }
  producer.Close();
  return 0;
}

// Receives and checks `frames` frames, then expects end of stream.
int Consume(RingConsumer& consumer, uint64_t frames) {
  std::mt19937_64 lengths(kSeed);
  std::mt19937_64 choices(kSeed + 2);
  const size_t max = consumer.MaxFrameSize();
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  std::vector<uint8_t> scratch;
  uint64_t seq = 0;
  std::string error;
  auto check = [&](absl::Span<const uint8_t> frame) {
    const size_t len = NextLength(lengths, max);
    if (error.empty()) error = CheckFrame(frame, len, seq, scratch);
    ++seq;
  };
  while (seq < frames && error.empty()) {
    if (choices() % 4000 == 0) absl::SleepFor(absl::Milliseconds(1));
    absl::Status s = consumer.Wait(deadline);
    if (!s.ok()) {
      std::fprintf(stderr, "consumer: wait at frame %llu: %s\n",
                   static_cast<unsigned long long>(seq), s.ToString().c_str());
      return 3;
    }
    switch (choices() % 4) {
      case 0: {
        absl::StatusOr<std::optional<std::string>> r = consumer.TryRead();
        s = r.status();
        if (s.ok() && r->has_value()) {
          check(absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>((*r)->data()),
                                          (*r)->size()));
        }
        break;
      }
      case 1: {
        auto p = consumer.Peek();
        s = p.status();
        if (s.ok() && p->has_value()) {
          check(**p);
          s = consumer.Release();
        }
        break;
      }
      case 2: {
        absl::StatusOr<size_t> n = consumer.Drain(1 + choices() % 32, check);
        s = n.status();
        break;
      }
      default: {
        absl::StatusOr<std::string> r = consumer.Read(deadline);
        s = r.status();
        if (s.ok()) {
          check(absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(r->data()), r->size()));
        }
        break;
      }
    }
    if (!s.ok()) {
      std::fprintf(stderr, "consumer: frame %llu: %s\n", static_cast<unsigned long long>(seq),
                   s.ToString().c_str());
      return 4;
    }
  }
  if (!error.empty()) {
    std::fprintf(stderr, "consumer: %s\n", error.c_str());
    return 5;
  }
  const absl::Status end = consumer.Wait(deadline);
  if (!absl::IsOutOfRange(end)) {
    std::fprintf(stderr, "consumer: expected end of stream, got %s\n", end.ToString().c_str());
    return 6;
  }
  if (consumer.stats().frames != frames) return 7;
  return 0;
}

class MultiProcessTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override { fds_before_ = CountOpenFds(); }
  void TearDown() override { EXPECT_EQ(CountOpenFds(), fds_before_) << "fd leak"; }

  // The parametrized wait policy: 0 adaptive (default), 1 never spin (every
  // empty/full state goes through the doorbells). Busy-poll is left to the
  // benchmark: with tests running in parallel on two cores, two spinning
  // processes can share one core and hand over once per time slice.
  WaitOptions Options() const { return GetParam() == 1 ? WaitOptions::NoSpin() : WaitOptions(); }
  // Sleeping on every empty/full state is slow; stream less then.
  uint64_t Frames() const { return GetParam() == 1 ? kFrames / 4 : kFrames; }
  int fds_before_ = 0;
};

TEST_P(MultiProcessTest, ParentProducesChildConsumes) {
  absl::StatusOr<Ring> ring = Ring::Create(kCapacity, Options());
  ASSERT_TRUE(ring.ok()) << ring.status();
  const WaitOptions options = Options();
  const uint64_t frames = Frames();
  const absl::Time start = absl::Now();
  const pid_t pid = testing_internal::ForkChild([&ring, options, frames] {
    absl::StatusOr<Ring> attached = AttachSecondMapping(*ring, RingEnd::kConsumer, options);
    if (!attached.ok()) return 10;
    return Consume(attached->consumer(), frames);
  });
  const int produced = Produce(ring->producer(), frames);
  EXPECT_EQ(testing_internal::WaitChild(pid), 0);
  EXPECT_EQ(produced, 0);
  const RingStats stats = ring->producer().stats();
  std::printf("%llu frames, %llu bytes in %s; producer: %llu full, %llu sleeps, %llu rings\n",
              static_cast<unsigned long long>(stats.frames),
              static_cast<unsigned long long>(stats.bytes),
              absl::FormatDuration(absl::Now() - start).c_str(),
              static_cast<unsigned long long>(stats.full_events),
              static_cast<unsigned long long>(stats.sleeps),
              static_cast<unsigned long long>(stats.doorbells_rung));
  EXPECT_EQ(stats.frames, frames);
  EXPECT_GT(stats.full_events, 0u);  // the consumer's pauses filled the ring
}

TEST_P(MultiProcessTest, ChildProducesParentConsumes) {
  absl::StatusOr<Ring> ring = Ring::Create(kCapacity, Options());
  ASSERT_TRUE(ring.ok()) << ring.status();
  const WaitOptions options = Options();
  const uint64_t frames = Frames();
  const pid_t pid = testing_internal::ForkChild([&ring, options, frames] {
    absl::StatusOr<Ring> attached = AttachSecondMapping(*ring, RingEnd::kProducer, options);
    if (!attached.ok()) return 10;
    return Produce(attached->producer(), frames);
  });
  EXPECT_EQ(Consume(ring->consumer(), frames), 0);
  EXPECT_EQ(testing_internal::WaitChild(pid), 0);
}

// Request/response across processes, one ring per direction: the child
// echoes every frame back. Exercises sleep/wake in both directions.
TEST_P(MultiProcessTest, EchoOverTwoRings) {
  const int kMessages = kUnderSanitizer ? 2000 : 20000;
  absl::StatusOr<Ring> to_child = Ring::Create(4096, Options());
  absl::StatusOr<Ring> to_parent = Ring::Create(4096, Options());
  ASSERT_TRUE(to_child.ok() && to_parent.ok());
  const WaitOptions options = Options();
  const pid_t pid = testing_internal::ForkChild([&, options] {
    absl::StatusOr<Ring> in = AttachSecondMapping(*to_child, RingEnd::kConsumer, options);
    absl::StatusOr<Ring> out = AttachSecondMapping(*to_parent, RingEnd::kProducer, options);
    if (!in.ok() || !out.ok()) return 10;
    for (;;) {
      absl::StatusOr<std::string> r = in->consumer().Read(absl::InfiniteFuture());
      if (absl::IsOutOfRange(r.status())) break;
      if (!r.ok()) return 11;
      if (!out->producer().Write(*r, absl::InfiniteFuture()).ok()) return 12;
    }
    out->producer().Close();
    return 0;
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  for (int i = 0; i < kMessages; ++i) {
    const std::string message = absl::StrCat("message ", i, std::string(i % 100, '.'));
    ASSERT_TRUE(to_child->producer().Write(message, deadline).ok());
    absl::StatusOr<std::string> reply = to_parent->consumer().Read(deadline);
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(*reply, message);
  }
  to_child->producer().Close();
  EXPECT_EQ(to_parent->consumer().Read(deadline).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(testing_internal::WaitChild(pid), 0);
}

INSTANTIATE_TEST_SUITE_P(WaitPolicies, MultiProcessTest, ::testing::Values(0, 1),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == 1 ? "NoSpin" : "Adaptive");
                         });

}  // namespace
}  // namespace ringbuf
