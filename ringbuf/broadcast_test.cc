// The broadcast ring over real memfds and doorbell socket pairs: every
// consumer gets every frame in order (threads, and forked processes), a
// stopped consumer is evicted at the write's deadline and the others go
// on, history, sleep and wake-up, and the hostile cases: impossible heads,
// consumers that try to write the region, a corrupt region.
#include "ringbuf/broadcast.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ringbuf/internal/test_util.h"

namespace ringbuf {
namespace {

using ::testing::HasSubstr;
using testing_internal::DupOrDie;

constexpr size_t kSmall = 4096;

BroadcastOptions Options(size_t capacity, size_t history = 0) {
  BroadcastOptions o;
  o.capacity = capacity;
  o.history_frames = history;
  return o;
}

// A consumer added to `p` at `start` and opened as its process would; its
// id in *id, and a copy of its cursor page's memfd in *page (a consumer
// that writes its own page).
BroadcastConsumer AddConsumer(BroadcastProducer& p, uint64_t start, uint32_t* id = nullptr,
                              base::UniqueFd* page = nullptr) {
  absl::StatusOr<BroadcastProducer::NewConsumer> added = p.AddConsumer(start);
  EXPECT_TRUE(added.ok()) << added.status();
  if (!added.ok()) std::abort();
  if (id != nullptr) *id = added->id;
  if (page != nullptr) *page = DupOrDie(added->cursor_fd.get());
  absl::StatusOr<BroadcastConsumer> c = BroadcastConsumer::Open(
      DupOrDie(p.region_fd()), std::move(added->cursor_fd), std::move(added->doorbell_fd), p.capacity(), start);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) std::abort();
  return std::move(*c);
}

// A consumer of a region made by hand (a hostile or frozen producer), with
// a cursor page and doorbell of its own.
absl::StatusOr<BroadcastConsumer> OpenOn(const SharedRegion& region, uint64_t start) {
  absl::StatusOr<SharedRegion> page = SharedRegion::Create("page", kBroadcastCursorBytes);
  if (!page.ok()) return page.status();
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) return absl::InternalError("socketpair");
  ::close(pair[1]);
  return BroadcastConsumer::Open(DupOrDie(region.fd()), DupOrDie(page->fd()), base::UniqueFd(pair[0]), kSmall, start);
}

// Payload i: its number, then (i % 200) bytes derived from it.
std::string Payload(uint64_t i) {
  std::string s(8 + i % 200, '\0');
  std::memcpy(s.data(), &i, 8);
  for (size_t k = 8; k < s.size(); ++k) s[k] = static_cast<char>(i * 31 + k);
  return s;
}

// Reads until OUT_OF_RANGE (the producer is gone), sleeping on the
// doorbell when idle; checks that frame k is Payload(k). Returns the count,
// or -1 after the first failure (reported).
int64_t ReadAll(BroadcastConsumer& c, uint64_t first) {
  uint64_t next = first;
  for (;;) {
    absl::StatusOr<size_t> n = c.Drain(64, [&](absl::Span<const uint8_t> f) {
      const std::string want = Payload(next);
      if (f.size() != want.size() || std::memcmp(f.data(), want.data(), want.size()) != 0) {
        ADD_FAILURE() << "frame " << next << " is wrong (" << f.size() << " bytes)";
        return false;
      }
      ++next;
      return true;
    });
    if (absl::IsOutOfRange(n.status())) return static_cast<int64_t>(next - first);
    if (!n.ok()) {
      ADD_FAILURE() << n.status();
      return -1;
    }
    if (*n == 0 && c.PrepareToSleep()) {
      pollfd p{c.doorbell_fd(), POLLIN, 0};
      ::poll(&p, 1, 1000);
      (void)c.ClearDoorbell();
    }
  }
}

TEST(BroadcastTest, EveryConsumerGetsEveryFrameInOrder) {
  constexpr uint64_t kFrames = 20000;
  std::optional<BroadcastProducer> p;
  {
    absl::StatusOr<BroadcastProducer> made = BroadcastProducer::Create("bt", Options(kSmall));
    ASSERT_TRUE(made.ok()) << made.status();
    p.emplace(std::move(*made));
  }
  std::vector<BroadcastConsumer> consumers;
  for (int i = 0; i < 3; ++i) consumers.push_back(AddConsumer(*p, 0));
  std::vector<int64_t> got(consumers.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < consumers.size(); ++i) {
    threads.emplace_back([&, i] { got[i] = ReadAll(consumers[i], 0); });
  }
  std::vector<BroadcastEviction> evicted;
  for (uint64_t i = 0; i < kFrames; ++i) {
    const std::string payload = Payload(i);
    // The first 8 bytes as a prefix, the rest as the payload.
    ASSERT_TRUE(p->Write(absl::string_view(payload).substr(0, 8), absl::string_view(payload).substr(8),
                         absl::InfiniteFuture(), &evicted)
                    .ok());
  }
  p.reset();  // closed: the consumers end with OUT_OF_RANGE
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(evicted.empty());
  for (int64_t n : got) EXPECT_EQ(n, static_cast<int64_t>(kFrames));
}

TEST(BroadcastTest, ConsumersInOtherProcessesGetEveryFrame) {
  constexpr uint64_t kFrames = 20000;
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok()) << p.status();
  std::vector<pid_t> children;
  for (int i = 0; i < 2; ++i) {
    BroadcastConsumer c = AddConsumer(*p, 0);
    // The child inherits the mappings and the doorbell end.
    children.push_back(testing_internal::ForkChild([&c] { return ReadAll(c, 0) == kFrames ? 0 : 1; }));
  }
  for (uint64_t i = 0; i < kFrames; ++i) {
    const std::string payload = Payload(i);
    ASSERT_TRUE(p->Write("", payload, absl::InfiniteFuture(), nullptr).ok());
  }
  // Closing: ~BroadcastProducer marks the region closed and rings.
  { BroadcastProducer gone = std::move(*p); }
  for (pid_t child : children) EXPECT_EQ(testing_internal::WaitChild(child), 0);
}

TEST(BroadcastTest, AStoppedConsumerIsEvictedAtTheDeadlineAndTheOthersGoOn) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok());
  uint32_t stopped_id = 0;
  BroadcastConsumer stopped = AddConsumer(*p, 0, &stopped_id);
  BroadcastConsumer live = AddConsumer(*p, 0);
  std::vector<BroadcastEviction> evicted;
  uint64_t live_next = 0;
  auto drain_live = [&] {
    ASSERT_TRUE(live.Drain(1000, [&](absl::Span<const uint8_t> f) {
                       uint64_t k = 0;
                       std::memcpy(&k, f.data(), 8);
                       EXPECT_EQ(k, live_next);
                       ++live_next;
                       return true;
                     })
                    .ok());
  };
  uint64_t i = 0;
  absl::Time evicted_at = absl::InfinitePast();
  const absl::Duration kDeadline = absl::Milliseconds(30);
  for (; i < 500; ++i) {
    const absl::Time start = absl::Now();
    ASSERT_TRUE(p->Write("", Payload(i), start + kDeadline, &evicted).ok());
    if (!evicted.empty() && evicted_at == absl::InfinitePast()) {
      evicted_at = absl::Now();
      // Held back no longer than the deadline (and a nap).
      EXPECT_GE(evicted_at - start, kDeadline);
      EXPECT_LT(evicted_at - start, kDeadline + absl::Seconds(1));
    }
    drain_live();
  }
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0].id, stopped_id);
  EXPECT_THAT(evicted[0].why, HasSubstr("past the write's deadline"));
  EXPECT_EQ(p->consumers(), 1u);
  EXPECT_EQ(live_next, 500u);
  // The stopped consumer learns it when it runs again; nothing torn.
  absl::StatusOr<size_t> n = stopped.Drain(1000, [](absl::Span<const uint8_t>) { return true; });
  EXPECT_TRUE(absl::IsDataLoss(n.status())) << n.status();
  EXPECT_THAT(n.status().message(), HasSubstr("evicted"));
  // Sticky.
  EXPECT_TRUE(absl::IsDataLoss(stopped.Drain(1, [](absl::Span<const uint8_t>) { return true; }).status()));
}

TEST(BroadcastTest, AConsumerThatIgnoresItsEvictionNeverGetsAnOverwrittenFrame) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok());
  base::UniqueFd stubborn_page;
  BroadcastConsumer stubborn = AddConsumer(*p, 0, nullptr, &stubborn_page);
  std::vector<BroadcastEviction> evicted;
  // Fill the ring and more: the consumer is evicted and its frames reused.
  for (uint64_t i = 0; i < 200; ++i) ASSERT_TRUE(p->Write("", Payload(i), absl::InfinitePast(), &evicted).ok());
  ASSERT_EQ(evicted.size(), 1u);
  // It clears the eviction flag in its own page and reads on.
  absl::StatusOr<SharedRegion> page = SharedRegion::Map(std::move(stubborn_page), kBroadcastCursorBytes);
  ASSERT_TRUE(page.ok());
  reinterpret_cast<BroadcastCursor*>(page->data())->evicted.store(0);
  bool called = false;
  absl::StatusOr<size_t> n = stubborn.Drain(1000, [&](absl::Span<const uint8_t>) {
    called = true;
    return true;
  });
  EXPECT_TRUE(absl::IsDataLoss(n.status())) << n.status();
  EXPECT_THAT(n.status().message(), HasSubstr("overwrote"));
  EXPECT_FALSE(called);
}

TEST(BroadcastTest, APastDeadlineEvictsAtOnce) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok());
  BroadcastConsumer idle = AddConsumer(*p, 0);
  std::vector<BroadcastEviction> evicted;
  const absl::Time start = absl::Now();
  for (int i = 0; i < 100 && evicted.empty(); ++i) {
    ASSERT_TRUE(p->Write("", std::string(100, 'x'), absl::InfinitePast(), &evicted).ok());
  }
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  EXPECT_EQ(evicted.size(), 1u);
  EXPECT_EQ(p->consumers(), 0u);
}

TEST(BroadcastTest, ALateConsumerGetsTheHistoryThenTheLiveFrames) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall, 5));
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->history_start(), 0u);
  for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(p->Write("", Payload(i), absl::InfiniteFuture(), nullptr).ok());
  BroadcastConsumer late = AddConsumer(*p, p->history_start());
  for (uint64_t i = 10; i < 15; ++i) ASSERT_TRUE(p->Write("", Payload(i), absl::InfiniteFuture(), nullptr).ok());
  std::vector<uint64_t> got;
  ASSERT_TRUE(late.Drain(100, [&](absl::Span<const uint8_t> f) {
                     uint64_t k = 0;
                     std::memcpy(&k, f.data(), 8);
                     got.push_back(k);
                     return true;
                   })
                  .ok());
  EXPECT_EQ(got, (std::vector<uint64_t>{5, 6, 7, 8, 9, 10, 11, 12, 13, 14}));
}

TEST(BroadcastTest, HistoryNeverHoldsBackAWrite) {
  // Room for about 20 frames, a history of 1000: the oldest go.
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall, 1000));
  ASSERT_TRUE(p.ok());
  for (uint64_t i = 0; i < 1000; ++i) {
    ASSERT_TRUE(p->Write("", std::string(200, 'h'), absl::InfinitePast(), nullptr).ok());
  }
  EXPECT_LE(p->tail() - p->history_start(), kSmall);
  EXPECT_GT(p->tail() - p->history_start(), kSmall / 2);
  // A consumer at the history's start reads every frame still there.
  BroadcastConsumer late = AddConsumer(*p, p->history_start());
  size_t n = 0;
  absl::StatusOr<size_t> drained = late.Drain(1000, [&](absl::Span<const uint8_t> f) {
    n += f.size() == 200;
    return true;
  });
  ASSERT_TRUE(drained.ok()) << drained.status();
  EXPECT_EQ(*drained, n);
  EXPECT_GE(n, 10u);
}

TEST(BroadcastTest, AddConsumerAndOpenCheckTheirArguments) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->Write("", "a frame", absl::InfiniteFuture(), nullptr).ok());
  // A start inside a frame, or past the tail.
  for (uint64_t bad : {uint64_t{8}, p->tail() + 8}) {
    absl::StatusOr<BroadcastProducer::NewConsumer> a = p->AddConsumer(bad);
    EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
    EXPECT_THAT(a.status().message(), HasSubstr("neither the tail"));
  }
  absl::StatusOr<BroadcastProducer::NewConsumer> good = p->AddConsumer(p->tail());
  ASSERT_TRUE(good.ok());
  // Open: a doorbell that is not a socket.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  base::UniqueFd keep(fds[1]);
  absl::StatusOr<BroadcastConsumer> c = BroadcastConsumer::Open(
      DupOrDie(p->region_fd()), DupOrDie(good->cursor_fd.get()), base::UniqueFd(fds[0]), kSmall, p->tail());
  EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << c.status();
  // A cursor page that is not a sealed memfd of the right size.
  absl::StatusOr<SharedRegion> wrong = SharedRegion::Create("x", 8192);
  ASSERT_TRUE(wrong.ok());
  c = BroadcastConsumer::Open(DupOrDie(p->region_fd()), DupOrDie(wrong->fd()), DupOrDie(good->doorbell_fd.get()),
                              kSmall, p->tail());
  EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << c.status();
  // A start that is not aligned; a capacity that is not the region's.
  c = BroadcastConsumer::Open(DupOrDie(p->region_fd()), DupOrDie(good->cursor_fd.get()),
                              DupOrDie(good->doorbell_fd.get()), kSmall, 3);
  EXPECT_TRUE(absl::IsInvalidArgument(c.status())) << c.status();
  c = BroadcastConsumer::Open(DupOrDie(p->region_fd()), DupOrDie(good->cursor_fd.get()),
                              DupOrDie(good->doorbell_fd.get()), kSmall * 2, p->tail());
  EXPECT_FALSE(c.ok());
  // The right ones.
  c = BroadcastConsumer::Open(DupOrDie(p->region_fd()), std::move(good->cursor_fd), std::move(good->doorbell_fd),
                              kSmall, p->tail());
  EXPECT_TRUE(c.ok()) << c.status();
  // max_consumers.
  BroadcastOptions one = Options(kSmall);
  one.max_consumers = 1;
  absl::StatusOr<BroadcastProducer> small = BroadcastProducer::Create("bt", one);
  ASSERT_TRUE(small.ok());
  ASSERT_TRUE(small->AddConsumer(0).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(small->AddConsumer(0).status()));
}

TEST(BroadcastTest, AnImpossibleHeadIsEvictedAndTheOthersGoOn) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok());
  uint32_t liar_id = 0;
  base::UniqueFd liar_page;
  BroadcastConsumer liar = AddConsumer(*p, 0, &liar_id, &liar_page);
  BroadcastConsumer honest = AddConsumer(*p, 0);
  // The liar writes its own page: a head past everything published.
  absl::StatusOr<SharedRegion> page = SharedRegion::Map(std::move(liar_page), kBroadcastCursorBytes);
  ASSERT_TRUE(page.ok());
  reinterpret_cast<BroadcastCursor*>(page->data())->head.store(1 << 20);
  std::vector<BroadcastEviction> evicted;
  for (uint64_t i = 0; i < 100; ++i) {
    ASSERT_TRUE(p->Write("", Payload(i), absl::Now() + absl::Seconds(5), &evicted).ok());
    ASSERT_TRUE(honest.Drain(100, [](absl::Span<const uint8_t>) { return true; }).ok());
  }
  ASSERT_EQ(evicted.size(), 1u);
  EXPECT_EQ(evicted[0].id, liar_id);
  EXPECT_THAT(evicted[0].why, HasSubstr("impossible"));
  EXPECT_EQ(honest.head(), p->tail());
}

TEST(BroadcastTest, ConsumersCannotWriteTheRegion) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok());
  const size_t bytes = kBroadcastHeaderSize + kSmall;
  base::UniqueFd fd = DupOrDie(p->region_fd());
  // No writable shared mapping of it...
  void* w = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  EXPECT_EQ(w, MAP_FAILED);
  // ...nor a read-only one made writable later...
  void* r = ::mmap(nullptr, bytes, PROT_READ, MAP_SHARED, fd.get(), 0);
  ASSERT_NE(r, MAP_FAILED);
  EXPECT_NE(::mprotect(r, bytes, PROT_READ | PROT_WRITE), 0);
  ::munmap(r, bytes);
  // ...nor write(2).
  char byte = 1;
  EXPECT_LT(::pwrite(fd.get(), &byte, 1, kBroadcastHeaderSize), 0);
  // And a consumer refuses a region others could write.
  absl::StatusOr<SharedRegion> open = SharedRegion::Create("plain", bytes);
  ASSERT_TRUE(open.ok());
  absl::StatusOr<BroadcastConsumer> c = OpenOn(*open, 0);
  EXPECT_TRUE(absl::IsFailedPrecondition(c.status())) << c.status();
  EXPECT_THAT(c.status().message(), HasSubstr("F_SEAL_FUTURE_WRITE"));
}

// A hostile producer: a region it made by hand, with garbage in it.
TEST(BroadcastTest, ACorruptRegionFailsTheConsumerCleanly) {
  const size_t bytes = kBroadcastHeaderSize + kSmall;
  auto make = [&](uint64_t tail, uint64_t frame_word) {
    absl::StatusOr<SharedRegion> r = SharedRegion::CreateWriterOnly("evil", bytes);
    EXPECT_TRUE(r.ok());
    auto* h = new (r->data()) BroadcastHeader;
    h->magic = kBroadcastMagic;
    h->version = kBroadcastVersion;
    h->header_size = kBroadcastHeaderSize;
    h->capacity = kSmall;
    h->tail.store(tail);
    h->reserved_end.store(0);  // (a lie too: else a long tail reads as "lapped")
    std::memcpy(r->data() + kBroadcastHeaderSize, &frame_word, 8);
    return std::move(*r);
  };
  const uint64_t data = uint64_t{kFrameTypeData} << 32;
  struct Case {
    uint64_t tail;
    uint64_t word;
    const char* what;
  } cases[] = {
      {kSmall + 8, data | 8, "tail"},                       // more than the ring holds
      {12, data | 4, "tail"},                               // not aligned
      {64, data | 100000, "frame"},                         // longer than a frame may be
      {64, data | 100, "frame"},                            // runs past the tail
      {64, (uint64_t{0x12345678} << 32) | 8, "frame of type"},  // unknown type
      {64, (uint64_t{kFrameTypePadding} << 32) | 8, "padding"},  // padding not to the end
  };
  for (const Case& k : cases) {
    SharedRegion r = make(k.tail, k.word);
    absl::StatusOr<BroadcastConsumer> c = OpenOn(r, 0);
    ASSERT_TRUE(c.ok()) << c.status();
    bool called = false;
    absl::StatusOr<size_t> n = c->Drain(10, [&](absl::Span<const uint8_t>) {
      called = true;
      return true;
    });
    EXPECT_TRUE(absl::IsDataLoss(n.status())) << k.what << ": " << n.status();
    EXPECT_THAT(n.status().message(), HasSubstr(k.what));
    EXPECT_FALSE(called) << k.what;
  }
  // Wrong magic or capacity: refused at Open.
  SharedRegion r = make(0, 0);
  reinterpret_cast<BroadcastHeader*>(r.data())->magic = 1;
  EXPECT_TRUE(absl::IsInvalidArgument(OpenOn(r, 0).status()));
}

// The producer began to overwrite the frame while the consumer copied it
// (reserved_end already past it, the tail not yet): as a region caught in
// that instant shows it.
TEST(BroadcastTest, AFrameOverwrittenWhileItIsCopiedIsNotHandedOn) {
  absl::StatusOr<SharedRegion> r = SharedRegion::CreateWriterOnly("mid-write", kBroadcastHeaderSize + kSmall);
  ASSERT_TRUE(r.ok());
  auto* h = new (r->data()) BroadcastHeader;
  h->magic = kBroadcastMagic;
  h->version = kBroadcastVersion;
  h->header_size = kBroadcastHeaderSize;
  h->capacity = kSmall;
  const uint64_t word = 8 | (uint64_t{kFrameTypeData} << 32);
  std::memcpy(r->data() + kBroadcastHeaderSize, &word, 8);
  h->tail.store(16);
  h->reserved_end.store(kSmall + 8);  // writing [kSmall, kSmall + 8): our frame's bytes
  absl::StatusOr<BroadcastConsumer> c = OpenOn(*r, 0);
  ASSERT_TRUE(c.ok());
  bool called = false;
  absl::StatusOr<size_t> n = c->Drain(10, [&](absl::Span<const uint8_t>) {
    called = true;
    return true;
  });
  EXPECT_TRUE(absl::IsDataLoss(n.status())) << n.status();
  EXPECT_THAT(n.status().message(), HasSubstr("overwrote"));
  EXPECT_FALSE(called);
  // Once the write is done with the first 8 bytes only (reserved_end at
  // kSmall), the frame is whole: a fresh consumer gets it.
  h->reserved_end.store(kSmall);
  absl::StatusOr<BroadcastConsumer> c2 = OpenOn(*r, 0);
  ASSERT_TRUE(c2.ok());
  n = c2->Drain(10, [](absl::Span<const uint8_t>) { return true; });
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 1u);
}

TEST(BroadcastTest, ASleepingConsumerIsWokenByTheNextFrame) {
  absl::StatusOr<BroadcastProducer> p = BroadcastProducer::Create("bt", Options(kSmall));
  ASSERT_TRUE(p.ok());
  BroadcastConsumer c = AddConsumer(*p, 0);
  ASSERT_TRUE(c.PrepareToSleep());
  pollfd fd{c.doorbell_fd(), POLLIN, 0};
  EXPECT_EQ(::poll(&fd, 1, 0), 0);
  ASSERT_TRUE(p->Write("", "wake", absl::InfiniteFuture(), nullptr).ok());
  EXPECT_EQ(::poll(&fd, 1, 5000), 1);
  ASSERT_TRUE(c.ClearDoorbell().ok());
  // With a frame waiting it does not sleep (and withdraws its request: the
  // next write does not ring).
  EXPECT_FALSE(c.PrepareToSleep());
  ASSERT_TRUE(p->Write("", "more", absl::InfiniteFuture(), nullptr).ok());
  EXPECT_EQ(::poll(&fd, 1, 0), 0);
  absl::StatusOr<size_t> n = c.Drain(10, [](absl::Span<const uint8_t>) { return true; });
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 2u);
}

}  // namespace
}  // namespace ringbuf
