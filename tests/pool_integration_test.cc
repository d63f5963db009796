// Large messages and loans between real processes: the test's node "t" in
// this process, one or two pool_peer processes (tests/pool_peer.cc), real
// memfd segments handed over the link sockets. Every payload is checked
// by a hash the receiver computes where the bytes lie (in the sender's
// segment, mapped read-only), in order with small ring messages between.
// Then: a receiver that holds its samples hits its quota while another
// receiver is unaffected; a receiver killed with -9 holding samples gives
// the blocks back; a sender killed with -9 leaves the samples the receiver
// holds readable; a topic publication to two subscribers is written once;
// descriptors and mappings return to their baseline.
#include <signal.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mesh/node.h"
#include "testing/fd_count.h"
#include "testing/subprocess.h"
#include "testing/temp_dir.h"
#include "tests/pool_hash.h"

namespace {

using shmesh::testing::Child;
using shmesh::testing::ReadFile;
using shmesh::testing::WaitForFileToContain;

// Mappings of pool segments in process `pid` (memfds named shmesh-pool-*).
int PoolMappings(pid_t pid) {
  std::ifstream maps(absl::StrCat("/proc/", pid, "/maps"));
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    if (absl::StrContains(line, "memfd:shmesh-pool-")) ++n;
  }
  return n;
}

// MemAvailable from /proc/meminfo, in bytes (0 if unknown).
uint64_t MemAvailable() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "MemAvailable:")) {
      std::vector<std::string> w = absl::StrSplit(line, ' ', absl::SkipEmpty());
      uint64_t kb = 0;
      if (w.size() >= 2 && absl::SimpleAtoi(w[1], &kb)) return kb * 1024;
    }
  }
  return 0;
}

class PoolIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    fds_before_ = shmesh::testing::CountOpenFds();
  }

  mesh::v1::NodeConfig Config(uint64_t quota = 0) {
    mesh::v1::NodeConfig c;
    c.set_name("t");
    c.set_run_dir(dir_.path());
    c.set_ring_capacity_bytes(1 << 16);
    c.set_max_message_bytes(uint64_t{1} << 30);
    c.set_log_level(mesh::v1::WARNING);
    if (quota != 0) c.mutable_pool()->set_peer_quota_bytes(quota);
    return c;
  }

  void StartT(uint64_t quota = 0) {
    auto node = mesh::Node::Create(Config(quota));
    ASSERT_TRUE(node.ok()) << node.status();
    t_ = std::move(*node);
    ASSERT_TRUE(t_->Start().ok());
  }

  // Starts peer `name` and waits until it is linked with t.
  Child* StartPeer(const std::string& name) {
    const std::string out = File(name + ".out");
    peers_.push_back(std::make_unique<Child>(
        std::vector<std::string>{shmesh::testing::RunfilePath("tests/pool_peer"), "--name=" + name,
                                 "--run_dir=" + dir_.path(), "--seed=t"},
        out, File(name + ".err")));
    EXPECT_TRUE(WaitForFileToContain(out, "ready")) << ReadFile(out) << ReadFile(File(name + ".err"));
    return peers_.back().get();
  }

  // Sends `command` to the peer and waits until it prints `answer` once
  // more.
  void Command(Child* peer, const std::string& name, const std::string& command, const std::string& answer) {
    const std::string out = File(name + ".out");
    const size_t before = CountOf(ReadFile(out), answer);
    peer->WriteStdin(command + "\n");
    EXPECT_TRUE(WaitFor([&] { return CountOf(ReadFile(out), answer) > before; })) << ReadFile(out);
  }
  static size_t CountOf(const std::string& text, const std::string& needle) {
    size_t n = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
    return n;
  }

  // The next reply from a peer: "sum <len> <hash>" / "tsum ...".
  std::string NextReply() {
    absl::StatusOr<mesh::Message> m = t_->Receive(absl::Now() + absl::Seconds(60));
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? std::string(m->data()) : "";
  }

  mesh::v1::PoolUsage Pool() {
    auto topo = t_->Topology(/*local_only=*/true);
    EXPECT_TRUE(topo.ok());
    return topo.ok() && topo->pools_size() == 1 ? topo->pools(0) : mesh::v1::PoolUsage();
  }

  bool WaitFor(const std::function<bool()>& cond, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!cond()) {
      if (absl::Now() > deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return true;
  }

  std::string File(const std::string& name) const { return dir_.path() + "/" + name; }

  shmesh::testing::ShortTempDir dir_{"pooltest-"};
  size_t fds_before_ = 0;
  std::unique_ptr<mesh::Node> t_;
  std::vector<std::unique_ptr<Child>> peers_;
  std::map<std::string, size_t> answered_;
};

TEST_F(PoolIntegrationTest, EverySizeArrivesIntactInOrderBySendLoanAndBroadcast) {
  StartT();
  StartPeer("p");
  const std::vector<size_t> sizes = {0, 1, 4095, 65536, 65537, 100000, 1 << 20, (1 << 20) + 3, 8 << 20, 64 << 20};
  uint64_t k = 0;
  for (size_t size : sizes) {
    for (int how = 0; how < 4; ++how, ++k) {
      std::string bytes(size, '\0');
      pool_test::Fill(reinterpret_cast<uint8_t*>(bytes.data()), size, k);
      const std::string want = absl::StrCat("sum ", size, " ", pool_test::Hash(bytes));
      if (how == 0) {  // a copied send (the pool above 64 KiB)
        ASSERT_TRUE(t_->Send("p", bytes).ok());
      } else if (how == 1) {  // a loan
        auto loan = t_->Loan(size);
        ASSERT_TRUE(loan.ok()) << loan.status();
        ASSERT_EQ(loan->size(), size);
        pool_test::Fill(loan->data(), size, k);
        ASSERT_TRUE(t_->Send("p", std::move(*loan)).ok());
        EXPECT_FALSE(*loan);  // the send took it
      } else if (how == 2) {  // a copied broadcast
        auto r = t_->Broadcast(bytes);
        ASSERT_TRUE(r.ok()) << r.status();
        ASSERT_EQ(r->delivered.size(), 1u);
      } else {  // a loaned broadcast
        auto loan = t_->Loan(size);
        ASSERT_TRUE(loan.ok());
        pool_test::Fill(loan->data(), size, k);
        auto r = t_->Broadcast(std::move(*loan));
        ASSERT_TRUE(r.ok()) << r.status();
      }
      // A small ring message right behind it.
      ASSERT_TRUE(t_->Send("p", absl::StrCat("small ", k)).ok());
      EXPECT_EQ(NextReply(), want) << "size " << size << " how " << how;
      const std::string small = absl::StrCat("small ", k);
      EXPECT_EQ(NextReply(), absl::StrCat("sum ", small.size(), " ", pool_test::Hash(small)));
    }
  }
  // Everything was released: no block in use; segments kept for reuse.
  EXPECT_TRUE(WaitFor([&] { return Pool().blocks_in_use() == 0; })) << Pool().DebugString();
  const mesh::v1::PoolUsage u = Pool();
  EXPECT_EQ(u.bad_releases(), 0u);
  EXPECT_LE(u.segment_bytes(), uint64_t{256 << 20} + (64 << 20));  // retain_bytes, plus the block that went last
  EXPECT_GT(u.sent_messages(), 0u);
}

TEST_F(PoolIntegrationTest, OneGibibyteMessage) {
  const uint64_t available = MemAvailable();
  if (available < (uint64_t{4} << 30)) {
    GTEST_SKIP() << "needs 4 GiB of available memory for a 1 GiB message (segment, and the test's own copy "
                    "for the hash); this machine has "
                 << (available >> 20) << " MiB";
  }
  StartT();
  StartPeer("p");
  const size_t size = size_t{1} << 30;
  auto loan = t_->Loan(size);
  ASSERT_TRUE(loan.ok()) << loan.status();
  pool_test::Fill(loan->data(), size, 7);
  const std::string want =
      absl::StrCat("sum ", size, " ", pool_test::Hash(absl::string_view(reinterpret_cast<const char*>(loan->data()), size)));
  ASSERT_TRUE(t_->Send("p", std::move(*loan)).ok());
  EXPECT_EQ(NextReply(), want);
  EXPECT_TRUE(WaitFor([&] { return Pool().blocks_in_use() == 0; }));
  // Past retain_bytes, the freed 1 GiB segment is dropped (and unmapped by
  // the receiver).
  EXPECT_TRUE(WaitFor([&] { return Pool().segment_bytes() < (uint64_t{1} << 30); })) << Pool().DebugString();
  EXPECT_TRUE(WaitFor([&] { return PoolMappings(peers_[0]->pid()) == 0; })) << PoolMappings(peers_[0]->pid());
}

TEST_F(PoolIntegrationTest, AReceiverAtItsQuotaIsBackpressuredAndTheOthersAreNot) {
  StartT(/*quota=*/1 << 20);  // 16 blocks of 64 KiB
  Child* holder = StartPeer("h");
  StartPeer("q");
  ASSERT_TRUE(t_->WaitForPeers(2, absl::Now() + absl::Seconds(20)).ok());
  Command(holder, "h", "hold", "holding");
  for (int i = 0; i < 16; ++i) {
    auto loan = t_->Loan(60000);
    ASSERT_TRUE(loan.ok());
    ASSERT_TRUE(t_->Send("h", std::move(*loan)).ok()) << i;
  }
  auto loan = t_->Loan(60000);
  ASSERT_TRUE(loan.ok());
  absl::Status s = t_->Send("h", std::move(*loan), absl::InfinitePast());
  EXPECT_TRUE(absl::IsResourceExhausted(s)) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("pool.peer_quota_bytes"));
  EXPECT_TRUE(*loan);  // a failed send leaves the loan with the caller
  s = t_->Send("h", std::move(*loan), absl::Now() + absl::Milliseconds(50));
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  // The other receiver is unaffected (it releases as it reads: its sends
  // may wait for that, never for h).
  for (int i = 0; i < 64; ++i) {
    auto other = t_->Loan(60000);
    ASSERT_TRUE(t_->Send("q", std::move(*other), absl::Now() + absl::Seconds(10)).ok()) << i;
  }
  mesh::v1::PoolUsage u = Pool();
  ASSERT_GE(u.held_by_size(), 1);
  EXPECT_EQ(u.held_by(0).peer(), "h");
  EXPECT_EQ(u.held_by(0).blocks(), 16u);
  // Once it releases, sends to it go again (this one waits for it).
  holder->WriteStdin("release\n");
  s = t_->Send("h", std::move(*loan), absl::Now() + absl::Seconds(20));
  EXPECT_TRUE(s.ok()) << s;
}

TEST_F(PoolIntegrationTest, AReceiverKilledHoldingSamplesGivesTheBlocksBack) {
  StartT();
  Child* holder = StartPeer("h");
  Command(holder, "h", "hold", "holding");
  for (int i = 0; i < 8; ++i) {
    auto loan = t_->Loan(1 << 20);
    ASSERT_TRUE(t_->Send("h", std::move(*loan)).ok());
  }
  for (int i = 0; i < 8; ++i) EXPECT_THAT(NextReply(), ::testing::StartsWith("sum 1048576 "));
  ASSERT_EQ(Pool().blocks_in_use(), 8u);
  holder->Signal(SIGKILL);
  EXPECT_EQ(holder->Wait(), -1);
  EXPECT_TRUE(WaitFor([&] { return t_->Peers().empty(); }));
  EXPECT_TRUE(WaitFor([&] { return Pool().blocks_in_use() == 0; })) << Pool().DebugString();
  EXPECT_EQ(Pool().held_by_size(), 0);
  // The memory is reused, not grown.
  const uint64_t segments = Pool().segment_bytes();
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(t_->Loan(1 << 20).ok());
  EXPECT_EQ(Pool().segment_bytes(), segments);
}

TEST_F(PoolIntegrationTest, ASenderKilledLeavesTheSamplesHeldHereReadable) {
  StartT();
  Child* sender = StartPeer("s");
  sender->WriteStdin("send 1048576 5\n");
  std::vector<mesh::Message> held;
  for (int k = 0; k < 5; ++k) {
    auto m = t_->Receive(absl::Now() + absl::Seconds(30));
    ASSERT_TRUE(m.ok()) << m.status();
    ASSERT_NE(m->shared, nullptr);  // zero-copy: in the sender's segment
    EXPECT_TRUE(m->payload.empty());
    held.push_back(std::move(*m));
  }
  EXPECT_GT(PoolMappings(::getpid()), 0);
  sender->Signal(SIGKILL);
  EXPECT_EQ(sender->Wait(), -1);
  ASSERT_TRUE(WaitFor([&] { return t_->Peers().empty(); }));
  for (int k = 0; k < 5; ++k) {
    std::string bytes(1 << 20, '\0');
    pool_test::Fill(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size(), k);
    EXPECT_TRUE(held[k].data() == bytes) << "message " << k << " changed after its sender died";
  }
  held.clear();
  // Nothing is left: no mapping, no descriptor.
  EXPECT_EQ(PoolMappings(::getpid()), 0);
  t_->Stop();
  t_.reset();
  peers_.clear();
  EXPECT_EQ(shmesh::testing::CountOpenFds(), fds_before_);
}

TEST_F(PoolIntegrationTest, ATopicPublicationToTwoSubscribersIsWrittenOnce) {
  StartT();
  Child* a = StartPeer("a");
  Child* b = StartPeer("b");
  ASSERT_TRUE(t_->WaitForPeers(2, absl::Now() + absl::Seconds(20)).ok());
  Command(a, "a", "sub big/*", "subscribed");
  Command(b, "b", "sub big/**", "subscribed");
  Command(a, "a", "hold", "holding");
  Command(b, "b", "hold", "holding");
  auto pub = t_->Advertise("big/frame");
  ASSERT_TRUE(pub.ok());
  ASSERT_TRUE((*pub)->WaitForSubscribers(2, absl::Now() + absl::Seconds(20)).ok());
  auto loan = (*pub)->Loan(3 << 20);
  ASSERT_TRUE(loan.ok()) << loan.status();
  pool_test::Fill(loan->data(), loan->size(), 9);
  std::string bytes(3 << 20, '\0');
  pool_test::Fill(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size(), 9);
  auto r = (*pub)->Publish(std::move(*loan));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->delivered, 2u);
  const std::string want = absl::StrCat("tsum ", bytes.size(), " ", pool_test::Hash(bytes));
  EXPECT_EQ(NextReply(), want);
  EXPECT_EQ(NextReply(), want);
  // One block, held by both subscribers.
  const mesh::v1::PoolUsage u = Pool();
  EXPECT_EQ(u.blocks_in_use(), 1u);
  ASSERT_EQ(u.held_by_size(), 2);
  EXPECT_EQ(u.held_by(0).blocks(), 1u);
  EXPECT_EQ(u.held_by(1).blocks(), 1u);
  a->WriteStdin("release\n");
  b->WriteStdin("release\n");
  EXPECT_TRUE(WaitFor([&] { return Pool().blocks_in_use() == 0; })) << Pool().DebugString();
}

}  // namespace
