// SendPool and Inbox over a real link pair (real memfd rings, doorbells and
// link socket): references, segments handed over with their memfds,
// releases, quotas, the pool limit, retiring, and what a receiver refuses.
#include <sys/mman.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/links/link.h"
#include "mesh/links/link_pair_testutil.h"
#include "mesh/pool/inbox.h"
#include "mesh/pool/pool_ref.h"
#include "mesh/pool/send_pool.h"
#include "testing/temp_dir.h"

namespace mesh {
namespace pool {
namespace {

using ::testing::HasSubstr;

class PoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    auto pair = testing_util::MakeLinkPair(dir_.path(), testing_util::TestLinkParams("a", 1, 1 << 16),
                                           testing_util::TestLinkParams("b", 2, 1 << 16));
    ASSERT_TRUE(pair.ok()) << pair.status();
    a_ = pair->a;
    b_ = pair->b;
  }

  std::shared_ptr<SendPool> MakePool(uint64_t limit, uint64_t quota, uint64_t retain = uint64_t{1} << 40) {
    return SendPool::Create(PoolOptions{"a", limit, quota, retain});
  }

  // b's side: reads every waiting control message into the inbox; returns
  // how many PoolSegment / PoolRetire it saw.
  int ReadControlOnB(Inbox* inbox) {
    int n = 0;
    while (true) {
      auto read = b_->ReadControl();
      EXPECT_TRUE(read.ok()) << read.status();
      if (!read.ok() || !read->has_value()) return n;
      ControlMessage& m = **read;
      if (m.message.has_pool_segment()) {
        EXPECT_TRUE(inbox->AddSegment(m.message.pool_segment(), std::move(m.fds)).ok());
        ++n;
      } else if (m.message.has_pool_retire()) {
        inbox->RetireSegment(m.message.pool_retire().id());
        ++n;
      }
    }
  }

  // b's side: every waiting frame, resolved.
  std::vector<std::shared_ptr<const PooledPayload>> DrainOnB(Inbox* inbox) {
    std::vector<std::shared_ptr<const PooledPayload>> out;
    auto n = b_->Drain(1000, [&](absl::string_view frame) {
      const ParsedFrame p = ParseFrame(frame);
      EXPECT_TRUE(p.ok());
      EXPECT_EQ(p.header.frame_kind(), FrameKind::kPoolRef);
      std::shared_ptr<const PooledPayload> payload;
      EXPECT_EQ(inbox->Resolve(p.payload, uint64_t{1} << 30, &payload), RefError::kNone);
      out.push_back(payload);
      return true;
    });
    EXPECT_TRUE(n.ok());
    return out;
  }

  // a's side: the releases b wrote, into the pool.
  size_t DrainReleasesOnA(SendPool* pool) {
    size_t frames = 0;
    (void)a_->Drain(1000, [&](absl::string_view frame) {
      const ParsedFrame p = ParseFrame(frame);
      EXPECT_EQ(p.header.frame_kind(), FrameKind::kPoolRelease);
      EXPECT_TRUE(IsReleasePayload(p.payload));
      pool->OnRelease(a_.get(), p.payload);
      ++frames;
      return true;
    });
    return frames;
  }

  shmesh::testing::ShortTempDir dir_{"pool-"};
  std::shared_ptr<Link> a_, b_;
};

TEST_F(PoolTest, AReferenceCarriesThePayloadAndTheReleaseFreesTheBlock) {
  auto pool = MakePool(64 << 20, 16 << 20);
  Inboxes inboxes({});
  Inbox* inbox = inboxes.Get(b_);
  {
    auto block = pool->Allocate(100000, absl::InfinitePast());
    ASSERT_TRUE(block.ok()) << block.status();
    EXPECT_GE(block->capacity(), 100000u);
    std::memset(block->data(), 'x', 100000);
    block->data()[99999] = 'z';
    ASSERT_TRUE(pool->SendRef(a_, *block, 0, absl::InfinitePast()).ok());
  }  // the sender's handle is gone; b holds the block
  EXPECT_EQ(pool->stats().blocks_in_use, 1u);
  EXPECT_EQ(ReadControlOnB(inbox), 1);  // the segment, once
  auto got = DrainOnB(inbox);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0]->bytes().size(), 100000u);
  EXPECT_EQ(got[0]->bytes().back(), 'z');
  // Read-only on this side.
  EXPECT_EQ(inboxes.stats().mapped_segments, 1u);
  got.clear();  // releases (flushed at once: not the receive thread)
  EXPECT_EQ(DrainReleasesOnA(pool.get()), 1u);
  const SendPool::Stats s = pool->stats();
  EXPECT_EQ(s.blocks_in_use, 0u);
  EXPECT_EQ(s.bad_releases, 0u);
  EXPECT_EQ(s.sent_messages, 1u);
  EXPECT_EQ(s.sent_bytes, 100000u);
}

TEST_F(PoolTest, TheSegmentIsHandedOverOncePerLinkAndBlocksAreReused) {
  auto pool = MakePool(64 << 20, 16 << 20);
  Inboxes inboxes({});
  Inbox* inbox = inboxes.Get(b_);
  for (int round = 0; round < 5; ++round) {
    auto block = pool->Allocate(65536, absl::InfinitePast());
    ASSERT_TRUE(block.ok());
    std::memset(block->data(), 'a' + round, 65536);
    ASSERT_TRUE(pool->SendRef(a_, *block, 0, absl::InfinitePast()).ok());
    block->Reset();
    EXPECT_EQ(ReadControlOnB(inbox), round == 0 ? 1 : 0);
    auto got = DrainOnB(inbox);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0]->bytes(), std::string(65536, 'a' + round));
    got.clear();
    DrainReleasesOnA(pool.get());
  }
  EXPECT_EQ(pool->stats().segments_created, 1u);
}

TEST_F(PoolTest, AReleasingThreadThatDefersLeavesTheTokensForFlushAll) {
  auto pool = MakePool(64 << 20, 16 << 20);
  Inboxes inboxes({});
  Inbox* inbox = inboxes.Get(b_);
  for (int i = 0; i < 10; ++i) {
    auto block = pool->Allocate(5000, absl::InfinitePast());
    ASSERT_TRUE(pool->SendRef(a_, *block, 0, absl::InfinitePast()).ok());
  }
  ReadControlOnB(inbox);
  SetDeferReleasesOnThisThread(true);
  DrainOnB(inbox).clear();
  SetDeferReleasesOnThisThread(false);
  EXPECT_TRUE(inboxes.AnyPending());
  EXPECT_EQ(DrainReleasesOnA(pool.get()), 0u);
  EXPECT_TRUE(inboxes.FlushAll());
  EXPECT_FALSE(inboxes.AnyPending());
  EXPECT_EQ(DrainReleasesOnA(pool.get()), 1u);  // one frame, ten tokens
  EXPECT_EQ(pool->stats().blocks_in_use, 0u);
}

TEST_F(PoolTest, APeerOverItsQuotaGetsNothingMoreUntilItReleases) {
  auto pool = MakePool(64 << 20, 256 << 10);  // 4 blocks of 64 KiB
  Inboxes inboxes({});
  Inbox* inbox = inboxes.Get(b_);
  std::vector<BlockHandle> blocks;
  for (int i = 0; i < 5; ++i) blocks.push_back(*pool->Allocate(65536, absl::InfinitePast()));
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(pool->SendRef(a_, blocks[i], 0, absl::InfinitePast()).ok());
  absl::Status s = pool->SendRef(a_, blocks[4], 0, absl::InfinitePast());
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("pool.peer_quota_bytes"));
  s = pool->SendRef(a_, blocks[4], 0, absl::Now() + absl::Milliseconds(20));
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  // A waiting send goes once the peer releases.
  std::thread sender([&] { s = pool->SendRef(a_, blocks[4], 0, absl::Now() + absl::Seconds(10)); });
  absl::SleepFor(absl::Milliseconds(20));
  ReadControlOnB(inbox);
  auto got = DrainOnB(inbox);
  ASSERT_EQ(got.size(), 4u);
  got.clear();
  DrainReleasesOnA(pool.get());
  sender.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(pool->stats().held_by.size(), 1u);
}

TEST_F(PoolTest, LinkGoneReleasesEverythingThePeerHeld) {
  auto pool = MakePool(64 << 20, 16 << 20);
  for (int i = 0; i < 3; ++i) {
    auto block = pool->Allocate(70000, absl::InfinitePast());
    ASSERT_TRUE(pool->SendRef(a_, *block, 0, absl::InfinitePast()).ok());
  }
  EXPECT_EQ(pool->stats().blocks_in_use, 3u);
  ASSERT_EQ(pool->stats().held_by.size(), 1u);
  EXPECT_EQ(pool->stats().held_by[0].peer, "b");
  a_->MarkDown();
  pool->LinkGone(a_.get());
  EXPECT_EQ(pool->stats().blocks_in_use, 0u);
  EXPECT_TRUE(pool->stats().held_by.empty());
  // A down link takes nothing new.
  auto block = pool->Allocate(70000, absl::InfinitePast());
  EXPECT_TRUE(absl::IsUnavailable(pool->SendRef(a_, *block, 0, absl::InfinitePast())));
}

TEST_F(PoolTest, TheLimitMakesAllocateWaitForAFreeBlock) {
  auto pool = MakePool(8 << 20, 8 << 20);  // two 4 MiB segments
  auto x = pool->Allocate(4 << 20, absl::InfinitePast());
  auto y = pool->Allocate(4 << 20, absl::InfinitePast());
  ASSERT_TRUE(x.ok() && y.ok());
  auto z = pool->Allocate(4 << 20, absl::InfinitePast());
  EXPECT_TRUE(absl::IsResourceExhausted(z.status())) << z.status();
  EXPECT_THAT(std::string(z.status().message()), HasSubstr("pool is full"));
  EXPECT_TRUE(absl::IsInvalidArgument(pool->Allocate(9 << 20, absl::InfinitePast()).status()));
  std::thread freer([&] {
    absl::SleepFor(absl::Milliseconds(20));
    x->Reset();
  });
  z = pool->Allocate(4 << 20, absl::Now() + absl::Seconds(10));
  freer.join();
  EXPECT_TRUE(z.ok()) << z.status();
}

TEST_F(PoolTest, AFreeSegmentPastRetainBytesIsRetiredAndThePeerTold) {
  // A block larger than any class keeps warm (256 MiB; untouched, so
  // nothing becomes resident).
  auto pool = MakePool(uint64_t{1} << 30, uint64_t{1} << 30, /*retain=*/0);
  Inboxes inboxes({});
  Inbox* inbox = inboxes.Get(b_);
  auto block = pool->Allocate(512 << 20, absl::InfinitePast());
  ASSERT_TRUE(pool->SendRef(a_, *block, 0, absl::InfinitePast()).ok());
  block->Reset();
  EXPECT_EQ(ReadControlOnB(inbox), 1);
  auto got = DrainOnB(inbox);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(inbox->mapped_segments(), 1u);
  got.clear();
  DrainReleasesOnA(pool.get());
  EXPECT_EQ(pool->stats().segments, 0u);
  EXPECT_EQ(pool->stats().segments_retired, 1u);
  EXPECT_EQ(ReadControlOnB(inbox), 1);  // the PoolRetire
  EXPECT_EQ(inbox->mapped_segments(), 0u);
}

TEST_F(PoolTest, FreeWarmSegmentsAreKeptPastRetainBytes) {
  // 8 MiB blocks: the class's working set (32 blocks, 256 MiB) stays free
  // for reuse even with retain_bytes 0, so a stream of 8 MiB messages
  // reuses warm memory; what is beyond it is dropped.
  auto pool = MakePool(uint64_t{1} << 30, uint64_t{1} << 30, /*retain=*/0);
  std::vector<BlockHandle> blocks;
  for (int i = 0; i < 34; ++i) blocks.push_back(*pool->Allocate(8 << 20, absl::Now() + absl::Seconds(5)));
  EXPECT_EQ(pool->stats().segments, 34u);
  blocks.clear();
  EXPECT_EQ(pool->stats().segments, 32u);  // two dropped, the working set kept
  for (int i = 0; i < 32; ++i) blocks.push_back(*pool->Allocate(8 << 20, absl::InfinitePast()));
  EXPECT_EQ(pool->stats().segments_created, 34u);  // reused, not made
}

TEST_F(PoolTest, AClassWithWarmBlocksAllInUseWaitsBrieflyForOneBeforeGrowing) {
  // 4 blocks of 64 MiB: the class's working set (256 MiB), untouched.
  auto pool = MakePool(uint64_t{2} << 30, uint64_t{2} << 30);
  std::vector<BlockHandle> blocks;
  for (int i = 0; i < 4; ++i) blocks.push_back(*pool->Allocate(64 << 20, absl::InfinitePast()));
  std::thread freer([&] {
    absl::SleepFor(absl::Milliseconds(2));
    blocks[0].Reset();
  });
  auto next = pool->Allocate(64 << 20, absl::Now() + absl::Seconds(5));
  freer.join();
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(pool->stats().segments_created, 4u);  // the released one, reused
  // Nothing released within the patience: it grows.
  auto more = pool->Allocate(64 << 20, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(pool->stats().segments_created, 5u);
}

TEST_F(PoolTest, ReleasesOfBlocksThePeerDoesNotHoldAreCountedAndIgnored) {
  auto pool = MakePool(64 << 20, 16 << 20);
  auto block = pool->Allocate(5000, absl::InfinitePast());
  ASSERT_TRUE(pool->SendRef(a_, *block, 0, absl::InfinitePast()).ok());
  block->Reset();
  std::string forged(16, '\0');
  const uint64_t t1 = 0xdeadbeef, t2 = uint64_t{1} << 32 | 7;
  std::memcpy(&forged[0], &t1, 8);
  std::memcpy(&forged[8], &t2, 8);
  pool->OnRelease(a_.get(), forged);
  pool->OnRelease(b_.get(), forged);  // a link that never got anything
  EXPECT_EQ(pool->stats().bad_releases, 4u);
  EXPECT_EQ(pool->stats().blocks_in_use, 1u);
}

TEST_F(PoolTest, TheInboxRefusesBadSegmentsAndBadReferences) {
  Inboxes inboxes({2, nullptr});
  Inbox* inbox = inboxes.Get(b_);
  mesh::v1::LinkControl::PoolSegment seg;
  seg.set_id(7);
  seg.set_size(1 << 16);
  // Not sealed.
  {
    std::vector<base::UniqueFd> fds;
    fds.emplace_back(::memfd_create("unsealed", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(fds[0].get(), 1 << 16), 0);
    absl::Status s = inbox->AddSegment(seg, std::move(fds));
    EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("F_SEAL_SHRINK"));
  }
  auto sealed = [](size_t size) {
    auto r = ringbuf::SharedRegion::Create("t", size);
    std::vector<base::UniqueFd> fds;
    fds.emplace_back(::dup(r->fd()));
    return fds;
  };
  // Not the announced size; no descriptor; id 0.
  EXPECT_TRUE(absl::IsInvalidArgument(inbox->AddSegment(seg, sealed(1 << 12))));
  EXPECT_TRUE(absl::IsInvalidArgument(inbox->AddSegment(seg, {})));
  seg.set_id(0);
  EXPECT_TRUE(absl::IsInvalidArgument(inbox->AddSegment(seg, sealed(1 << 16))));
  seg.set_id(7);
  ASSERT_TRUE(inbox->AddSegment(seg, sealed(1 << 16)).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(inbox->AddSegment(seg, sealed(1 << 16))));  // twice
  seg.set_id(8);
  ASSERT_TRUE(inbox->AddSegment(seg, sealed(1 << 16)).ok());
  seg.set_id(9);
  EXPECT_TRUE(absl::IsResourceExhausted(inbox->AddSegment(seg, sealed(1 << 16))));  // max 2
  // References.
  auto ref = [](PoolRef r) {
    char b[kPoolRefBytes];
    EncodePoolRef(r, b);
    return std::string(b, kPoolRefBytes);
  };
  std::shared_ptr<const PooledPayload> out;
  EXPECT_EQ(inbox->Resolve(ref({7, 0, 100, 1}), 1000, &out), RefError::kNone);
  EXPECT_EQ(out->bytes().size(), 100u);
  EXPECT_EQ(inbox->Resolve(ref({7, 0, 100, 1}).substr(1), 1000, &out), RefError::kBadSize);
  EXPECT_EQ(inbox->Resolve(ref({0, 0, 100, 1}), 1000, &out), RefError::kBadFields);
  EXPECT_EQ(inbox->Resolve(ref({5, 0, 100, 1}), 1000, &out), RefError::kUnknownSegment);
  EXPECT_EQ(inbox->Resolve(ref({7, 65000, 537, 1}), 1 << 20, &out), RefError::kOutOfBounds);
  EXPECT_EQ(inbox->Resolve(ref({7, 65536, 0, 1}), 1 << 20, &out), RefError::kNone);  // empty, at the end
  EXPECT_EQ(inbox->Resolve(ref({7, 65537, 0, 1}), 1 << 20, &out), RefError::kOutOfBounds);
  EXPECT_EQ(inbox->Resolve(ref({7, 8, ~uint64_t{0} - 4, 1}), ~uint64_t{0}, &out), RefError::kOutOfBounds);
  EXPECT_EQ(inbox->Resolve(ref({7, 0, 2000, 1}), 1000, &out), RefError::kTooLong);
  std::string reserved = ref({7, 0, 1, 1});
  reserved[5] = 1;
  EXPECT_EQ(inbox->Resolve(reserved, 1000, &out), RefError::kBadFields);
}

TEST_F(PoolTest, APayloadOutlivesTheSegmentsRetirementAndTheInbox) {
  auto pool = MakePool(64 << 20, 16 << 20);
  std::shared_ptr<const PooledPayload> kept;
  {
    Inboxes inboxes({});
    Inbox* inbox = inboxes.Get(b_);
    auto block = pool->Allocate(5000, absl::InfinitePast());
    std::memset(block->data(), 'k', 5000);
    ASSERT_TRUE(pool->SendRef(a_, *block, 0, absl::InfinitePast()).ok());
    ReadControlOnB(inbox);
    auto got = DrainOnB(inbox);
    ASSERT_EQ(got.size(), 1u);
    kept = got[0];
    pool.reset();  // the sender's pool is gone (the sender died)
  }  // and so is the receiving node's inbox
  EXPECT_EQ(kept->bytes(), std::string(5000, 'k'));
  kept.reset();  // a release to a closed inbox: dropped
}

}  // namespace
}  // namespace pool
}  // namespace mesh
