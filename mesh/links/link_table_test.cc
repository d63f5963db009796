#include "mesh/links/link_table.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"

namespace mesh {
namespace {

// A transport that only has a name and a down flag: the table never sends
// or receives, so nothing else is needed (no OS object is involved).
class NamedTransport : public Transport {
 public:
  explicit NamedTransport(std::string name) { peer_.set_name(std::move(name)); }
  const mesh::v1::Member& peer() const override { return peer_; }
  absl::Time since() const override { return absl::UnixEpoch(); }
  absl::Duration handshake() const override { return absl::ZeroDuration(); }
  size_t MaxPayload(size_t) const override { return 0; }
  absl::Status SendFrame(absl::string_view, absl::string_view, absl::Time) override {
    return absl::FailedPreconditionError("the link table never sends");
  }
  absl::Status SendFrames(absl::string_view, absl::Span<const absl::string_view>, absl::Time, size_t*) override {
    return absl::FailedPreconditionError("the link table never sends");
  }
  absl::Status SendInPlace(size_t, absl::Time, absl::FunctionRef<size_t(absl::Span<uint8_t>)>) override {
    return absl::FailedPreconditionError("the link table never sends");
  }
  absl::Status SendControl(const mesh::v1::LinkControl&, absl::Span<const int>) override {
    return absl::FailedPreconditionError("the link table never sends");
  }
  absl::StatusOr<std::optional<ControlMessage>> ReadControl() override { return std::nullopt; }
  WaitHandles wait_handles() const override { return {}; }
  absl::StatusOr<size_t> Drain(size_t, absl::FunctionRef<bool(absl::string_view)>) override { return 0; }
  bool PrepareToSleep() override { return true; }
  bool BorrowConsumer() override { return false; }
  absl::StatusOr<size_t> DrainBorrowed(size_t, absl::FunctionRef<bool(absl::string_view)>) override { return 0; }
  bool ReturnConsumer() override { return false; }
  bool ConsumerLent() const override { return false; }
  absl::Status ClearDoorbell() override { return absl::OkStatus(); }
  bool MarkDown() override { return !down_.exchange(true); }
  bool down() const override { return down_.load(); }
  LinkStats Stats() const override { return {}; }
  void BeatHeartbeat() override {}
  bool CheckPeerLiveness(absl::Time, absl::Duration) override { return false; }
  absl::Time unresponsive_since() const override { return absl::InfiniteFuture(); }

 private:
  mesh::v1::Member peer_;
  std::atomic<bool> down_{false};
};

std::shared_ptr<Transport> Make(const std::string& name) { return std::make_shared<NamedTransport>(name); }

TEST(LinkTableTest, OneLinkPerPeerAndRemoveOnlyTheInstalledOne) {
  LinkTable table;
  auto a1 = Make("a");
  auto a2 = Make("a");
  EXPECT_TRUE(table.Install(a1));
  EXPECT_FALSE(table.Install(a2));  // redundant: the first one stays
  EXPECT_EQ(table.Find("a"), a1);
  EXPECT_FALSE(table.Remove(a2));  // not the installed one
  EXPECT_EQ(table.Find("a"), a1);
  EXPECT_TRUE(table.Remove(a1));
  EXPECT_EQ(table.Find("a"), nullptr);
  EXPECT_FALSE(table.Remove(a1));
}

TEST(LinkTableTest, CachedLookupSeesEveryChange) {
  LinkTable table;
  auto a1 = Make("a");
  ASSERT_TRUE(table.Install(a1));
  EXPECT_EQ(table.Find("a"), a1);  // fills this thread's cache
  EXPECT_EQ(table.Find("a"), a1);  // from the cache
  ASSERT_TRUE(table.Remove(a1));
  EXPECT_EQ(table.Find("a"), nullptr);  // the cache entry is stale
  auto a2 = Make("a");
  ASSERT_TRUE(table.Install(a2));
  EXPECT_EQ(table.Find("a"), a2);
}

TEST(LinkTableTest, CacheDoesNotKeepLinksAlive) {
  LinkTable table;
  std::weak_ptr<Transport> weak;
  {
    auto a = Make("a");
    weak = a;
    ASSERT_TRUE(table.Install(a));
    ASSERT_EQ(table.Find("a"), a);
    ASSERT_TRUE(table.Remove(a));
  }
  EXPECT_TRUE(weak.expired());
}

TEST(LinkTableTest, TwoTablesDoNotShareCacheEntries) {
  LinkTable t1, t2;
  auto a = Make("a");
  auto b = Make("a");
  ASSERT_TRUE(t1.Install(a));
  ASSERT_TRUE(t2.Install(b));
  EXPECT_EQ(t1.Find("a"), a);
  EXPECT_EQ(t2.Find("a"), b);
  EXPECT_EQ(t1.Find("a"), a);
}

TEST(LinkTableTest, ManyPeersPerThreadEvictRoundRobin) {
  LinkTable table;
  std::vector<std::shared_ptr<Transport>> links;
  for (int i = 0; i < 20; ++i) {
    links.push_back(Make("p" + std::to_string(i)));
    ASSERT_TRUE(table.Install(links.back()));
  }
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 20; ++i) EXPECT_EQ(table.Find("p" + std::to_string(i)), links[i]);
  }
  EXPECT_EQ(table.Find("nobody"), nullptr);
}

TEST(LinkTableTest, LiveSkipsDownLinksAndCopyIfChangedTracksGeneration) {
  LinkTable table;
  auto a = Make("a");
  auto b = Make("b");
  ASSERT_TRUE(table.Install(a));
  ASSERT_TRUE(table.Install(b));
  uint64_t seen = 0;
  std::vector<std::shared_ptr<Transport>> copy;
  EXPECT_TRUE(table.CopyIfChanged(&seen, &copy));
  EXPECT_EQ(copy.size(), 2u);
  EXPECT_FALSE(table.CopyIfChanged(&seen, &copy));  // unchanged
  a->MarkDown();
  EXPECT_EQ(table.Live().size(), 1u);
  EXPECT_EQ(table.LiveNames(), std::vector<std::string>{"b"});
  ASSERT_TRUE(table.Remove(a));
  EXPECT_TRUE(table.CopyIfChanged(&seen, &copy));
  ASSERT_EQ(copy.size(), 1u);
  EXPECT_EQ(copy[0], b);
}

TEST(LinkTableTest, CloseEmptiesAndRefusesAndWakesWaiters) {
  LinkTable table;
  ASSERT_TRUE(table.Install(Make("a")));
  std::thread waiter([&] { EXPECT_FALSE(table.AwaitSize(5, absl::InfiniteFuture())); });
  absl::SleepFor(absl::Milliseconds(20));
  auto links = table.Close();
  waiter.join();
  EXPECT_EQ(links.size(), 1u);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_FALSE(table.Install(Make("b")));
}

TEST(LinkTableTest, AwaitSizeReturnsWhenEnoughOrInterrupted) {
  LinkTable table;
  std::thread installer([&] {
    absl::SleepFor(absl::Milliseconds(20));
    ASSERT_TRUE(table.Install(Make("a")));
    ASSERT_TRUE(table.Install(Make("b")));
  });
  EXPECT_TRUE(table.AwaitSize(2, absl::Now() + absl::Seconds(10)));
  installer.join();
  EXPECT_FALSE(table.AwaitSize(3, absl::Now() + absl::Milliseconds(10)));
  std::thread waiter([&] { EXPECT_FALSE(table.AwaitSize(3, absl::InfiniteFuture())); });
  absl::SleepFor(absl::Milliseconds(20));
  table.Interrupt();
  waiter.join();
}

// Senders look links up while another thread installs and removes them:
// a lookup returns either null or a link for that very peer, never a
// removed link after the removal was seen, and nothing crashes (run under
// TSAN in CI).
TEST(LinkTableTest, ConcurrentLookupsAndChurn) {
  LinkTable table;
  std::atomic<bool> stop{false};
  std::vector<std::thread> readers;
  std::atomic<uint64_t> hits{0};
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&, r] {
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 4; ++i) {
          const std::string peer = "p" + std::to_string((i + r) % 4);
          auto link = table.Find(peer);
          if (link != nullptr) {
            EXPECT_EQ(link->peer_name(), peer);
            hits.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
    });
  }
  // Churn until the readers have seen links a good number of times (on
  // two shared cores they may not run at all for a while), at most 5 s.
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  for (int round = 0; round < 2000 || (hits.load() < 1000 && absl::Now() < give_up); ++round) {
    auto link = Make("p" + std::to_string(round % 4));
    table.Install(link);
    if (round % 3 == 0) table.Remove(link);
    if (round % 7 == 0) {
      for (const auto& l : table.Live()) table.Remove(l);
    }
    if (round % 64 == 0) std::this_thread::yield();
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(hits.load(), 0u);
}

}  // namespace
}  // namespace mesh
