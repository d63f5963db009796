// LinkAcceptor on its own: a real listening socket, a real epoll set and
// real client connections from this process, with hooks standing in for the
// node (which members exist; links that come up are counted). The test
// drives the loop the way the node's link thread does: wait, OnEvent,
// OnTimer, here with a clock it chooses.
#include "mesh/links/link_acceptor.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/epoll.h"
#include "fdpass/socket.h"
#include "gtest/gtest.h"
#include "mesh/v1/mesh.pb.h"
#include "testing/fd_count.h"

namespace mesh {
namespace {

constexpr uint64_t kTagListen = 1;
constexpr uint64_t kFirstPending = 16;

class LinkAcceptorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mla-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/n.link";
    fds_before_ = shmesh::testing::CountOpenFds();
    auto listen = fdpass::ListenSeqpacket(path_);
    ASSERT_TRUE(listen.ok()) << listen.status();
    listen_ = std::move(*listen);
    auto epoll = base::Epoll::Create();
    ASSERT_TRUE(epoll.ok()) << epoll.status();
    epoll_.emplace(std::move(*epoll));
  }
  void TearDown() override {
    acceptor_.reset();
    epoll_.reset();
    listen_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
    EXPECT_EQ(shmesh::testing::CountOpenFds(), fds_before_) << "descriptors leaked";
  }

  void Make(bool members, LinkAcceptor::Limits limits) {
    LinkAcceptor::Hooks hooks;
    hooks.params = [] {
      LinkParams p;
      p.name = "n";
      p.id = 1;
      p.ring_capacity_bytes = 4096;
      p.max_peer_ring_bytes = 1 << 20;
      p.allowed_uids = {::getuid()};
      p.heartbeat_interval = absl::Milliseconds(500);
      return p;
    };
    hooks.is_member_pid = [members](pid_t) { return members; };
    hooks.lookup = [](const std::string& name, uint64_t) -> absl::StatusOr<mesh::v1::Member> {
      return absl::NotFoundError(absl::StrCat("'", name, "' is unknown here"));
    };
    hooks.take_spare_ring = [] { return std::optional<ringbuf::Ring>(); };
    hooks.replenish_spare_ring = [] {};
    hooks.install = [this](std::shared_ptr<Link>) { ++installed_; };
    acceptor_ = std::make_unique<LinkAcceptor>(listen_.get(), &*epoll_, kTagListen, kFirstPending, &log_,
                                               std::move(hooks), limits);
    ASSERT_TRUE(acceptor_->Start().ok());
  }

  // One turn of the link thread's loop, at time `now` for the timers.
  void Turn(absl::Time now) {
    epoll_event events[64];
    const int n = epoll_->Wait(events, 64, 50);
    for (int i = 0; i < n; ++i) acceptor_->OnEvent(events[i].data.u64);
    acceptor_->OnTimer(now);
  }

  base::UniqueFd Connect() {
    auto c = fdpass::ConnectSeqpacket(path_, absl::Now() + absl::Seconds(1));
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : base::UniqueFd();
  }

  // The LinkReply the acceptor sent on `conn`, if any: its reject reason.
  static std::string Reason(int conn) {
    auto msg = fdpass::ReceiveMessage(conn, absl::Now() + absl::Milliseconds(500));
    if (!msg.ok()) return absl::StrCat("no reply: ", msg.status().ToString());
    mesh::v1::LinkReply r;
    if (!r.ParseFromString(msg->bytes)) return "malformed reply";
    return r.reject_reason();
  }

  std::string dir_, path_;
  size_t fds_before_ = 0;
  base::UniqueFd listen_;
  std::optional<base::Epoll> epoll_;
  Logger log_{"n", mesh::v1::ERROR};  // refusals are WARNINGs: keep the test quiet
  std::unique_ptr<LinkAcceptor> acceptor_;
  int installed_ = 0;
};

TEST_F(LinkAcceptorTest, StrangerIsRefusedAtOnceWithTheReason) {
  ASSERT_NO_FATAL_FAILURE(Make(/*members=*/false, {}));
  base::UniqueFd c = Connect();
  Turn(absl::Now());
  EXPECT_EQ(acceptor_->pending(), 0u);
  const std::string why = Reason(c.get());
  EXPECT_TRUE(absl::StrContains(why, "has not joined through discovery")) << why;
  // It lingers until its hello came (so closing does not reset the
  // connection first), then it is closed.
  ASSERT_TRUE(fdpass::SendMessage(c.get(), "hello", {}, absl::Now() + absl::Seconds(1)).ok());
  Turn(absl::Now());
  EXPECT_EQ(fdpass::ReceiveMessage(c.get(), absl::Now() + absl::Seconds(1)).status().code(),
            absl::StatusCode::kOutOfRange)
      << "the refused connection was not closed after its hello";
  EXPECT_EQ(acceptor_->NextTimer(), absl::InfiniteFuture());
}

TEST_F(LinkAcceptorTest, SilentConnectionsAreCappedPerProcessAndExpireAtTheirDeadline) {
  LinkAcceptor::Limits limits;
  limits.max_pending_per_pid = 4;
  limits.handshake_timeout = absl::Seconds(2);
  ASSERT_NO_FATAL_FAILURE(Make(/*members=*/true, limits));
  std::vector<base::UniqueFd> conns;
  for (int i = 0; i < 6; ++i) conns.push_back(Connect());
  const absl::Time start = absl::Now();
  Turn(start);
  EXPECT_EQ(acceptor_->pending(), 4u) << "the per-process cap did not hold";
  // The two over the cap were told why.
  int refused = 0;
  for (auto& c : conns) {
    auto msg = fdpass::ReceiveMessage(c.get(), absl::InfinitePast());
    mesh::v1::LinkReply r;
    if (msg.ok() && r.ParseFromString(msg->bytes) &&
        absl::StrContains(r.reject_reason(), "already has 4 link handshake(s) in progress")) {
      ++refused;
    }
  }
  EXPECT_EQ(refused, 2);
  // Nothing expires before the deadline; everything at it.
  const absl::Time deadline = acceptor_->NextTimer();
  EXPECT_GT(deadline, start);
  EXPECT_LE(deadline, start + limits.handshake_timeout + absl::Milliseconds(200));
  acceptor_->OnTimer(start + absl::Seconds(1));
  EXPECT_EQ(acceptor_->pending(), 4u);
  acceptor_->OnTimer(start + absl::Seconds(3));
  EXPECT_EQ(acceptor_->pending(), 0u);
  EXPECT_EQ(installed_, 0);
  // The slots are free again: a fresh connection is admitted.
  base::UniqueFd again = Connect();
  Turn(absl::Now());
  EXPECT_EQ(acceptor_->pending(), 1u);
}

TEST_F(LinkAcceptorTest, AHelloCompletesTheHandshakeWithoutWaitingForOthers) {
  ASSERT_NO_FATAL_FAILURE(Make(/*members=*/true, {}));
  // Two silent connections first, then one that speaks: its answer comes
  // in the same turn, not after the silent ones' deadlines.
  base::UniqueFd s1 = Connect(), s2 = Connect(), speaker = Connect();
  Turn(absl::Now());
  ASSERT_EQ(acceptor_->pending(), 3u);
  mesh::v1::LinkHello hello;
  hello.set_version(2);
  hello.set_name("x");
  hello.set_id(9);
  hello.set_to_name("n");
  hello.set_to_id(1);
  ASSERT_TRUE(fdpass::SendMessage(speaker.get(), hello.SerializeAsString(), {}, absl::Now() + absl::Seconds(1)).ok());
  Turn(absl::Now());
  // The hook's lookup does not know 'x': refused, with that reason, at once.
  const std::string why = Reason(speaker.get());
  EXPECT_TRUE(absl::StrContains(why, "'x' is unknown here")) << why;
  EXPECT_EQ(acceptor_->pending(), 2u);
}

}  // namespace
}  // namespace mesh
