// Fuzz target: ringbuf's broadcast ring (ringbuf/broadcast.h) facing
// hostile consumers and a hostile region. The input (format below) is a
// sequence of ops on a real BroadcastProducer with up to four consumers
// opened from what it handed over (real memfds and doorbell socket pairs),
// interleaving writes with and without a deadline, drains, sleeps,
// consumers added and detached, and lies: arbitrary values written into a
// consumer's cursor page (head, sleep flag, eviction flag) through a second
// mapping, as the consumer's process could. Beside it, one consumer reads a
// region made by hand into which the input writes arbitrary bytes (the
// header, tail, reserved_end and frames), as a hostile producer could.
//
// Properties checked (a violation aborts: a crash for libFuzzer):
//   * no crash, no sanitizer report, every call returns (writes wait at
//     most 63 us);
//   * every frame handed on is at most MaxFrameSize() and readable;
//   * an honest consumer (never lied about, never evicted) gets exactly the
//     frames written since it was added, in order, none lost, none
//     duplicated; once the producer is gone it ends with OUT_OF_RANGE;
//   * a consumer the producer evicted gets DATA_LOSS at its next drain,
//     and once in DATA_LOSS a consumer stays there;
//   * a Write fails only for a frame over MaxFrameSize();
//   * no descriptor leaks (the same /proc/self/fd count after each input).
//
// Input: u8 capacity (256 << (n % 4)), u8 history (n % 4), then ops, each a
// u8 opcode (n % 8) and its operands:
//   0 write       u16 length (n % (MaxFrameSize() + 9)), u8 deadline (0:
//                 none, else now + n % 64 us)
//   1 drain       u8 consumer, u8 max frames (n % 8 + 1)
//   2 lie         u8 consumer, u8 field (n % 3: head, waiting, evicted), u64 value
//   3 poke region u16 offset (n % region size), u64 value (8 bytes there)
//   4 drain the hand-made region's consumer, u8 max frames
//   5 sleep       u8 consumer: PrepareToSleep, then clear the doorbell
//   6 add         u8 where (even: history start, odd: tail)
//   7 detach      u8 consumer
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "ringbuf/broadcast.h"
#include "ringbuf/region.h"
#include "tests/fuzz/fuzz_util.h"

namespace shmesh_fuzz {
namespace {

using ringbuf::BroadcastConsumer;
using ringbuf::BroadcastCursor;
using ringbuf::BroadcastProducer;
using ringbuf::SharedRegion;

constexpr size_t kMaxConsumers = 4;
constexpr int kMaxOps = 256;

struct Reader {
  std::optional<BroadcastConsumer> consumer;
  std::optional<SharedRegion> page;  // a second mapping: the consumer's process lying
  uint32_t id = 0;
  bool honest = true;   // never lied about, never evicted
  bool lied = false;
  bool evicted = false;
  bool failed = false;  // got DATA_LOSS
  std::deque<std::string> expected;  // frames written since it was added, not yet read
};

std::string PayloadOf(uint64_t serial, size_t length) {
  std::string s(length, '\0');
  for (size_t i = 0; i < length; ++i) s[i] = static_cast<char>((serial * 131 + i * 7) & 0xff);
  return s;
}

void Drain(Reader& r, size_t max, size_t max_frame) {
  if (!r.consumer.has_value()) return;
  const bool was_failed = r.failed;
  absl::StatusOr<size_t> n = r.consumer->Drain(max, [&](absl::Span<const uint8_t> f) {
    FUZZ_CHECK(f.size() <= max_frame, absl::StrCat("a frame of ", f.size(), " bytes"));
    volatile uint8_t sink = 0;
    for (uint8_t b : f) sink = sink ^ b;  // readable
    if (r.honest) {
      FUZZ_CHECK(!r.expected.empty(), "an honest consumer got a frame nobody wrote");
      FUZZ_CHECK(std::string(reinterpret_cast<const char*>(f.data()), f.size()) == r.expected.front(),
                 "an honest consumer got another frame than the next one written");
      r.expected.pop_front();
    }
    return true;
  });
  if (!n.ok()) {
    FUZZ_CHECK(absl::IsDataLoss(n.status()) || absl::IsOutOfRange(n.status()),
               absl::StrCat("Drain failed with ", n.status().ToString()));
    if (absl::IsDataLoss(n.status())) {
      FUZZ_CHECK(!r.honest, absl::StrCat("an honest consumer got ", n.status().ToString()));
      r.failed = true;
    }
  } else {
    FUZZ_CHECK(!was_failed, "a consumer in DATA_LOSS recovered");
    FUZZ_CHECK(!r.evicted || r.lied || r.failed, "an evicted consumer drained on");
  }
}

void Run(FuzzInput& in) {
  const size_t capacity = size_t{256} << (in.U8() % 4);
  ringbuf::BroadcastOptions options;
  options.capacity = capacity;
  options.history_frames = in.U8() % 4;
  options.max_consumers = kMaxConsumers;
  absl::StatusOr<BroadcastProducer> made = BroadcastProducer::Create("fuzz-broadcast", options);
  FUZZ_CHECK(made.ok(), made.status().ToString());
  std::optional<BroadcastProducer> producer(std::move(*made));
  const size_t max_frame = producer->MaxFrameSize();
  std::vector<Reader> readers(kMaxConsumers);
  // The producer's last frames (where each ends, and its bytes), for a
  // consumer added at the history start: those that end after it.
  std::deque<std::pair<uint64_t, std::string>> history;
  uint64_t serial = 0;

  // The hand-made region and its consumer.
  const size_t region_bytes = ringbuf::kBroadcastHeaderSize + capacity;
  absl::StatusOr<SharedRegion> hand = SharedRegion::CreateWriterOnly("fuzz-hand", region_bytes);
  FUZZ_CHECK(hand.ok(), hand.status().ToString());
  auto* h = new (hand->data()) ringbuf::BroadcastHeader;
  h->magic = ringbuf::kBroadcastMagic;
  h->version = ringbuf::kBroadcastVersion;
  h->header_size = ringbuf::kBroadcastHeaderSize;
  h->capacity = capacity;
  Reader hand_reader;
  hand_reader.honest = false;
  {
    absl::StatusOr<SharedRegion> page = SharedRegion::Create("fuzz-page", ringbuf::kBroadcastCursorBytes);
    FUZZ_CHECK(page.ok(), page.status().ToString());
    int bell[2];
    FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, bell) == 0, "socketpair failed");
    ::close(bell[1]);
    absl::StatusOr<BroadcastConsumer> c = BroadcastConsumer::Open(DupOrDie(hand->fd()), DupOrDie(page->fd()),
                                                                  base::UniqueFd(bell[0]), capacity, 0);
    FUZZ_CHECK(c.ok(), c.status().ToString());
    hand_reader.consumer.emplace(std::move(*c));
  }

  auto add = [&](bool at_history) {
    for (Reader& r : readers) {
      if (r.consumer.has_value()) continue;
      const uint64_t start = at_history ? producer->history_start() : producer->tail();
      absl::StatusOr<BroadcastProducer::NewConsumer> added = producer->AddConsumer(start);
      FUZZ_CHECK(added.ok(), added.status().ToString());
      absl::StatusOr<SharedRegion> page =
          SharedRegion::Map(DupOrDie(added->cursor_fd.get()), ringbuf::kBroadcastCursorBytes);
      FUZZ_CHECK(page.ok(), page.status().ToString());
      absl::StatusOr<BroadcastConsumer> c =
          BroadcastConsumer::Open(DupOrDie(producer->region_fd()), std::move(added->cursor_fd),
                                  std::move(added->doorbell_fd), capacity, start);
      FUZZ_CHECK(c.ok(), c.status().ToString());
      r = Reader();
      r.consumer.emplace(std::move(*c));
      r.page.emplace(std::move(*page));
      r.id = added->id;
      if (at_history) {
        for (const auto& [end, payload] : history) {
          if (end > start) r.expected.push_back(payload);
        }
      }
      return;
    }
  };
  auto pick = [&](uint8_t n) -> Reader& { return readers[n % kMaxConsumers]; };

  for (int op = 0; op < kMaxOps && !in.empty(); ++op) {
    switch (in.U8() % 8) {
      case 0: {
        const size_t length = in.U16() % (max_frame + 9);
        const uint8_t d = in.U8();
        const absl::Time deadline = d == 0 ? absl::InfinitePast() : absl::Now() + absl::Microseconds(d % 64);
        const std::string payload = PayloadOf(serial++, length);
        std::vector<ringbuf::BroadcastEviction> evicted;
        absl::Status s = producer->Write("", payload, deadline, &evicted);
        if (length > max_frame) {
          FUZZ_CHECK(absl::IsInvalidArgument(s), absl::StrCat("an oversized Write: ", s.ToString()));
          FUZZ_CHECK(evicted.empty(), "an oversized Write evicted");
          break;
        }
        FUZZ_CHECK(s.ok(), absl::StrCat("Write: ", s.ToString()));
        for (const auto& e : evicted) {
          for (Reader& r : readers) {
            if (r.consumer.has_value() && r.id == e.id) {
              r.evicted = true;
              r.honest = false;
            }
          }
        }
        for (Reader& r : readers) {
          if (r.consumer.has_value() && r.honest) r.expected.push_back(payload);
        }
        if (options.history_frames > 0) {
          history.emplace_back(producer->tail(), payload);
          while (history.size() > options.history_frames) history.pop_front();
        }
        break;
      }
      case 1: {
        Reader& r = pick(in.U8());
        Drain(r, in.U8() % 8 + 1, max_frame);
        break;
      }
      case 2: {
        Reader& r = pick(in.U8());
        const uint8_t field = in.U8() % 3;
        const uint64_t value = in.U64();
        if (!r.page.has_value()) break;
        auto* cursor = reinterpret_cast<BroadcastCursor*>(r.page->data());
        if (field == 0) cursor->head.store(value);
        if (field == 1) cursor->waiting.store(static_cast<uint32_t>(value));
        if (field == 2) cursor->evicted.store(static_cast<uint32_t>(value));
        r.honest = false;
        r.lied = true;
        break;
      }
      case 3: {
        const size_t offset = in.U16() % region_bytes;
        const uint64_t value = in.U64();
        std::memcpy(hand->data() + offset, &value, std::min<size_t>(8, region_bytes - offset));
        break;
      }
      case 4:
        Drain(hand_reader, in.U8() % 8 + 1, max_frame);
        break;
      case 5: {
        Reader& r = pick(in.U8());
        if (!r.consumer.has_value()) break;
        (void)r.consumer->PrepareToSleep();
        (void)r.consumer->ClearDoorbell();
        break;
      }
      case 6:
        add(in.U8() % 2 == 0);
        break;
      case 7: {
        Reader& r = pick(in.U8());
        if (!r.consumer.has_value()) break;
        producer->Detach(r.id);
        r = Reader();
        break;
      }
    }
  }
  // The producer goes: honest consumers read everything, then OUT_OF_RANGE.
  producer.reset();
  for (Reader& r : readers) {
    if (!r.consumer.has_value() || !r.honest) continue;
    absl::StatusOr<size_t> n = size_t{0};
    for (int i = 0; i < 10000; ++i) {
      n = r.consumer->Drain(64, [&](absl::Span<const uint8_t> f) {
        FUZZ_CHECK(!r.expected.empty(), "an honest consumer got a frame nobody wrote");
        FUZZ_CHECK(std::string(reinterpret_cast<const char*>(f.data()), f.size()) == r.expected.front(),
                   "an honest consumer got another frame than the next one written");
        r.expected.pop_front();
        return true;
      });
      if (!n.ok()) break;
    }
    FUZZ_CHECK(absl::IsOutOfRange(n.status()), absl::StrCat("an honest consumer ended with ", n.status().ToString()));
    FUZZ_CHECK(r.expected.empty(), absl::StrCat("an honest consumer lost ", r.expected.size(), " frames"));
  }
}

}  // namespace
}  // namespace shmesh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmesh_fuzz;  // NOLINT(build/namespaces): a C entry point
  const size_t fds_before = OpenFds();
  {
    FuzzInput in(data, size);
    Run(in);
  }
  const size_t fds_after = OpenFds();
  FUZZ_CHECK(fds_after == fds_before,
             absl::StrCat("descriptor leak: ", fds_before, " open before, ", fds_after, " after"));
  return 0;
}
