// A producer process SIGKILLed at random points, 1000 times (issue 5): the
// consumer only ever sees whole frames.
//
// One ring lives through all rounds; this process is its consumer. Each
// round fork()s a child that attaches a fresh producer to the same ring
// (Ring::Attach starts it at the published tail, as a restarted peer would)
// and writes frames as fast as it can through every producer API: Write,
// Reserve + Commit, WriteBatch, and Reserve + CommitNoPublish chains ended
// by Publish. Frames carry the round's magic, a sequence number, their
// length and an FNV-1a checksum. The parent kills the child at a random
// point (before its first write, mid-frame, mid-batch, asleep on a full
// ring, while the parent consumes concurrently or not), reaps it, drains
// the ring and checks every frame: whole, in order, no gap, no duplicate.
// The child also counts, in a shared progress block, the frames it handed
// to a producer call (`claimed`) and those whose call returned (`published`):
// the consumer must see at least `published` and at most `claimed` frames.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "ringbuf/internal/test_util.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"
#include "ringbuf/ring_layout.h"

namespace ringbuf {
namespace {

using ::ringbuf::testing_internal::AttachSecondMapping;
using ::ringbuf::testing_internal::CountOpenFds;
using ::ringbuf::testing_internal::Fnv1a;
using ::ringbuf::testing_internal::ForkChild;
using ::ringbuf::testing_internal::kUnderTsan;
using ::ringbuf::testing_internal::WaitChild;

constexpr int kRounds = 1000;
// Small, so frames of up to MaxFrameSize() (8184 bytes) wrap it constantly
// and padding frames are common.
constexpr size_t kCapacity = 16 * 1024;
constexpr uint64_t kMaxBatch = 12;
constexpr uint64_t kSeed = 0x6b696c6c;  // "kill"
// The kill delays follow how fast the child gets going. Measured on a
// loaded 2-core machine, a child publishes its first frame ~80 us after it
// attached on average (~200 us under ASan), but ~1.5 ms under
// ThreadSanitizer (which instruments every byte it fills and checksums), so
// TSAN rounds wait longer.
constexpr uint64_t kDelayScale = kUnderTsan ? 20 : 1;

// What every frame starts with; `checksum` is FNV-1a over the 24 bytes
// before it, then the payload.
struct FrameHeader {
  uint64_t magic;  // RoundMagic(round)
  uint64_t seq;    // 0, 1, 2, ... within the round
  uint32_t payload_len;
  uint32_t api;  // which producer API wrote it (Api), for error messages
  uint64_t checksum;
};
static_assert(sizeof(FrameHeader) == 32);
constexpr size_t kChecksummedHeader = offsetof(FrameHeader, checksum);

enum Api : uint32_t { kWrite, kReserveCommit, kWriteBatch, kReserveChain, kApiCount };
const char* ApiName(uint32_t api) {
  switch (api) {
    case kWrite:
      return "Write";
    case kReserveCommit:
      return "Reserve+Commit";
    case kWriteBatch:
      return "WriteBatch";
    case kReserveChain:
      return "Reserve+CommitNoPublish+Publish";
    default:
      return "unknown API";
  }
}

uint64_t RoundMagic(int round) {
  return (static_cast<uint64_t>(round) + 1) * 0x9e3779b97f4a7c15ULL ^ 0x4b494c4c52494e47ULL;
}

// The child's progress, in a memfd of its own that the child inherits
// across fork() (MAP_SHARED). The parent resets it before each fork and
// reads it after it has reaped the child (waitpid orders every store the
// dead child made before the parent's loads), except for `started`, which
// it polls, and the `published` hint it reads just before the kill.
struct Progress {
  std::atomic<uint32_t> started;    // the producer is attached
  std::atomic<uint64_t> claimed;    // frames handed to producer calls
  std::atomic<uint64_t> published;  // frames whose producer call returned OK
};

// Payload length: 0 and the maximum often (a frame of exactly
// MaxFrameSize()), some anywhere up to the maximum (padding frames,
// wrap-around, a full ring), most small (many frames per round).
size_t PayloadLength(std::mt19937_64& rng, size_t max_payload) {
  const uint64_t r = rng();
  const uint64_t bucket = r % 100;
  if (bucket < 10) return 0;
  if (bucket < 13) return max_payload;
  if (bucket < 30) return (r >> 8) % (max_payload + 1);
  return (r >> 8) % 257;
}

// Writes frame `seq` (header and `payload_len` pseudo-random bytes) at `p`,
// which may be private memory or a reservation in the ring.
void FillFrame(uint8_t* p, uint64_t magic, uint64_t seq, uint32_t payload_len, uint32_t api) {
  FrameHeader header{magic, seq, payload_len, api, 0};
  uint8_t* payload = p + sizeof(FrameHeader);
  uint64_t x = (magic ^ (seq * 0xbf58476d1ce4e5b9ULL)) | 1;
  for (uint32_t i = 0; i < payload_len; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    payload[i] = static_cast<uint8_t>(x);
  }
  header.checksum = Fnv1a(payload, payload_len,
                          Fnv1a(reinterpret_cast<const uint8_t*>(&header), kChecksummedHeader));
  std::memcpy(p, &header, sizeof(header));
}

// The child: writes frames until it is killed, cycling through the producer
// APIs at random. Returns (and so exits) only on an error, after printing it.
int ProduceUntilKilled(RingProducer& producer, Progress& progress, uint64_t magic, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const size_t max_payload = producer.MaxFrameSize() - sizeof(FrameHeader);
  std::vector<std::string> batch(kMaxBatch);
  for (std::string& frame : batch) frame.reserve(producer.MaxFrameSize());
  std::vector<absl::string_view> views;
  views.reserve(kMaxBatch);
  // Relaxed: a flag the parent polls; it publishes no data.
  progress.started.store(1, std::memory_order_relaxed);
  uint64_t seq = 0;
  for (;;) {
    const uint32_t api = static_cast<uint32_t>(rng() % kApiCount);
    const uint64_t n = (api == kWriteBatch || api == kReserveChain) ? 1 + rng() % kMaxBatch : 1;
    // Relaxed: no frame of this call can become visible before this store,
    // because the producer publishes frames only with its release store of
    // tail ([Data] in ring.cc), which orders this earlier store before it.
    progress.claimed.store(seq + n, std::memory_order_relaxed);
    absl::Status s;
    switch (api) {
      case kWrite: {
        const size_t len = PayloadLength(rng, max_payload);
        std::string& frame = batch[0];
        frame.resize(sizeof(FrameHeader) + len);
        FillFrame(reinterpret_cast<uint8_t*>(frame.data()), magic, seq, len, api);
        s = producer.Write(frame, absl::InfiniteFuture());
        break;
      }
      case kReserveCommit: {
        // Reserve more than the frame needs (up to 64 bytes), commit less.
        const size_t len = PayloadLength(rng, max_payload);
        const size_t extra = std::min<size_t>(rng() % 65, max_payload - len);
        absl::StatusOr<absl::Span<uint8_t>> span =
            producer.Reserve(sizeof(FrameHeader) + len + extra, absl::InfiniteFuture());
        s = span.status();
        if (s.ok()) {
          FillFrame(span->data(), magic, seq, len, api);
          s = producer.Commit(sizeof(FrameHeader) + len);
        }
        break;
      }
      case kWriteBatch: {
        views.clear();
        for (uint64_t i = 0; i < n; ++i) {
          const size_t len = PayloadLength(rng, max_payload);
          batch[i].resize(sizeof(FrameHeader) + len);
          FillFrame(reinterpret_cast<uint8_t*>(batch[i].data()), magic, seq + i, len, api);
          views.push_back(batch[i]);
        }
        size_t written = 0;
        s = producer.WriteBatch(views, absl::InfiniteFuture(), &written);
        if (s.ok() && written != n) {
          s = absl::InternalError(absl::StrCat("WriteBatch wrote ", written, " of ", n));
        }
        break;
      }
      default: {
        for (uint64_t i = 0; i < n && s.ok(); ++i) {
          const size_t len = PayloadLength(rng, max_payload);
          absl::StatusOr<absl::Span<uint8_t>> span =
              producer.Reserve(sizeof(FrameHeader) + len, absl::InfiniteFuture());
          s = span.status();
          if (s.ok()) {
            FillFrame(span->data(), magic, seq + i, len, api);
            s = producer.CommitNoPublish(sizeof(FrameHeader) + len);
          }
        }
        if (s.ok()) s = producer.Publish();
        break;
      }
    }
    if (!s.ok()) {
      std::fprintf(stderr, "producer child: %s at frame %llu: %s\n", ApiName(api),
                   static_cast<unsigned long long>(seq), s.ToString().c_str());
      return 2;
    }
    seq += n;
    // Release: pairs with the parent's acquire load; the tail store that
    // published these frames (sequenced before) is visible to whoever sees
    // this count, so the consumer can never find fewer frames than it.
    progress.published.store(seq, std::memory_order_release);
  }
}

// Checks the frames of one round as the consumer sees them.
class FrameChecker {
 public:
  void StartRound(int round) {
    round_ = round;
    magic_ = RoundMagic(round);
    next_seq_ = 0;
  }

  // Records the first problem; later frames are ignored once one is found.
  void Check(absl::Span<const uint8_t> frame) {
    if (!error_.empty()) return;
    // Copy out of shared memory before checking (the peer could still write).
    copy_.assign(frame.begin(), frame.end());
    const std::string where = absl::StrCat("round ", round_, ", frame ", next_seq_, ": ");
    if (copy_.size() < sizeof(FrameHeader)) {
      error_ = absl::StrCat(where, copy_.size(), " bytes, shorter than a frame header");
      return;
    }
    FrameHeader header;
    std::memcpy(&header, copy_.data(), sizeof(header));
    const uint8_t* payload = copy_.data() + sizeof(header);
    if (header.magic != magic_) {
      error_ = absl::StrCat(where, "magic 0x", absl::Hex(header.magic), ", expected 0x",
                            absl::Hex(magic_), " (a stale or foreign frame)");
    } else if (header.seq != next_seq_) {
      error_ = absl::StrCat(where, "carries sequence ", header.seq, " (a gap or a duplicate)");
    } else if (sizeof(header) + header.payload_len != copy_.size()) {
      error_ = absl::StrCat(where, "is ", copy_.size(), " bytes but says its payload is ",
                            header.payload_len, " (", ApiName(header.api), ")");
    } else if (header.checksum !=
               Fnv1a(payload, header.payload_len, Fnv1a(copy_.data(), kChecksummedHeader))) {
      error_ = absl::StrCat(where, "checksum mismatch: a torn frame (", ApiName(header.api), ")");
    }
    if (!error_.empty()) return;
    ++next_seq_;
    ++total_frames_;
    total_bytes_ += copy_.size();
  }

  uint64_t seen_this_round() const { return next_seq_; }
  uint64_t total_frames() const { return total_frames_; }
  uint64_t total_bytes() const { return total_bytes_; }
  const std::string& error() const { return error_; }

 private:
  int round_ = 0;
  uint64_t magic_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t total_frames_ = 0;
  uint64_t total_bytes_ = 0;
  std::string error_;
  std::vector<uint8_t> copy_;
};

// Consumes what is available through one of the consumer APIs, chosen at
// random. Returns how many frames it consumed (0: the ring is empty).
absl::StatusOr<size_t> ConsumeSome(RingConsumer& consumer, FrameChecker& checker,
                                   std::mt19937_64& rng) {
  auto as_span = [](const std::string& s) {
    return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  };
  switch (rng() % 4) {
    case 0: {
      absl::StatusOr<std::optional<std::string>> frame = consumer.TryRead();
      if (!frame.ok()) return frame.status();
      if (!frame->has_value()) return 0;
      checker.Check(as_span(**frame));
      return 1;
    }
    case 1: {
      absl::StatusOr<std::optional<absl::Span<const uint8_t>>> frame = consumer.Peek();
      if (!frame.ok()) return frame.status();
      if (!frame->has_value()) return 0;
      checker.Check(**frame);
      absl::Status s = consumer.Release();
      if (!s.ok()) return s;
      return 1;
    }
    case 2:
      return consumer.Drain(1 + rng() % 32,
                            [&checker](absl::Span<const uint8_t> frame) { checker.Check(frame); });
    default: {
      const size_t max = 1 + rng() % 8;
      size_t n = 0;
      for (; n < max; ++n) {
        absl::StatusOr<std::optional<absl::Span<const uint8_t>>> frame = consumer.Peek();
        if (!frame.ok()) return frame.status();
        if (!frame->has_value()) break;
        checker.Check(**frame);
        absl::Status s = consumer.ReleaseNoPublish();
        if (!s.ok()) return s;
      }
      absl::Status s = consumer.Publish();
      if (!s.ok()) return s;
      return n;
    }
  }
}

// How the parent spends the time between fork() and the kill.
enum class Mode {
  kKillAtOnce,   // no delay: the child has usually not written anything
  kConsumeLive,  // waits for and consumes frames while the child writes
  kSpinIdle,     // busy-waits without consuming (the ring fills up)
  kSleepIdle,    // sleeps without consuming
};

TEST(RingKillTest, SigkilledProducerNeverLeavesAPartialFrame) {
  const absl::Time test_start = absl::Now();
  const int fds_before = CountOpenFds();
  {
    absl::StatusOr<Ring> made = Ring::Create(kCapacity);
    ASSERT_TRUE(made.ok()) << made.status();
    Ring ring = std::move(*made);
    absl::StatusOr<SharedRegion> progress_region =
        SharedRegion::Create("ring-kill-progress", sizeof(Progress));
    ASSERT_TRUE(progress_region.ok()) << progress_region.status();
    // The memfd is zero-filled; the child inherits this MAP_SHARED mapping.
    Progress* progress = new (progress_region->data()) Progress();
    const int fds_with_ring = CountOpenFds();
    RingConsumer& consumer = ring.consumer();
    const pid_t parent = ::getpid();

    std::mt19937_64 rng(kSeed);
    FrameChecker checker;
    int killed_mid_stream = 0;          // had published frames, was still running
    int killed_mid_stream_live = 0;     // ... while the parent was consuming
    int killed_before_first_write = 0;  // had not claimed a single frame
    int killed_in_producer_call = 0;    // a call had claimed frames it had not returned
    int unpublished_frames_hidden = 0;  // claimed frames the consumer never saw
    int unfinished_call_visible = 0;    // frames of a call that never returned were visible
    for (int round = 0; round < kRounds; ++round) {
      // No child runs now; the fork below orders these stores before it.
      progress->started.store(0, std::memory_order_relaxed);
      progress->claimed.store(0, std::memory_order_relaxed);
      progress->published.store(0, std::memory_order_relaxed);
      checker.StartRound(round);
      const uint64_t magic = RoundMagic(round);
      const uint64_t child_seed = rng();
      const uint64_t r = rng() % 20;
      const Mode mode = r < 2    ? Mode::kKillAtOnce
                        : r < 11 ? Mode::kConsumeLive
                        : r < 16 ? Mode::kSpinIdle
                                 : Mode::kSleepIdle;
      // 0 to 400 us, a quarter of them under 20 us (times kDelayScale).
      const absl::Duration delay =
          absl::Microseconds(kDelayScale * (rng() % 4 == 0 ? rng() % 20 : rng() % 400));

      const pid_t pid = ForkChild([&ring, progress, magic, child_seed, parent] {
        // Die with the test, whatever happens to it (checked after the
        // prctl: the parent may already be gone).
        if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() != parent) return 20;
        absl::StatusOr<Ring> attached = AttachSecondMapping(ring, RingEnd::kProducer);
        if (!attached.ok()) {
          std::fprintf(stderr, "producer child: %s\n", attached.status().ToString().c_str());
          return 21;
        }
        return ProduceUntilKilled(attached->producer(), *progress, magic, child_seed);
      });

      // Nothing below may return before the kill and the reap.
      std::string failure;
      bool consumed_live = false;
      if (mode != Mode::kKillAtOnce) {
        const absl::Time give_up = absl::Now() + absl::Seconds(20);
        // Relaxed: a flag; see Progress.
        while (progress->started.load(std::memory_order_relaxed) == 0 && failure.empty()) {
          if (absl::Now() > give_up) failure = "the producer child did not start within 20 s";
          // Without reaping it (WNOWAIT): did it exit before starting?
          siginfo_t info{};
          if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == pid) {
            failure = "the producer child exited before it started (see its stderr)";
          }
          std::this_thread::yield();
        }
        const absl::Time kill_at = absl::Now() + delay;
        if (mode == Mode::kConsumeLive) {
          consumed_live = true;
          while (failure.empty()) {
            const absl::Status s = consumer.Wait(kill_at);
            if (absl::IsDeadlineExceeded(s)) break;
            if (!s.ok()) {
              failure = absl::StrCat("waiting live: ", s.ToString());
              break;
            }
            absl::StatusOr<size_t> n = ConsumeSome(consumer, checker, rng);
            if (!n.ok()) failure = absl::StrCat("consuming live: ", n.status().ToString());
            if (absl::Now() >= kill_at) break;
          }
        } else if (mode == Mode::kSpinIdle) {
          while (absl::Now() < kill_at) {
          }
        } else {
          absl::SleepFor(delay);
        }
      }
      // Relaxed: a statistic (did the child get anywhere?); never decreases.
      const uint64_t published_at_kill = progress->published.load(std::memory_order_relaxed);
      const int killed = ::kill(pid, SIGKILL) == 0 ? 0 : errno;
      const int status = WaitChild(pid);
      ASSERT_EQ(killed, 0) << "round " << round << ": kill: " << std::strerror(killed);
      // Exit code 128 + SIGKILL: the child was still running (it only ever
      // exits on an error, which it prints).
      ASSERT_EQ(status, 128 + SIGKILL) << "round " << round << ": the producer child ended itself";
      ASSERT_EQ(failure, "") << "round " << round;
      // No child of this process is left, running or zombie.
      const pid_t other = ::waitpid(-1, nullptr, WNOHANG);
      const int other_errno = errno;
      ASSERT_EQ(other, -1) << "round " << round << ": a child is left";
      ASSERT_EQ(other_errno, ECHILD) << "round " << round << ": a child is left";

      // Drain what the dead producer published.
      for (;;) {
        absl::StatusOr<size_t> n = ConsumeSome(consumer, checker, rng);
        ASSERT_TRUE(n.ok()) << "round " << round << ": " << n.status();
        if (*n == 0) break;
      }
      ASSERT_EQ(checker.error(), "");
      // Nothing else is there, and the ring is still open.
      EXPECT_TRUE(absl::IsDeadlineExceeded(consumer.Wait(absl::InfinitePast())))
          << "round " << round;
      ASSERT_TRUE(consumer.status().ok()) << consumer.status();

      // Acquire: pairs with the child's release store (the reap already
      // orders it; the order makes the contract explicit).
      const uint64_t published = progress->published.load(std::memory_order_acquire);
      // Relaxed: the reap orders the dead child's stores before this load.
      const uint64_t claimed = progress->claimed.load(std::memory_order_relaxed);
      const uint64_t seen = checker.seen_this_round();
      ASSERT_GE(seen, published) << "round " << round << ": frames of returned calls are missing";
      ASSERT_LE(seen, claimed) << "round " << round << ": frames nobody wrote";

      if (published_at_kill > 0) ++killed_mid_stream;
      if (published_at_kill > 0 && consumed_live) ++killed_mid_stream_live;
      if (claimed == 0) ++killed_before_first_write;
      if (claimed > published) ++killed_in_producer_call;
      if (seen < claimed) ++unpublished_frames_hidden;
      if (published < seen) ++unfinished_call_visible;
      ASSERT_EQ(CountOpenFds(), fds_with_ring) << "round " << round;
    }

    const RingStats stats = consumer.stats();
    const auto* header = reinterpret_cast<const RingHeader*>(ring.region().data());
    // Relaxed: no producer is left; this only reports how far tail got.
    const uint64_t tail = header->tail.load(std::memory_order_relaxed);
    const absl::Duration elapsed = absl::Now() - test_start;
    std::printf(
        "%d rounds in %s: killed mid-stream %d (%d while consuming live), before the first "
        "write %d, inside a producer call %d; unpublished frames hidden in %d rounds, frames of "
        "a call that never returned visible in %d; %llu frames (%llu bytes) verified; the ring "
        "wrapped %llu times\n",
        kRounds, absl::FormatDuration(elapsed).c_str(), killed_mid_stream, killed_mid_stream_live,
        killed_before_first_write, killed_in_producer_call, unpublished_frames_hidden,
        unfinished_call_visible, static_cast<unsigned long long>(checker.total_frames()),
        static_cast<unsigned long long>(checker.total_bytes()),
        static_cast<unsigned long long>(tail / kCapacity));
    ::testing::Test::RecordProperty("rounds", kRounds);
    ::testing::Test::RecordProperty("rounds_killed_mid_stream", killed_mid_stream);
    ::testing::Test::RecordProperty("rounds_killed_mid_stream_consuming_live",
                                    killed_mid_stream_live);
    ::testing::Test::RecordProperty("rounds_killed_before_first_write", killed_before_first_write);
    ::testing::Test::RecordProperty("rounds_killed_in_producer_call", killed_in_producer_call);
    ::testing::Test::RecordProperty("rounds_unpublished_frames_hidden", unpublished_frames_hidden);
    ::testing::Test::RecordProperty("rounds_unfinished_call_visible", unfinished_call_visible);
    ::testing::Test::RecordProperty("frames_verified", std::to_string(checker.total_frames()));
    ::testing::Test::RecordProperty("bytes_verified", std::to_string(checker.total_bytes()));

    // The consumer counted exactly the frames the checker accepted.
    EXPECT_EQ(stats.frames, checker.total_frames());
    // The kills must land where it matters, not on idle children.
    EXPECT_GE(killed_mid_stream, kRounds / 2);
    EXPECT_GE(killed_mid_stream_live, kRounds / 5);
    EXPECT_GT(killed_before_first_write, 0);
    EXPECT_GT(killed_in_producer_call, 0);
    EXPECT_GT(unpublished_frames_hidden, 0);
    // Frames crossed the end of the buffer (padding frames) many times.
    EXPECT_GE(tail / kCapacity, static_cast<uint64_t>(kRounds / 10));
  }
  EXPECT_EQ(CountOpenFds(), fds_before) << "fd leak";
}

}  // namespace
}  // namespace ringbuf
