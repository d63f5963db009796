// envelope_cost: what the frame envelope (mesh/dataplane/envelope.h) adds
// to the data path. One thread writes messages (64 bytes by default) into
// one ring and drains them again (both ends in one thread: instruction and
// cache cost only, no cross-core transfer), one frame at a time (Write +
// Drain(1), like Node::Send) and in batches of 32 (WriteBatch + Drain):
//   plain          Write(payload), the drain copies the frame out;
//   prefix         Write(kMessagePrefix, payload), same drain: the send
//                  path's cost is prefix - plain;
//   prefix+parse   as prefix, and the drain runs ParseFrame and copies the
//                  payload of a valid kMessage: the receive side's cost is
//                  prefix+parse - prefix;
//   plain+8        Write() of a payload 8 bytes longer (kMessagePrefix's
//                  size): the same ring bytes as prefix without the
//                  envelope, so prefix - plain+8 is the cost of the split
//                  copy alone.
// Also times ParseFrame alone.
//
//   envelope_cost [--messages=N] [--rounds=R] [--payload=BYTES] [--ring=BYTES]
//                 [--only=I]
//
// Each variant runs N messages (default 10 million) in R rounds of N/R
// (default 50). Rounds interleave the variants, so noise on a shared machine
// hits all of them alike, and each variant's result is its best round (noise
// only ever adds time), in ns/message. --only=I runs just variant I (0-based,
// in the printed order; no warm-up, no timing), e.g. under a profiler.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mesh/dataplane/envelope.h"
#include "ringbuf/ring.h"

namespace {

// Keeps the compiler from dropping the work that produced `p`.
inline void Escape(const void* p) { asm volatile("" : : "g"(p) : "memory"); }

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "envelope_cost: %s\n", what);
  std::abort();
}

struct Options {
  uint64_t messages = 10'000'000;  // per variant, over all rounds
  int rounds = 50;
  size_t payload = 64;
  size_t ring = size_t{1} << 20;  // the mesh's default ring_capacity_bytes
};

constexpr size_t kBatch = 32;

ringbuf::Ring MakeRing(size_t capacity) {
  absl::StatusOr<ringbuf::Ring> ring = ringbuf::Ring::Create(capacity);
  if (!ring.ok()) Die("Ring::Create failed");
  return std::move(*ring);
}

// The variants; each runs Options::messages messages through one ring.
// Thread-compatible (one thread plays both ends).
class Bench {
 public:
  explicit Bench(const Options& o)
      : o_(o),
        payload_(o.payload, 'x'),
        longer_(o.payload + mesh::kMessagePrefix.size(), 'x'),
        sink_(o.payload + 64),
        ring_(MakeRing(o.ring)) {
    batch_.assign(kBatch, payload_);
    longer_batch_.assign(kBatch, longer_);
  }

  // Write([prefix,] payload) + Drain(1) copying the frame out.
  void Plain() { Single(absl::string_view(), payload_); }
  void PlainLonger() { Single(absl::string_view(), longer_); }
  void Prefix() { Single(mesh::kMessagePrefix, payload_); }

  // Write(kMessagePrefix, payload) + Drain(1) with ParseFrame, copying the
  // payload out of a valid kMessage and counting anything else as dropped.
  void Envelope() {
    ringbuf::RingProducer& p = ring_.producer();
    ringbuf::RingConsumer& c = ring_.consumer();
    for (uint64_t i = 0; i < o_.messages; ++i) {
      if (!p.Write(mesh::kMessagePrefix, payload_, absl::InfinitePast()).ok()) Die("Write");
      absl::StatusOr<size_t> n = c.Drain(1, [&](absl::Span<const uint8_t> f) {
        const mesh::ParsedFrame m = mesh::ParseFrame(f);
        if (!m.ok() || m.header.frame_kind() != mesh::FrameKind::kMessage) {
          ++dropped_;
          return;
        }
        std::memcpy(sink_.data(), m.payload.data(), m.payload.size());
      });
      if (!n.ok() || *n != 1) Die("Drain");
      Escape(sink_.data());
    }
    if (dropped_ != 0) Die("frames were dropped");
  }

  // WriteBatch([prefix,] 32 payloads) + Drain(32) copying the frames out.
  void PlainBatch() { Batch(absl::string_view(), batch_); }
  void PlainLongerBatch() { Batch(absl::string_view(), longer_batch_); }
  void PrefixBatch() { Batch(mesh::kMessagePrefix, batch_); }

  void EnvelopeBatch() {
    ringbuf::RingProducer& p = ring_.producer();
    ringbuf::RingConsumer& c = ring_.consumer();
    for (uint64_t i = 0; i < o_.messages; i += kBatch) {
      if (!p.WriteBatch(mesh::kMessagePrefix, batch_, absl::InfinitePast()).ok()) {
        Die("WriteBatch");
      }
      absl::StatusOr<size_t> n = c.Drain(kBatch, [&](absl::Span<const uint8_t> f) {
        const mesh::ParsedFrame m = mesh::ParseFrame(f);
        if (!m.ok() || m.header.frame_kind() != mesh::FrameKind::kMessage) {
          ++dropped_;
          return;
        }
        std::memcpy(sink_.data(), m.payload.data(), m.payload.size());
        Escape(sink_.data());
      });
      if (!n.ok() || *n != kBatch) Die("Drain");
    }
    if (dropped_ != 0) Die("frames were dropped");
  }

  // ParseFrame alone, on a frame at an unaligned address.
  void ParseOnly() {
    std::string buffer(1 + mesh::kMessagePrefix.size() + o_.payload, '\0');
    std::memcpy(&buffer[1], mesh::kMessagePrefix.data(), mesh::kMessagePrefix.size());
    const char* frame = buffer.data() + 1;
    uint64_t ok = 0;
    for (uint64_t i = 0; i < o_.messages; ++i) {
      Escape(frame);  // the bytes may have changed: parse again for real
      const mesh::ParsedFrame m =
          mesh::ParseFrame(absl::string_view(frame, buffer.size() - 1));
      ok += m.ok();
      Escape(m.payload.data());
    }
    if (ok != o_.messages) Die("ParseFrame rejected a valid frame");
  }

 private:
  void Single(absl::string_view prefix, absl::string_view payload) {
    ringbuf::RingProducer& p = ring_.producer();
    ringbuf::RingConsumer& c = ring_.consumer();
    for (uint64_t i = 0; i < o_.messages; ++i) {
      const absl::Status s = prefix.empty() ? p.Write(payload, absl::InfinitePast())
                                            : p.Write(prefix, payload, absl::InfinitePast());
      if (!s.ok()) Die("Write");
      absl::StatusOr<size_t> n = c.Drain(1, [&](absl::Span<const uint8_t> f) {
        std::memcpy(sink_.data(), f.data(), f.size());
      });
      if (!n.ok() || *n != 1) Die("Drain");
      Escape(sink_.data());
    }
  }

  void Batch(absl::string_view prefix, const std::vector<absl::string_view>& payloads) {
    ringbuf::RingProducer& p = ring_.producer();
    ringbuf::RingConsumer& c = ring_.consumer();
    for (uint64_t i = 0; i < o_.messages; i += kBatch) {
      const absl::Status s = prefix.empty()
                                 ? p.WriteBatch(payloads, absl::InfinitePast())
                                 : p.WriteBatch(prefix, payloads, absl::InfinitePast());
      if (!s.ok()) Die("WriteBatch");
      absl::StatusOr<size_t> n = c.Drain(kBatch, [&](absl::Span<const uint8_t> f) {
        std::memcpy(sink_.data(), f.data(), f.size());
        Escape(sink_.data());
      });
      if (!n.ok() || *n != kBatch) Die("Drain");
    }
  }

  const Options o_;
  const std::string payload_;
  const std::string longer_;  // payload_ + kMessagePrefix.size() bytes
  std::vector<uint8_t> sink_;
  ringbuf::Ring ring_;
  std::vector<absl::string_view> batch_;
  std::vector<absl::string_view> longer_batch_;
  uint64_t dropped_ = 0;
};

bool Flag(const char* arg, const char* name, uint64_t* value) {
  const size_t n = std::strlen(name);
  if (std::strncmp(arg, name, n) != 0) return false;
  *value = std::strtoull(arg + n, nullptr, 10);
  return true;
}

struct Variant {
  const char* name;
  void (Bench::*run)();
  double best;  // ns/message of the best round so far
};

}  // namespace

int main(int argc, char** argv) {
  Options o;
  int only = -1;
  for (int i = 1; i < argc; ++i) {
    uint64_t v = 0;
    if (Flag(argv[i], "--messages=", &v)) {
      o.messages = v;
    } else if (Flag(argv[i], "--rounds=", &v)) {
      o.rounds = static_cast<int>(std::max<uint64_t>(1, v));
    } else if (Flag(argv[i], "--payload=", &v)) {
      o.payload = static_cast<size_t>(v);
    } else if (Flag(argv[i], "--ring=", &v)) {
      o.ring = static_cast<size_t>(v);
    } else if (Flag(argv[i], "--only=", &v)) {
      only = static_cast<int>(v);
    } else {
      std::fprintf(stderr,
                   "usage: envelope_cost [--messages=N] [--rounds=R] [--payload=BYTES] "
                   "[--ring=BYTES] [--only=I]\n");
      return 2;
    }
  }
  const uint64_t total = o.messages;
  // Each round runs a whole number of batches.
  o.messages = std::max<uint64_t>(kBatch, total / static_cast<uint64_t>(o.rounds) / kBatch * kBatch);
  Bench bench(o);
  std::vector<Variant> v = {
      {"single: plain   Write(payload) + Drain(1)", &Bench::Plain, 1e30},
      {"single: prefix  Write(kMessagePrefix, payload)", &Bench::Prefix, 1e30},
      {"single: prefix+parse (ParseFrame in the drain)", &Bench::Envelope, 1e30},
      {"single: plain+8 Write(payload + 8 bytes)", &Bench::PlainLonger, 1e30},
      {"batch:  plain   WriteBatch(32) + Drain(32)", &Bench::PlainBatch, 1e30},
      {"batch:  prefix  WriteBatch(kMessagePrefix, 32)", &Bench::PrefixBatch, 1e30},
      {"batch:  prefix+parse (ParseFrame in the drain)", &Bench::EnvelopeBatch, 1e30},
      {"batch:  plain+8 WriteBatch(32 x payload+8)", &Bench::PlainLongerBatch, 1e30},
      {"ParseFrame alone", &Bench::ParseOnly, 1e30},
  };
  if (only >= 0) {
    if (static_cast<size_t>(only) >= v.size()) return 2;
    for (int r = 0; r < o.rounds; ++r) (bench.*v[only].run)();
    std::printf("envelope_cost: ran %s: %llu messages\n", v[only].name,
                static_cast<unsigned long long>(o.messages * o.rounds));
    return 0;
  }
  // Warm-up: page faults of the ring, branch predictors.
  for (Variant& x : v) (bench.*x.run)();
  for (int r = 0; r < o.rounds; ++r) {
    for (Variant& x : v) {
      const auto start = std::chrono::steady_clock::now();
      (bench.*x.run)();
      const std::chrono::duration<double, std::nano> took =
          std::chrono::steady_clock::now() - start;
      x.best = std::min(x.best, took.count() / static_cast<double>(o.messages));
    }
  }
  std::printf(
      "envelope_cost: %llu messages of %zu bytes per variant, %zu-byte ring, best of %d rounds\n",
      static_cast<unsigned long long>(o.messages * o.rounds), o.payload, o.ring, o.rounds);
  for (const Variant& x : v) std::printf("  %-50s %7.2f ns/msg\n", x.name, x.best);
  const auto line = [](const char* what, double d) {
    std::printf("  %-50s %+7.2f ns/msg\n", what, d);
  };
  line("single: send path (prefix - plain)", v[1].best - v[0].best);
  line("single: receive ParseFrame (prefix+parse - prefix)", v[2].best - v[1].best);
  line("single: total envelope (prefix+parse - plain)", v[2].best - v[0].best);
  line("single: split copy only (prefix - plain+8)", v[1].best - v[3].best);
  line("batch:  send path (prefix - plain)", v[5].best - v[4].best);
  line("batch:  receive ParseFrame (prefix+parse - prefix)", v[6].best - v[5].best);
  line("batch:  total envelope (prefix+parse - plain)", v[6].best - v[4].best);
  line("batch:  split copy only (prefix - plain+8)", v[5].best - v[7].best);
  return 0;
}
