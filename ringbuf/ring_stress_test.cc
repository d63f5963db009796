// Two-thread stress tests of the lock-free protocol, meant to run under
// ThreadSanitizer (bazel test --config=tsan //ringbuf:ring_stress_test).
// Same mapping: TSAN sees every access, so it checks the release/acquire
// pairs on tail and head and the payload hand-off. Two mappings of one
// memfd: the layout exactly as two processes see it (TSAN cannot relate
// the two virtual addresses, so this one checks ordering only by content).
#include <cstring>
#include <random>
#include <string>
#include <thread>
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
using ::ringbuf::testing_internal::kUnderSanitizer;

// Frame `seq`: 8..64 bytes, [seq u64][bytes equal to uint8(seq)].
size_t LengthOf(uint64_t seq) { return 8 + (seq * 2654435761u >> 7) % 57; }

void Fill(uint8_t* p, uint64_t seq) {
  std::memcpy(p, &seq, 8);
  std::memset(p + 8, static_cast<int>(seq & 0xff), LengthOf(seq) - 8);
}

std::string Check(absl::Span<const uint8_t> frame, uint64_t seq) {
  if (frame.size() != LengthOf(seq)) {
    return absl::StrCat("frame ", seq, ": length ", frame.size(), ", expected ", LengthOf(seq));
  }
  uint64_t got;
  std::memcpy(&got, frame.data(), 8);
  if (got != seq) return absl::StrCat("frame ", seq, ": carries sequence ", got);
  for (size_t i = 8; i < frame.size(); ++i) {
    if (frame[i] != static_cast<uint8_t>(seq)) return absl::StrCat("frame ", seq, ": bad byte");
  }
  return "";
}

void Produce(RingProducer& producer, uint64_t frames, absl::Status* result) {
  std::mt19937 rng(7);
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  uint64_t seq = 0;
  uint8_t buffer[64];
  while (seq < frames) {
    absl::Status s;
    switch (rng() % 3) {
      case 0:
        Fill(buffer, seq);
        s = producer.Write(absl::string_view(reinterpret_cast<char*>(buffer), LengthOf(seq)),
                           deadline);
        ++seq;
        break;
      case 1: {
        auto span = producer.Reserve(LengthOf(seq), deadline);
        s = span.status();
        if (s.ok()) {
          Fill(span->data(), seq);
          s = producer.Commit(LengthOf(seq));
        }
        ++seq;
        break;
      }
      default: {
        const uint64_t end = std::min<uint64_t>(frames, seq + 1 + rng() % 16);
        for (; seq < end && s.ok(); ++seq) {
          auto span = producer.Reserve(LengthOf(seq), deadline);
          s = span.status();
          if (!s.ok()) break;
          Fill(span->data(), seq);
          s = producer.CommitNoPublish(LengthOf(seq));
        }
        if (s.ok()) s = producer.Publish();
        break;
      }
    }
    if (!s.ok()) {
      *result = s;
      return;
    }
  }
  producer.Close();
  *result = absl::OkStatus();
}

void Consume(RingConsumer& consumer, uint64_t frames, std::string* error) {
  std::mt19937 rng(9);
  const absl::Time deadline = absl::Now() + absl::Seconds(120);
  uint64_t seq = 0;
  auto check = [&](absl::Span<const uint8_t> frame) {
    if (error->empty()) *error = Check(frame, seq);
    ++seq;
  };
  while (seq < frames && error->empty()) {
    absl::Status s = consumer.Wait(deadline);
    if (s.ok()) {
      if (rng() % 2 == 0) {
        auto p = consumer.Peek();
        s = p.status();
        if (s.ok() && p->has_value()) {
          check(**p);
          s = consumer.Release();
        }
      } else {
        s = consumer.Drain(1 + rng() % 64, check).status();
      }
    }
    if (!s.ok()) {
      *error = absl::StrCat("at frame ", seq, ": ", s.ToString());
      return;
    }
  }
  if (error->empty()) {
    absl::Status end = consumer.Wait(deadline);
    if (!absl::IsOutOfRange(end)) *error = absl::StrCat("expected end of stream: ", end.ToString());
  }
}

void RunStress(RingProducer& producer, RingConsumer& consumer, uint64_t frames) {
  absl::Status produced;
  std::string error;
  const absl::Time start = absl::Now();
  std::thread consumer_thread([&] { Consume(consumer, frames, &error); });
  std::thread producer_thread([&] { Produce(producer, frames, &produced); });
  producer_thread.join();
  consumer_thread.join();
  EXPECT_TRUE(produced.ok()) << produced;
  EXPECT_EQ(error, "");
  EXPECT_EQ(consumer.stats().frames, frames);
  const RingStats p = producer.stats();
  const RingStats c = consumer.stats();
  std::printf(
      "%llu frames in %s; producer %llu full/%llu sleeps/%llu rings, "
      "consumer %llu sleeps/%llu rings\n",
      static_cast<unsigned long long>(frames), absl::FormatDuration(absl::Now() - start).c_str(),
      static_cast<unsigned long long>(p.full_events), static_cast<unsigned long long>(p.sleeps),
      static_cast<unsigned long long>(p.doorbells_rung), static_cast<unsigned long long>(c.sleeps),
      static_cast<unsigned long long>(c.doorbells_rung));
}

constexpr uint64_t kFrames = kUnderSanitizer ? 100'000 : 1'000'000;

TEST(RingStressTest, TwoThreadsSameMapping) {
  absl::StatusOr<Ring> ring = Ring::Create(4096);
  ASSERT_TRUE(ring.ok());
  RunStress(ring->producer(), ring->consumer(), kFrames);
}

TEST(RingStressTest, TwoThreadsTwoMappings) {
  absl::StatusOr<Ring> a = Ring::Create(4096);
  ASSERT_TRUE(a.ok());
  absl::StatusOr<Ring> b = AttachSecondMapping(*a, RingEnd::kConsumer);
  ASSERT_TRUE(b.ok()) << b.status();
  RunStress(a->producer(), b->consumer(), kFrames);
}

// Never spinning sends every empty/full transition through the Dekker
// handshake and the doorbells: a lost wake-up would hang here.
TEST(RingStressTest, TwoThreadsNoSpinSameMapping) {
  absl::StatusOr<Ring> ring = Ring::Create(1024, WaitOptions::NoSpin());
  ASSERT_TRUE(ring.ok());
  RunStress(ring->producer(), ring->consumer(), kUnderSanitizer ? 20'000 : 100'000);
}

TEST(RingStressTest, TwoThreadsTinyRingShortSpinTwoMappings) {
  absl::StatusOr<Ring> a = Ring::Create(256, WaitOptions::FixedSpin(absl::Microseconds(1)));
  ASSERT_TRUE(a.ok());
  absl::StatusOr<Ring> b =
      AttachSecondMapping(*a, RingEnd::kConsumer, WaitOptions::FixedSpin(absl::Microseconds(1)));
  ASSERT_TRUE(b.ok());
  RunStress(a->producer(), b->consumer(), kUnderSanitizer ? 20'000 : 200'000);
}

}  // namespace
}  // namespace ringbuf
