// Fuzz target: both endpoints of a ringbuf::Ring facing hostile shared
// memory. The input (format in fuzz_formats.h) is a sequence of ops that
// interleave consumer and producer calls with writes of arbitrary bytes into
// the ring header and frames, done through a second mapping of the memfd as
// the peer process would, also between a Peek() and its Release(), and from
// a racing thread while the endpoints run.
//
// Properties checked (a violation aborts: a crash for libFuzzer):
//   * no crash, no sanitizer report, every call returns (no call waits past
//     its deadline of at most 63 us, and none loops forever);
//   * every span returned (Peek, Drain, Reserve) lies inside the ring's data
//     area, and its bytes are readable; frames are at most MaxFrameSize();
//   * once an endpoint is in DATA_LOSS, its status never changes and every
//     call returns it (PrepareToSleep returns false); a failed endpoint
//     never becomes OK again;
//   * while nothing hostile happened yet, the ring is an exact FIFO of the
//     frames the producer committed, and neither endpoint reports DATA_LOSS;
//   * the doorbell never blocks, whatever the peer does to the socket pair
//     (O_NONBLOCK cleared, buffers full, an end shut down); DrainDoorbell
//     fails, and a wait ends with UNAVAILABLE, only after such a hang-up;
//   * Attach takes an untouched header for either end (or refuses it for
//     both), and gives the doorbell to the endpoint it was attached for;
//   * no descriptor leaks (same /proc/self/fd count after each input).
#include <sys/socket.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"
#include "ringbuf/ring_layout.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_util.h"

namespace shmesh_fuzz {
namespace {

using ringbuf::kRingHeaderSize;
using ringbuf::Ring;
using ringbuf::RingConsumer;
using ringbuf::RingProducer;
using ringbuf::SharedRegion;

struct FieldInfo {
  uint16_t offset;
  uint8_t width;  // 4 or 8
};
constexpr FieldInfo kFields[kFieldCount] = {
    {0, 8},    // magic
    {8, 4},    // version
    {12, 4},   // header_size
    {16, 8},   // capacity
    {24, 4},   // closed
    {128, 8},  // tail
    {136, 4},  // producer_cpu
    {256, 8},  // head
    {264, 4},  // consumer_cpu
    {384, 4},  // consumer_waiting
    {388, 4},  // producer_waiting
};

// Every access to shared memory from the hostile side is a relaxed atomic of
// the field's width, so a racing writer thread is well-defined C++ (the
// victim's reads are its own business: it must cope with any value).
uint64_t LoadAt(const uint8_t* p, int width) {
  if (width == 8) return __atomic_load_n(reinterpret_cast<const uint64_t*>(p), __ATOMIC_RELAXED);
  return __atomic_load_n(reinterpret_cast<const uint32_t*>(p), __ATOMIC_RELAXED);
}
void StoreAt(uint8_t* p, int width, uint64_t v) {
  if (width == 8) {
    __atomic_store_n(reinterpret_cast<uint64_t*>(p), v, __ATOMIC_RELAXED);
  } else {
    __atomic_store_n(reinterpret_cast<uint32_t*>(p), static_cast<uint32_t>(v), __ATOMIC_RELAXED);
  }
}

// Reads every byte of a span the library handed out: if it pointed outside
// the mapping this faults (ASan does not track mmap'd memory, so bounds are
// also checked explicitly).
uint8_t Touch(const uint8_t* p, size_t n) {
  uint8_t x = 0;
  for (size_t i = 0; i < n; ++i) x ^= __atomic_load_n(p + i, __ATOMIC_RELAXED);
  return x;
}

volatile uint8_t g_sink = 0;

absl::Hex Addr(const void* p) { return absl::Hex(reinterpret_cast<uintptr_t>(p)); }

std::string Pattern(uint64_t seed, size_t len) {
  std::string s(len, '\0');
  for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>((seed * 131 + i * 7 + (i >> 8)) & 0xff);
  return s;
}

absl::Time DeadlineFrom(uint8_t d) {
  if ((d & 0x80) == 0) return absl::InfinitePast();
  return absl::Now() + absl::Microseconds(d & 63);
}

// One input's world: a ring, the peer's raw view of its memory, and a model
// of the frames the honest producer committed.
class RingHarness {
 public:
  RingHarness(FuzzInput& in, Ring ring, SharedRegion peer) : in_(in), ring_(std::move(ring)), peer_(std::move(peer)) {
    data_lo_ = ring_.region().data() + kRingHeaderSize;
    data_hi_ = ring_.region().data() + ring_.region_size();
    capacity_ = ring_.capacity();
    max_frame_ = ring_.MaxFrameSize();
  }

  void Run() {
    while (!in_.empty()) Step(in_.U8() % kRingOpCount);
    if (Verbose()) {
      std::fprintf(stderr, "ring_consumer: %zu-byte ring, %s; consumer: %s; producer: %s; %zu frames unread\n",
                   capacity_, tampered_ ? "tampered" : "honest", consumer().status().ToString().c_str(),
                   producer().status().ToString().c_str(), model_.size());
    }
    // Closing both ends after arbitrary corruption must be safe too.
    consumer().Close();
    producer().Close();
    CheckStatuses("Close");
  }

 private:
  RingProducer& producer() { return ring_.producer(); }
  RingConsumer& consumer() { return ring_.consumer(); }
  uint8_t* peer_mem() { return peer_.data(); }

  void Step(uint8_t op) {
    before_cons_ = consumer().status();
    before_prod_ = producer().status();
    switch (static_cast<RingOp>(op)) {
      case kPoke: {
        const size_t offset = in_.U16() % peer_.size();
        absl::string_view bytes = in_.Bytes(in_.U8());
        const size_t n = std::min(bytes.size(), peer_.size() - offset);
        for (size_t i = 0; i < n; ++i) {
          __atomic_store_n(peer_mem() + offset + i, static_cast<uint8_t>(bytes[i]), __ATOMIC_RELAXED);
        }
        tampered_ = true;
        break;
      }
      case kPokeField: {
        const uint8_t field = in_.U8() % kFieldCount;
        const uint8_t mode = in_.U8();
        const uint64_t value = in_.U64();
        StoreAt(peer_mem() + kFields[field].offset, kFields[field].width, FieldValue(field, mode, value));
        tampered_ = true;
        break;
      }
      case kPokeFrame: {
        const uint16_t slot = in_.U16();
        const uint8_t len_mode = in_.U8();
        const uint32_t len = in_.U32();
        const uint8_t type_mode = in_.U8();
        const uint32_t type = (type_mode % 4 == 2) ? in_.U32() : 0;
        const size_t offset = FrameOffset(slot);
        StoreAt(peer_mem() + kRingHeaderSize + offset, 8, FrameWord(offset, len_mode, len, type_mode, type));
        tampered_ = true;
        break;
      }
      case kPeek:
        DoPeek();
        break;
      case kRelease:
      case kReleaseNoPublish: {
        const bool had_peek = peeked_.has_value();
        const absl::Status s = op == kRelease ? consumer().Release() : consumer().ReleaseNoPublish();
        ExpectSticky(before_cons_, s, "Release");
        if (s.ok()) {
          FUZZ_CHECK(had_peek, "Release() succeeded without a peeked frame");
          Consumed(*peeked_);
        }
        if (s.ok() || !consumer().status().ok()) peeked_.reset();
        break;
      }
      case kConsumerPublish:
        ExpectSticky(before_cons_, consumer().Publish(), "consumer Publish");
        break;
      case kTryRead: {
        absl::StatusOr<std::optional<std::string>> r = consumer().TryRead();
        ExpectSticky(before_cons_, r.status(), "TryRead");
        if (r.ok() && r->has_value()) {
          FUZZ_CHECK(!peeked_.has_value() || tampered_ || **r == peeked_->second,
                     "TryRead() after Peek() returned another frame");
          FUZZ_CHECK((*r)->size() <= max_frame_, absl::StrCat("TryRead() frame of ", (*r)->size()));
          Consumed({nullptr, **r});
          peeked_.reset();
        }
        if (!consumer().status().ok()) peeked_.reset();
        break;
      }
      case kDrain: {
        const size_t max = in_.U8();
        size_t seen = 0;
        absl::StatusOr<size_t> n = consumer().Drain(max, [&](absl::Span<const uint8_t> frame) {
          CheckSpan(frame.data(), frame.size(), "Drain");
          Consumed({frame.data(), std::string(reinterpret_cast<const char*>(frame.data()), frame.size())});
          ++seen;
        });
        ExpectSticky(before_cons_, n.status(), "Drain");
        if (n.ok()) {
          FUZZ_CHECK(*n == seen && *n <= max, absl::StrCat("Drain() returned ", *n, ", saw ", seen, ", max ", max));
        } else {
          FUZZ_CHECK(seen == 0, "Drain() failed after passing frames");
        }
        if (seen > 0 || !consumer().status().ok()) peeked_.reset();
        break;
      }
      case kConsumerPrepareToSleep: {
        const bool sleep = consumer().PrepareToSleep();
        FUZZ_CHECK(!sleep || before_cons_.ok(), "consumer PrepareToSleep() true after failure");
        CheckDrained(consumer().DrainDoorbell(), "consumer DrainDoorbell");
        break;
      }
      case kConsumerDrainDoorbell:
        CheckDrained(consumer().DrainDoorbell(), "consumer DrainDoorbell");
        break;
      case kWait: {
        const absl::Time deadline = DeadlineFrom(in_.U8());
        const absl::Status s = consumer().Wait(deadline);
        ExpectSticky(before_cons_, s, "Wait");
        CheckWaited(s, "Wait");
        break;
      }
      case kRead: {
        const absl::Time deadline = DeadlineFrom(in_.U8());
        const bool had_peek = peeked_.has_value();
        absl::StatusOr<std::string> r = consumer().Read(deadline);
        ExpectSticky(before_cons_, r.status(), "Read");
        CheckWaited(r.status(), "Read");
        if (r.ok()) {
          FUZZ_CHECK(r->size() <= max_frame_, absl::StrCat("Read() frame of ", r->size()));
          FUZZ_CHECK(!had_peek || tampered_ || *r == peeked_->second, "Read() after Peek() returned another frame");
          Consumed({nullptr, *r});
          peeked_.reset();
        }
        if (!consumer().status().ok()) peeked_.reset();
        break;
      }
      case kConsumerClose:
        consumer().Close();
        peeked_.reset();
        FUZZ_CHECK(!consumer().status().ok(), "consumer OK after Close()");
        break;
      case kWrite: {
        const size_t len = in_.U16() % (max_frame_ + 17);
        const std::string frame = Pattern(next_seed_++, len);
        const absl::Status s = producer().Write(frame, absl::InfinitePast());
        ExpectSticky(before_prod_, s, "Write");
        if (s.ok()) model_.push_back(frame);
        FUZZ_CHECK(len <= max_frame_ || absl::IsInvalidArgument(s) || !before_prod_.ok(),
                   absl::StrCat("Write() of ", len, " bytes over the maximum: ", s.ToString()));
        ReservationAttempt(s);
        break;
      }
      case kReserve: {
        const size_t len = in_.U16() % (max_frame_ + 17);
        absl::StatusOr<absl::Span<uint8_t>> span = producer().Reserve(len, absl::InfinitePast());
        ExpectSticky(before_prod_, span.status(), "Reserve");
        ReservationAttempt(span.status());
        if (span.ok()) {
          FUZZ_CHECK(span->size() == len, "Reserve() span has the wrong size");
          CheckSpan(span->data(), span->size(), "Reserve");
          std::string fill = Pattern(next_seed_++, len);
          if (len > 0) std::memcpy(span->data(), fill.data(), len);
          reserved_ = std::move(fill);
        }
        break;
      }
      case kCommit:
      case kCommitNoPublish: {
        const size_t limit = reserved_.has_value() ? reserved_->size() + 9 : 64;
        const size_t len = in_.U16() % limit;
        const absl::Status s = op == kCommit ? producer().Commit(len) : producer().CommitNoPublish(len);
        ExpectSticky(before_prod_, s, "Commit");
        if (s.ok()) {
          FUZZ_CHECK(reserved_.has_value() && len <= reserved_->size(),
                     "Commit() succeeded without a fitting Reserve()");
          model_.push_back(reserved_->substr(0, len));
          reserved_.reset();
        } else if (!absl::IsInvalidArgument(s)) {
          reserved_.reset();
        }
        break;
      }
      case kProducerPublish:
        ExpectSticky(before_prod_, producer().Publish(), "producer Publish");
        break;
      case kWriteBatch: {
        const size_t n = in_.U8() % 8;
        std::vector<std::string> frames;
        for (size_t i = 0; i < n; ++i) frames.push_back(Pattern(next_seed_++, in_.U16() % (max_frame_ + 17)));
        std::vector<absl::string_view> views(frames.begin(), frames.end());
        size_t written = 0;
        const absl::Status s = producer().WriteBatch(views, absl::InfinitePast(), &written);
        ExpectSticky(before_prod_, s, "WriteBatch");
        FUZZ_CHECK(written <= n && (!s.ok() || written == n),
                   absl::StrCat("WriteBatch() wrote ", written, " of ", n, ": ", s.ToString()));
        for (size_t i = 0; i < written; ++i) model_.push_back(frames[i]);
        if (written > 0) {
          reserved_.reset();
        } else if (n > 0) {
          ReservationAttempt(s);  // the first Reserve() failed
        }
        break;
      }
      case kProducerPrepareToSleep: {
        const size_t len = in_.U16() % (max_frame_ + 17);
        const bool sleep = producer().PrepareToSleep(len);
        FUZZ_CHECK(!sleep || before_prod_.ok(), "producer PrepareToSleep() true after failure");
        CheckDrained(producer().DrainDoorbell(), "producer DrainDoorbell");
        break;
      }
      case kProducerDrainDoorbell:
        CheckDrained(producer().DrainDoorbell(), "producer DrainDoorbell");
        break;
      case kWaitForSpace: {
        const size_t len = in_.U16() % (max_frame_ + 17);
        const absl::Time deadline = DeadlineFrom(in_.U8());
        const absl::Status s = producer().WaitForSpace(len, deadline);
        ExpectSticky(before_prod_, s, "WaitForSpace");
        CheckWaited(s, "WaitForSpace");
        break;
      }
      case kProducerClose:
        producer().Close();
        reserved_.reset();
        FUZZ_CHECK(!producer().status().ok(), "producer OK after Close()");
        break;
      case kRingDoorbell:
        DoDoorbell();
        break;
      case kAttach:
        DoAttach();
        break;
      case kRace:
        DoRace();
        break;
      case kRingOpCount:
        break;
    }
    if (Verbose()) {
      std::fprintf(stderr, "ring_consumer: op %d -> consumer %s, producer %s%s\n", op,
                   consumer().status().ToString().c_str(), producer().status().ToString().c_str(),
                   reserved_.has_value() ? ", reserved" : "");
    }
    CheckStatuses("op");
    FUZZ_CHECK(ring_.QueuedBytes() <= capacity_, "QueuedBytes() over capacity");
  }

  // --------------------------------------------------------------- checks

  void CheckSpan(const uint8_t* p, size_t n, const char* what) {
    FUZZ_CHECK(n <= max_frame_, absl::StrCat(what, ": span of ", n, " bytes, max ", max_frame_));
    FUZZ_CHECK(p >= data_lo_ && p <= data_hi_ && n <= static_cast<size_t>(data_hi_ - p),
               absl::StrCat(what, ": span [0x", Addr(p), ", +", n, ") outside the data area [0x", Addr(data_lo_),
                            ", 0x", Addr(data_hi_), ")"));
    g_sink = g_sink ^ Touch(p, n);
  }

  // A call made on an endpoint that was already failed (DATA_LOSS) must
  // return exactly that status.
  static void ExpectSticky(const absl::Status& before, const absl::Status& result, const char* what) {
    if (absl::IsDataLoss(before)) {
      FUZZ_CHECK(result == before, absl::StrCat(what, " after DATA_LOSS returned ", result.ToString(), " instead of ",
                                                before.ToString()));
    }
  }

  // DrainDoorbell never fails but for a doorbell whose other end is gone,
  // which only a hang-up makes happen here (the ring holds both ends).
  void CheckDrained(const absl::Status& s, const char* what) const {
    FUZZ_CHECK(s.ok() || (hung_up_ && absl::IsUnavailable(s)), absl::StrCat(what, ": ", s.ToString()));
  }

  // A wait ends with data, its deadline, the endpoint's own status, or
  // UNAVAILABLE after a doorbell hang-up; nothing else.
  void CheckWaited(const absl::Status& s, const char* what) const {
    switch (s.code()) {
      case absl::StatusCode::kOk:
      case absl::StatusCode::kDeadlineExceeded:
      case absl::StatusCode::kResourceExhausted:
      case absl::StatusCode::kInvalidArgument:
      case absl::StatusCode::kOutOfRange:
      case absl::StatusCode::kFailedPrecondition:
      case absl::StatusCode::kDataLoss:
        return;
      case absl::StatusCode::kUnavailable:
        FUZZ_CHECK(hung_up_, absl::StrCat(what, " UNAVAILABLE without a doorbell hang-up: ", s.ToString()));
        return;
      default:
        FuzzFail(__FILE__, __LINE__, absl::StrCat(what, " returned ", s.ToString()));
    }
  }

  void CheckStatuses(const char* what) {
    const absl::Status cons = consumer().status();
    const absl::Status prod = producer().status();
    FUZZ_CHECK(before_cons_.ok() || !cons.ok(), absl::StrCat(what, ": failed consumer became OK"));
    FUZZ_CHECK(before_prod_.ok() || !prod.ok(), absl::StrCat(what, ": failed producer became OK"));
    if (absl::IsDataLoss(before_cons_)) FUZZ_CHECK(cons == before_cons_, "consumer DATA_LOSS status changed");
    if (absl::IsDataLoss(before_prod_)) FUZZ_CHECK(prod == before_prod_, "producer DATA_LOSS status changed");
    if (!tampered_) {
      FUZZ_CHECK(!absl::IsDataLoss(cons), absl::StrCat("honest ring: consumer reports ", cons.ToString()));
      FUZZ_CHECK(!absl::IsDataLoss(prod), absl::StrCat("honest ring: producer reports ", prod.ToString()));
    }
  }

  // Models the reservation after Write/Reserve/WriteBatch: only a frame
  // over the maximum (INVALID_ARGUMENT) leaves an earlier reservation alone;
  // any other outcome replaced or dropped it.
  void ReservationAttempt(const absl::Status& s) {
    if (!absl::IsInvalidArgument(s)) reserved_.reset();
  }

  // A frame left the ring (`data` is where it was, or null for a copy).
  void Consumed(const std::pair<const uint8_t*, std::string>& frame) {
    if (tampered_) return;
    FUZZ_CHECK(!model_.empty(), "honest ring: consumer got a frame nobody committed");
    FUZZ_CHECK(model_.front() == frame.second,
               absl::StrCat("honest ring: frame of ", frame.second.size(), " bytes differs from the committed one of ",
                            model_.front().size(), " bytes"));
    model_.pop_front();
  }

  void DoPeek() {
    absl::StatusOr<std::optional<absl::Span<const uint8_t>>> r = consumer().Peek();
    ExpectSticky(before_cons_, r.status(), "Peek");
    if (!r.ok()) {
      if (!consumer().status().ok()) peeked_.reset();
      return;
    }
    if (!r->has_value()) {
      FUZZ_CHECK(!peeked_.has_value(), "Peek() returned nothing while a frame is peeked");
      return;
    }
    const absl::Span<const uint8_t> span = **r;
    CheckSpan(span.data(), span.size(), "Peek");
    if (peeked_.has_value()) {
      FUZZ_CHECK(span.data() == peeked_->first && span.size() == peeked_->second.size(),
                 "a second Peek() returned another span before Release()");
      return;
    }
    std::string copy(reinterpret_cast<const char*>(span.data()), span.size());
    if (!tampered_) {
      FUZZ_CHECK(!model_.empty() && model_.front() == copy, "honest ring: Peek() returned the wrong frame");
    }
    peeked_.emplace(span.data(), std::move(copy));
  }

  // ------------------------------------------------------- hostile values

  uint64_t FieldValue(uint8_t field, uint8_t mode, uint64_t value) const {
    const FieldInfo& f = kFields[field];
    const uint64_t current = LoadAt(peer_.data() + f.offset, f.width);
    const int64_t delta = static_cast<int16_t>(value & 0xffff);
    const bool index = field == kFieldTail || field == kFieldHead;
    const uint64_t other =
        index ? LoadAt(peer_.data() + kFields[field == kFieldTail ? kFieldHead : kFieldTail].offset, 8) : 0;
    switch (mode % 4) {
      case 0:
        return value;
      case 1:
        return current + delta;
      case 2:
        return index ? other + delta : (value & 0xff);
      default:
        if (!index) return uint64_t{1} << (value % 32);
        return field == kFieldTail ? other + capacity_ + delta : other - capacity_ + delta;
    }
  }

  size_t FrameOffset(uint16_t slot) const {
    const uint64_t head = LoadAt(peer_.data() + kFields[kFieldHead].offset, 8);
    return (head + uint64_t{slot} * 8) & (capacity_ - 1) & ~uint64_t{7};
  }

  uint64_t FrameWord(size_t offset, uint8_t len_mode, uint32_t len, uint8_t type_mode, uint32_t type) const {
    uint64_t l;
    switch (len_mode % 4) {
      case 0:
        l = len;
        break;
      case 1:
        l = len % 64;
        break;
      case 2:
        l = capacity_ - offset - 8 + static_cast<int8_t>(len & 0xff);
        break;
      default:
        l = max_frame_ + static_cast<int8_t>(len & 0xff);
        break;
    }
    uint32_t t;
    switch (type_mode % 4) {
      case 0:
        t = ringbuf::kFrameTypeData;
        break;
      case 1:
        t = ringbuf::kFrameTypePadding;
        break;
      case 2:
        t = type;
        break;
      default:
        t = 0;
        break;
    }
    return (l & 0xffffffffu) | (uint64_t{t} << 32);
  }

  // -------------------------------------------------------------- doorbell

  // The peer's powers over the doorbell socket pair. The ring's own ends
  // stand for the peer's copies: a copy received with SCM_RIGHTS shares the
  // open file description (flags, buffers, shutdown state) with them.
  void DoDoorbell() {
    const uint8_t how = in_.U8();
    const uint8_t count = in_.U8();
    const int from = (how & 1) ? ring_.consumer_doorbell_fd() : ring_.producer_doorbell_fd();
    if (how & 2) {
      ClearNonblock(ring_.producer_doorbell_fd());
      ClearNonblock(ring_.consumer_doorbell_fd());
    }
    if (how & 4) {
      (void)FillDoorbell(from);
    } else {
      RingDoorbell(from, count);
    }
    if (how & 8) {
      (void)::shutdown(from, SHUT_RDWR);
      hung_up_ = true;
    }
  }

  // ---------------------------------------------------------------- attach

  void DoAttach() {
    const size_t n = in_.U8() % 8;
    // The second ring consumes, the third produces, each holding a dup of
    // its own end of the doorbell only (as the two processes of a link do).
    auto attach = [this](ringbuf::RingEnd end) {
      absl::StatusOr<SharedRegion> region = SharedRegion::Map(DupOrDie(ring_.region_fd()), ring_.region_size());
      FUZZ_CHECK(region.ok(), absl::StrCat("re-mapping our own ring failed: ", region.status().ToString()));
      const int doorbell =
          end == ringbuf::RingEnd::kProducer ? ring_.producer_doorbell_fd() : ring_.consumer_doorbell_fd();
      absl::StatusOr<Ring> r =
          Ring::Attach(std::move(*region), DupOrDie(doorbell), end, ringbuf::WaitOptions::NoSpin());
      if (!tampered_) {
        FUZZ_CHECK(r.ok(), absl::StrCat("Attach() refused an honest ring: ", r.status().ToString()));
      }
      if (r.ok()) {
        FUZZ_CHECK((end == ringbuf::RingEnd::kProducer) == (r->producer().doorbell_fd() >= 0) &&
                       (end == ringbuf::RingEnd::kConsumer) == (r->consumer().doorbell_fd() >= 0),
                   "Attach() gave the doorbell to the wrong endpoint");
      }
      return r;
    };
    absl::StatusOr<Ring> other = attach(ringbuf::RingEnd::kConsumer);
    absl::StatusOr<Ring> other_producer = attach(ringbuf::RingEnd::kProducer);
    // The header is read the same way both times (no hostile write ran in
    // between, a racing thread aside).
    FUZZ_CHECK(other.ok() == other_producer.ok() || racing_,
               "Attach() accepted the same header for one end and not the other");
    for (size_t i = 0; i < n; ++i) {
      const uint8_t sub = in_.U8();
      const uint16_t arg = in_.U16();
      if (!other.ok() || !other_producer.ok()) continue;
      tampered_ = true;  // a second pair of endpoints moves the indices
      const uint8_t* lo = other->region().data() + kRingHeaderSize;
      const uint8_t* hi = other->region().data() + other->region_size();
      auto check = [&](absl::Span<const uint8_t> s) {
        FUZZ_CHECK(s.size() <= other->MaxFrameSize() && s.data() >= lo && s.data() <= hi &&
                       s.size() <= static_cast<size_t>(hi - s.data()),
                   "attached ring: span outside its data area");
        g_sink = g_sink ^ Touch(s.data(), s.size());
      };
      switch (sub % 4) {
        case 0: {
          auto r = other->consumer().TryRead();
          if (r.ok() && r->has_value()) FUZZ_CHECK((*r)->size() <= other->MaxFrameSize(), "attached TryRead size");
          break;
        }
        case 1: {
          auto r = other->consumer().Peek();
          if (r.ok() && r->has_value()) {
            check(**r);
            (void)other->consumer().Release();
          }
          break;
        }
        case 2:
          (void)other->consumer().Drain(arg % 16, check);
          break;
        default:
          (void)other_producer->producer().Write(Pattern(arg, arg % (other_producer->MaxFrameSize() + 1)),
                                                 absl::InfinitePast());
          break;
      }
    }
  }

  // ------------------------------------------------------------------ race

  struct RaceWrite {
    uint8_t* p;
    int width;
    uint64_t original;
    uint64_t hostile;
  };

  void DoRace() {
    const size_t ops = in_.U8() % 16;
    const size_t n = in_.U8() % 8 + 1;
    std::vector<RaceWrite> writes;
    for (size_t i = 0; i < n; ++i) {
      const uint8_t target = in_.U8();
      const uint64_t value = in_.U64();
      RaceWrite w;
      if (target < kFieldCount) {
        w.p = peer_mem() + kFields[target].offset;
        w.width = kFields[target].width;
      } else {
        w.p = peer_mem() + kRingHeaderSize + FrameOffset(target - kFieldCount);
        w.width = 8;
      }
      w.original = LoadAt(w.p, w.width);
      w.hostile = value;
      writes.push_back(w);
    }
    tampered_ = true;
    const bool was_racing = racing_;
    if (kUnderTsan) {
      for (const RaceWrite& w : writes) StoreAt(w.p, w.width, w.hostile);
      for (size_t i = 0; i < ops && !in_.empty(); ++i) Step(in_.U8() % kRingOpCount);
      return;
    }
    racing_ = true;
    std::atomic<bool> stop{false};
    std::thread racer([&writes, &stop] {
      // relaxed: `stop` only ends the loop; join() orders everything else.
      for (uint64_t k = 0; !stop.load(std::memory_order_relaxed); ++k) {
        const RaceWrite& w = writes[k % writes.size()];
        StoreAt(w.p, w.width, (k / writes.size()) % 2 == 0 ? w.hostile : w.original);
      }
    });
    for (size_t i = 0; i < ops && !in_.empty(); ++i) Step(in_.U8() % kRingOpCount);
    stop.store(true, std::memory_order_relaxed);
    racer.join();
    racing_ = was_racing;
  }

  FuzzInput& in_;
  Ring ring_;
  SharedRegion peer_;  // the hostile peer's own mapping of the memfd
  const uint8_t* data_lo_;
  const uint8_t* data_hi_;
  size_t capacity_;
  size_t max_frame_;

  bool tampered_ = false;
  bool racing_ = false;            // a kRace writer thread runs (nested ops)
  bool hung_up_ = false;           // the peer shut a doorbell end down
  std::deque<std::string> model_;  // committed, not yet consumed (honest run)
  std::optional<std::pair<const uint8_t*, std::string>> peeked_;
  std::optional<std::string> reserved_;
  uint64_t next_seed_ = 1;
  absl::Status before_cons_, before_prod_;
};

}  // namespace
}  // namespace shmesh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmesh_fuzz;  // NOLINT(build/namespaces): a C entry point
  const size_t fds_before = OpenFds();
  {
    FuzzInput in(data, size);
    const size_t capacity = ringbuf::kMinRingCapacity << (in.U8() % 5);
    absl::StatusOr<Ring> ring = Ring::Create(capacity, ringbuf::WaitOptions::NoSpin());
    FUZZ_CHECK(ring.ok(), absl::StrCat("Ring::Create: ", ring.status().ToString()));
    absl::StatusOr<SharedRegion> peer = SharedRegion::Map(DupOrDie(ring->region_fd()), ring->region_size());
    FUZZ_CHECK(peer.ok(), absl::StrCat("SharedRegion::Map: ", peer.status().ToString()));
    RingHarness(in, std::move(*ring), std::move(*peer)).Run();
  }
  const size_t fds_after = OpenFds();
  FUZZ_CHECK(fds_after == fds_before,
             absl::StrCat("descriptor leak: ", fds_before, " open before, ", fds_after, " after"));
  return 0;
}
