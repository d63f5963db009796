// The Sender over real links in one process (link_pair_testutil.h): node
// "a" holds links to "b" and "c" in its table; the tests read what arrives
// on the other ends' rings.
#include "mesh/dataplane/sender.h"

#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "fdpass/socket.h"
#include "gtest/gtest.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/links/link_pair_testutil.h"
#include "mesh/links/link_table.h"
#include "testing/fd_count.h"

namespace mesh {
namespace {

using testing_util::MakeLinkPair;
using testing_util::TestLinkParams;

constexpr size_t kMax = 200;  // max_message_bytes of the sender

class SenderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = shmesh::testing::CountOpenFds();
    char tmpl[] = "/tmp/msd-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    auto ab = MakeLinkPair(dir_, TestLinkParams("a", 1), TestLinkParams("b", 2));
    ASSERT_TRUE(ab.ok()) << ab.status();
    auto ac = MakeLinkPair(dir_, TestLinkParams("a", 1), TestLinkParams("c", 3));
    ASSERT_TRUE(ac.ok()) << ac.status();
    to_b_ = ab->a;
    at_b_ = ab->b;
    to_c_ = ac->a;
    at_c_ = ac->b;
    ASSERT_TRUE(table_.Install(to_b_));
    ASSERT_TRUE(table_.Install(to_c_));
    Sender::Hooks hooks;
    hooks.check_running = [this](absl::string_view what) {
      return running_ ? absl::OkStatus() : absl::FailedPreconditionError(absl::StrCat("stopped (", what, ")"));
    };
    hooks.link_failed = [this](const std::shared_ptr<Transport>& link, absl::string_view why) {
      absl::MutexLock lock(&mu_);
      failed_.push_back(absl::StrCat(link->peer_name(), ": ", why));
    };
    sender_ = std::make_unique<Sender>("a", kMax, &table_, std::move(hooks));
  }

  void TearDown() override {
    sender_.reset();
    (void)table_.Close();
    to_b_.reset();
    at_b_.reset();
    to_c_.reset();
    at_c_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    EXPECT_EQ(shmesh::testing::CountOpenFds(), fds_before_) << "descriptors leaked";
  }

  // The payloads waiting on `end`'s ring; every frame must carry the plain
  // message envelope.
  static std::vector<std::string> Drain(Link& end) {
    std::vector<std::string> out;
    auto n = end.Drain(1 << 20, [&](absl::string_view frame) {
      const ParsedFrame p = ParseFrame(frame);
      EXPECT_TRUE(p.ok() && p.header == kMessageHeader) << FrameErrorName(p.error);
      out.emplace_back(p.payload);
      return true;
    });
    EXPECT_TRUE(n.ok()) << n.status();
    return out;
  }

  std::vector<std::string> failed() {
    absl::MutexLock lock(&mu_);
    return failed_;
  }

  std::string dir_;
  size_t fds_before_ = 0;
  LinkTable table_;
  std::shared_ptr<Link> to_b_, at_b_, to_c_, at_c_;
  std::unique_ptr<Sender> sender_;
  bool running_ = true;
  absl::Mutex mu_;
  std::vector<std::string> failed_ ABSL_GUARDED_BY(mu_);
};

TEST_F(SenderTest, SendWritesTheEnvelopeAndPayload) {
  ASSERT_TRUE(sender_->Send(Sender::Caller::kApi, "b", "hello", absl::InfinitePast()).ok());
  ASSERT_TRUE(sender_->Send(Sender::Caller::kApi, "b", std::string(kMax, 'x'), absl::InfinitePast()).ok());
  EXPECT_EQ(Drain(*at_b_), (std::vector<std::string>{"hello", std::string(kMax, 'x')}));
  EXPECT_TRUE(Drain(*at_c_).empty());
}

TEST_F(SenderTest, ErrorsSayWhatHappenedForEachCaller) {
  absl::Status big = sender_->Send(Sender::Caller::kApi, "b", std::string(kMax + 1, 'x'), absl::InfinitePast());
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(big.message(), "exceeds max_message_bytes (200)")) << big;
  absl::Status self = sender_->Send(Sender::Caller::kApi, "a", "x", absl::InfinitePast());
  EXPECT_EQ(self.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(self.message(), "this node itself")) << self;
  absl::Status api = sender_->Send(Sender::Caller::kApi, "zed", "x", absl::InfinitePast());
  EXPECT_EQ(api.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(api.message(), "WaitForPeers()")) << api;
  absl::Status remote = sender_->Send(Sender::Caller::kRemote, "zed", "x", absl::InfinitePast());
  EXPECT_EQ(remote.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(remote.message(), "its peers: b, c")) << remote;
  EXPECT_FALSE(absl::StrContains(remote.message(), "WaitForPeers")) << remote;
  running_ = false;
  absl::Status stopped = sender_->Send(Sender::Caller::kApi, "zed", "x", absl::InfinitePast());
  EXPECT_EQ(stopped.code(), absl::StatusCode::kFailedPrecondition) << stopped;
  EXPECT_EQ(sender_->Broadcast("x", absl::InfinitePast()).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(SenderTest, FullRingIsBackpressureWithTheReason) {
  int sent = 0;
  absl::Status s;
  while ((s = sender_->Send(Sender::Caller::kApi, "b", std::string(100, 'f'), absl::InfinitePast())).ok()) ++sent;
  EXPECT_GT(sent, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "ring to 'b' is full")) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), "not keeping up")) << s;
  const absl::Time start = absl::Now();
  s = sender_->Send(Sender::Caller::kApi, "b", std::string(100, 'f'), absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(Drain(*at_b_).size(), static_cast<size_t>(sent));
  EXPECT_TRUE(sender_->Send(Sender::Caller::kApi, "b", "room again", absl::InfinitePast()).ok());
  EXPECT_TRUE(failed().empty());
}

TEST_F(SenderTest, SendBatchWritesAPrefixAndReportsHowMany) {
  std::vector<std::string> storage(100, std::string(100, 'q'));
  std::vector<absl::string_view> batch(storage.begin(), storage.end());
  absl::StatusOr<size_t> n = sender_->SendBatch("c", batch, absl::InfinitePast());
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_GT(*n, 0u);
  EXPECT_LT(*n, batch.size());  // a 4 KiB ring holds fewer than 100 of them
  EXPECT_EQ(Drain(*at_c_).size(), *n);
  std::vector<absl::string_view> too_big = {"ok", std::string(kMax + 1, 'x')};
  EXPECT_EQ(sender_->SendBatch("c", too_big, absl::InfinitePast()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Drain(*at_c_).empty());  // nothing of a rejected batch was sent
}

TEST_F(SenderTest, BroadcastReachesTheOthersWhenOnePeerIsFull) {
  while (sender_->Send(Sender::Caller::kApi, "b", std::string(100, 'f'), absl::InfinitePast()).ok()) {
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<BroadcastResult> r = sender_->Broadcast("all", absl::Now() + absl::Milliseconds(100));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  EXPECT_EQ(r->delivered, std::vector<std::string>{"c"});
  ASSERT_EQ(r->not_reached.size(), 1u);
  EXPECT_EQ(r->not_reached[0].first, "b");
  EXPECT_EQ(r->not_reached[0].second.code(), absl::StatusCode::kDeadlineExceeded) << r->not_reached[0].second;
  EXPECT_EQ(Drain(*at_c_), std::vector<std::string>{"all"});
}

TEST_F(SenderTest, ALinkThatWentDownIsReportedOnce) {
  ASSERT_TRUE(to_b_->MarkDown());
  absl::Status s = sender_->Send(Sender::Caller::kApi, "b", "x", absl::InfinitePast());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  const std::vector<std::string> f = failed();
  ASSERT_EQ(f.size(), 1u);
  EXPECT_TRUE(absl::StartsWith(f[0], "b: send failed")) << f[0];
}

// The transport's reserve/commit form (the basis of loans): the frame is
// written in place, committed at the length `fill` returns (0 abandons it),
// and a full ring is backpressure as for SendFrame.
TEST_F(SenderTest, SendInPlaceCommitsWhatFillWrote) {
  auto fill_with = [](absl::string_view payload) {
    return [payload](absl::Span<uint8_t> room) {
      std::memcpy(room.data(), kMessagePrefix.data(), kMessagePrefix.size());
      std::memcpy(room.data() + kMessagePrefix.size(), payload.data(), payload.size());
      return kMessagePrefix.size() + payload.size();
    };
  };
  ASSERT_TRUE(to_b_->SendInPlace(64, absl::InfinitePast(), fill_with("in place")).ok());
  ASSERT_TRUE(to_b_->SendInPlace(64, absl::InfinitePast(), [](absl::Span<uint8_t>) { return size_t{0}; }).ok());
  ASSERT_TRUE(to_b_->SendInPlace(64, absl::InfinitePast(), fill_with("second")).ok());
  EXPECT_EQ(Drain(*at_b_), (std::vector<std::string>{"in place", "second"}));
  absl::Status s;
  int sent = 0;
  while ((s = to_b_->SendInPlace(200, absl::InfinitePast(), fill_with(std::string(100, 'f')))).ok()) ++sent;
  EXPECT_GT(sent, 0);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_EQ(Drain(*at_b_).size(), static_cast<size_t>(sent));
}

}  // namespace
}  // namespace mesh
