#include "mesh/links/control_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "gtest/gtest.h"
#include "mesh/v1/mesh.pb.h"
#include "testing/fd_count.h"

namespace mesh {
namespace links {
namespace {

using base::UniqueFd;
using mesh::v1::LinkControl;

// Serialized LinkControl with an unknown body case: field 99, wire type 2
// (length-delimited), holding "hi". Tag (99 << 3 | 2) = 794 = 0x9a 0x06.
const std::string kUnknownKind("\x9a\x06\x02hi", 5);

LinkControl Ping(uint64_t token) {
  LinkControl m;
  m.mutable_ping()->set_token(token);
  return m;
}

LinkControl Pong(uint64_t token) {
  LinkControl m;
  m.mutable_pong()->set_token(token);
  return m;
}

LinkControl Goodbye(const std::string& reason) {
  LinkControl m;
  m.mutable_goodbye()->set_reason(reason);
  return m;
}

// A memfd holding `content`.
UniqueFd MakeMemfd(const std::string& content) {
  UniqueFd fd(::memfd_create("control-channel-test", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid()) << std::strerror(errno);
  EXPECT_EQ(::pwrite(fd.get(), content.data(), content.size(), 0),
            static_cast<ssize_t>(content.size()));
  return fd;
}

std::string ReadAll(int fd) {
  char buf[256];
  const ssize_t n = ::pread(fd, buf, sizeof(buf), 0);
  return n < 0 ? std::string("<pread failed>") : std::string(buf, n);
}

// A hostile peer's sendmsg: any bytes (also empty), any number of fds
// (borrowed), no limits checked. Returns errno, 0 on success.
int SendRaw(int sock, const std::string& bytes, const std::vector<int>& fds) {
  iovec iov;
  iov.iov_base = const_cast<char*>(bytes.data());
  iov.iov_len = bytes.size();
  msghdr m;
  std::memset(&m, 0, sizeof(m));
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()) + 8);
  if (!fds.empty()) {
    // vector<char> storage is suitably aligned for cmsghdr (operator new).
    m.msg_control = control.data();
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  const ssize_t n = ::sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
  return n < 0 ? errno : 0;
}

// Runs `body` in a forked child and returns its exit code (or 100 + signal).
int RunInChild(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  if (WIFSIGNALED(status)) return 100 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// A connected pair with a channel on each end. Every test checks that the
// process holds as many descriptors at the end as before the pair existed.
class ControlChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = shmesh::testing::CountOpenFds();
    Connect({});
  }

  void TearDown() override {
    a_.reset();
    b_.reset();
    a_sock_.reset();
    b_sock_.reset();
    EXPECT_EQ(shmesh::testing::CountOpenFds(), fds_before_) << "descriptor leak";
  }

  void Connect(ControlChannelOptions options) {
    a_.reset();
    b_.reset();
    auto pair = fdpass::SeqpacketPair();
    ASSERT_TRUE(pair.ok()) << pair.status();
    a_sock_ = std::move(pair->first);
    b_sock_ = std::move(pair->second);
    a_ = std::make_unique<ControlChannel>(a_sock_.get(), options);
    b_ = std::make_unique<ControlChannel>(b_sock_.get(), options);
  }

  // Reads one message that must be there.
  ReceivedControl MustRead(ControlChannel& ch) {
    auto got = ch.Read();
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok() || !got->has_value()) {
      ADD_FAILURE() << "no message";
      return {};
    }
    return std::move(**got);
  }

  void ExpectNothing(ControlChannel& ch) {
    auto got = ch.Read();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_FALSE(got->has_value());
  }

  // Reads on b_ and returns the error, which must be one.
  absl::Status ReadError() {
    auto got = b_->Read();
    EXPECT_FALSE(got.ok()) << "accepted a bad message";
    return got.status();
  }

  size_t fds_before_ = 0;
  UniqueFd a_sock_, b_sock_;
  std::unique_ptr<ControlChannel> a_, b_;
};

TEST_F(ControlChannelTest, RoundTripsEveryKindBothWays) {
  for (auto [from, to] : {std::pair{a_.get(), b_.get()}, std::pair{b_.get(), a_.get()}}) {
    const std::vector<LinkControl> sent = {Ping(0), Ping(~uint64_t{0}), Pong(42),
                                           Goodbye("shutdown"), Goodbye("")};
    for (const LinkControl& m : sent) ASSERT_TRUE(from->Send(m).ok());
    for (const LinkControl& m : sent) {
      ReceivedControl got = MustRead(*to);
      EXPECT_EQ(got.message.SerializeAsString(), m.SerializeAsString());
      EXPECT_EQ(got.message.body_case(), m.body_case());
      EXPECT_TRUE(got.fds.empty());
    }
    ExpectNothing(*to);
  }
  EXPECT_EQ(a_->Stats().sent_messages, 5u);
  EXPECT_EQ(a_->Stats().received_messages, 5u);
  EXPECT_EQ(b_->Stats().sent_messages, 5u);
  EXPECT_EQ(b_->Stats().received_messages, 5u);
  EXPECT_EQ(b_->Stats().ignored_messages, 0u);
}

TEST_F(ControlChannelTest, PingIsEchoedWithPong) {
  ASSERT_TRUE(a_->Send(Ping(7)).ok());
  ReceivedControl ping = MustRead(*b_);
  ASSERT_TRUE(ping.message.has_ping());
  ASSERT_TRUE(b_->Send(Pong(ping.message.ping().token())).ok());
  ReceivedControl pong = MustRead(*a_);
  ASSERT_TRUE(pong.message.has_pong());
  EXPECT_EQ(pong.message.pong().token(), 7u);
}

TEST_F(ControlChannelTest, ReadWithNothingQueuedReturnsNothing) {
  ExpectNothing(*a_);
  ExpectNothing(*b_);
}

TEST_F(ControlChannelTest, DescriptorsArriveUsableAndSenderKeepsItsOwn) {
  Connect({/*testing_fds_on_ping=*/true});
  UniqueFd one = MakeMemfd("segment one");
  UniqueFd two = MakeMemfd("segment two");
  const int sent[] = {one.get(), two.get()};
  ASSERT_TRUE(a_->Send(Ping(1), sent).ok());
  // The sender keeps its descriptors.
  EXPECT_EQ(ReadAll(one.get()), "segment one");

  ReceivedControl got = MustRead(*b_);
  ASSERT_EQ(got.fds.size(), 2u);
  EXPECT_NE(got.fds[0].get(), one.get());
  EXPECT_EQ(ReadAll(got.fds[0].get()), "segment one");
  EXPECT_EQ(ReadAll(got.fds[1].get()), "segment two");
  EXPECT_TRUE(::fcntl(got.fds[0].get(), F_GETFD) & FD_CLOEXEC);
  // Shared: a write on the received copy is seen through the sender's.
  ASSERT_EQ(::pwrite(got.fds[1].get(), "S", 1, 0), 1);
  EXPECT_EQ(ReadAll(two.get()), "Segment two");

  EXPECT_EQ(a_->Stats().sent_fds, 2u);
  EXPECT_EQ(b_->Stats().received_fds, 2u);

  // The most a message may carry also arrives.
  std::vector<int> eight(kMaxControlFds, one.get());
  ASSERT_TRUE(a_->Send(Ping(2), eight).ok());
  EXPECT_EQ(MustRead(*b_).fds.size(), kMaxControlFds);
}

TEST_F(ControlChannelTest, EofIsUnavailableAtOnce) {
  a_.reset();
  a_sock_.reset();
  auto got = b_->Read();
  EXPECT_EQ(got.status().code(), absl::StatusCode::kUnavailable) << got.status();
  EXPECT_NE(got.status().message().find("peer closed the link socket"),
            std::string::npos)
      << got.status();
  // Sending to a gone peer fails the same way, without SIGPIPE.
  EXPECT_EQ(b_->Send(Ping(1)).code(), absl::StatusCode::kUnavailable);
}

TEST_F(ControlChannelTest, GoodbyeBeforeCloseIsReadBeforeTheEof) {
  ASSERT_TRUE(a_->Send(Goodbye("leaving")).ok());
  a_.reset();
  a_sock_.reset();
  ReceivedControl bye = MustRead(*b_);
  ASSERT_TRUE(bye.message.has_goodbye());
  EXPECT_EQ(bye.message.goodbye().reason(), "leaving");
  EXPECT_EQ(b_->Read().status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(ControlChannelTest, FloodOfAPeerThatDoesNotReadIsResourceExhausted) {
  // b_ never reads. Each Send must return; the first failure must be
  // RESOURCE_EXHAUSTED (a full socket buffer), long before this bound.
  const absl::Time start = absl::Now();
  absl::Status last;
  size_t sent = 0;
  for (; sent < 1000000; ++sent) {
    last = a_->Send(Goodbye(std::string(1000, 'x')));
    if (!last.ok()) break;
  }
  ASSERT_EQ(last.code(), absl::StatusCode::kResourceExhausted) << last;
  EXPECT_NE(last.message().find("full"), std::string::npos) << last;
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(a_->Stats().send_full, 1u);
  EXPECT_EQ(a_->Stats().sent_messages, sent);
  // Still refused, still without waiting; the other direction still works.
  EXPECT_EQ(a_->Send(Ping(1)).code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(b_->Send(Ping(2)).ok());
  EXPECT_TRUE(MustRead(*a_).message.has_ping());
  std::printf("flooded %zu messages in %s\n", sent,
              absl::FormatDuration(absl::Now() - start).c_str());
  // Once the reader catches up, sending works again.
  for (size_t i = 0; i < sent; ++i) MustRead(*b_);
  ExpectNothing(*b_);
  EXPECT_TRUE(a_->Send(Ping(3)).ok());
}

TEST_F(ControlChannelTest, SendRejectsWhatBreaksTheRules) {
  UniqueFd memfd = MakeMemfd("x");
  const int one[] = {memfd.get()};
  // No body.
  EXPECT_EQ(a_->Send(LinkControl()).code(), absl::StatusCode::kInvalidArgument);
  // Descriptors on kinds that carry none.
  EXPECT_EQ(a_->Send(Ping(1), one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a_->Send(Pong(1), one).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(a_->Send(Goodbye("x"), one).code(), absl::StatusCode::kInvalidArgument);
  // Over the size limit; exactly at it is fine. Goodbye{reason: n bytes}
  // serializes as 1 + len(1 + len(n) + n) + 1 + len(n) + n: with n = 4090,
  // 2-byte lengths, 4096 bytes.
  EXPECT_EQ(Goodbye(std::string(4090, 'r')).ByteSizeLong(), kMaxControlMessageBytes);
  EXPECT_TRUE(a_->Send(Goodbye(std::string(4090, 'r'))).ok());
  EXPECT_EQ(MustRead(*b_).message.goodbye().reason().size(), 4090u);
  absl::Status big = a_->Send(Goodbye(std::string(4091, 'r')));
  EXPECT_EQ(big.code(), absl::StatusCode::kInvalidArgument) << big;

  Connect({/*testing_fds_on_ping=*/true});
  std::vector<int> nine(kMaxControlFds + 1, memfd.get());
  EXPECT_EQ(a_->Send(Ping(1), nine).code(), absl::StatusCode::kInvalidArgument);
  const int negative[] = {-1};
  EXPECT_EQ(a_->Send(Ping(1), negative).code(), absl::StatusCode::kInvalidArgument);
  // Nothing of the above was sent.
  ExpectNothing(*b_);
  EXPECT_EQ(a_->Stats().sent_messages, 0u);
}

// One hostile message: what the peer sends and the error we must return.
struct Hostile {
  const char* what;
  std::string bytes;
  size_t num_fds;
  absl::StatusCode code;
};

TEST_F(ControlChannelTest, HostileMessagesFailAndLeakNothing) {
  const std::string ping = Ping(5).SerializeAsString();
  const std::string goodbye = Goodbye("bye").SerializeAsString();
  std::string truncated_proto = goodbye;
  truncated_proto.resize(goodbye.size() - 2);
  const std::vector<Hostile> cases = {
      {"garbage", std::string("\xff\xff\xff\xff", 4), 0, absl::StatusCode::kInvalidArgument},
      {"garbage with fds", std::string("\x0a\x7f", 2), 3, absl::StatusCode::kInvalidArgument},
      {"proto cut short", truncated_proto, 0, absl::StatusCode::kInvalidArgument},
      {"fds on Ping", ping, 1, absl::StatusCode::kInvalidArgument},
      {"fds on Pong", Pong(1).SerializeAsString(), 2, absl::StatusCode::kInvalidArgument},
      {"fds on Goodbye", goodbye, 8, absl::StatusCode::kInvalidArgument},
      {"too many fds, unknown kind", kUnknownKind, kMaxControlFds + 1,
       absl::StatusCode::kInvalidArgument},
      {"over fdpass's fd cap", ping, fdpass::kMaxFdsPerMessage + 4,
       absl::StatusCode::kInvalidArgument},
      {"empty with fds", "", 2, absl::StatusCode::kInvalidArgument},
      {"oversized", Goodbye(std::string(5000, 'g')).SerializeAsString(), 0,
       absl::StatusCode::kInvalidArgument},
      {"truncated (MSG_TRUNC)", std::string(fdpass::kMaxMessageBytes + 100, 'z'), 3,
       absl::StatusCode::kDataLoss},
  };
  UniqueFd memfd = MakeMemfd("hostile");
  for (const Hostile& c : cases) {
    SCOPED_TRACE(c.what);
    Connect({});
    const size_t connected = shmesh::testing::CountOpenFds();
    ASSERT_EQ(SendRaw(a_sock_.get(), c.bytes, std::vector<int>(c.num_fds, memfd.get())), 0)
        << std::strerror(errno);
    absl::Status error = ReadError();
    EXPECT_EQ(error.code(), c.code) << error;
    EXPECT_EQ(shmesh::testing::CountOpenFds(), connected) << "received descriptors leaked";
    EXPECT_EQ(b_->Stats().received_messages, 0u);
  }
}

TEST_F(ControlChannelTest, DescriptorsDroppedUnderLowRlimitAreDataLoss) {
  Connect({/*testing_fds_on_ping=*/true});
  {
    UniqueFd memfd = MakeMemfd("x");
    const int three[] = {memfd.get(), memfd.get(), memfd.get()};
    ASSERT_TRUE(a_->Send(Ping(9), three).ok());
  }
  // In a child, so the test process keeps its RLIMIT_NOFILE.
  ControlChannel* reader = b_.get();
  const int rc = RunInChild([reader]() -> int {
    const size_t baseline = shmesh::testing::CountOpenFds();
    // The soft limit that leaves one free descriptor number: the kernel
    // installs one of the three and drops the rest (MSG_CTRUNC).
    std::set<int> open;
    for (int fd = 0; fd < 4096; ++fd) {
      if (::fcntl(fd, F_GETFD) >= 0) open.insert(fd);
    }
    rlim_t limit = 0;
    for (int free_slots = 0; free_slots < 1; ++limit) {
      if (open.count(static_cast<int>(limit)) == 0) ++free_slots;
    }
    rlimit rl;
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
    const rlim_t saved = rl.rlim_cur;
    rl.rlim_cur = limit;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 11;
    auto got = reader->Read();
    rl.rlim_cur = saved;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 12;
    if (got.status().code() != absl::StatusCode::kDataLoss) return 13;
    if (shmesh::testing::CountOpenFds() != baseline) return 14;
    return 0;
  });
  EXPECT_EQ(rc, 0);
}

TEST_F(ControlChannelTest, UnknownKindsAreCountedAndIgnored) {
  UniqueFd memfd = MakeMemfd("future segment");
  const size_t before = shmesh::testing::CountOpenFds();
  // A newer peer's kinds: length-delimited and varint field 99, one with
  // descriptors (as a PoolSegment will carry), then a known one.
  ASSERT_EQ(SendRaw(a_sock_.get(), kUnknownKind, {}), 0);
  ASSERT_EQ(SendRaw(a_sock_.get(), std::string("\x98\x06\x01", 3), {}), 0);
  ASSERT_EQ(SendRaw(a_sock_.get(), kUnknownKind, {memfd.get(), memfd.get()}), 0);
  ASSERT_TRUE(a_->Send(Ping(11)).ok());
  ReceivedControl got = MustRead(*b_);
  ASSERT_TRUE(got.message.has_ping());
  EXPECT_EQ(got.message.ping().token(), 11u);
  EXPECT_EQ(b_->Stats().ignored_messages, 3u);
  EXPECT_EQ(b_->Stats().received_messages, 1u);
  EXPECT_EQ(b_->Stats().received_fds, 0u);
  EXPECT_EQ(shmesh::testing::CountOpenFds(), before) << "an ignored message's fds leaked";
  ExpectNothing(*b_);

  // A known kind with a field we don't know (a newer peer's Ping) is fine.
  std::string newer_ping = Ping(12).SerializeAsString();
  newer_ping[1] = static_cast<char>(newer_ping[1] + 2);  // Ping's length
  newer_ping += std::string("\x10\x05", 2);              // Ping field 2 = 5
  ASSERT_EQ(SendRaw(a_sock_.get(), newer_ping, {}), 0);
  got = MustRead(*b_);
  ASSERT_TRUE(got.message.has_ping());
  EXPECT_EQ(got.message.ping().token(), 12u);
}

TEST_F(ControlChannelTest, OneReadIgnoresAtMostItsBudget) {
  for (size_t i = 0; i < kMaxMessagesPerRead + 4; ++i) {
    ASSERT_EQ(SendRaw(a_sock_.get(), kUnknownKind, {}), 0);
  }
  ASSERT_TRUE(a_->Send(Ping(1)).ok());
  // The first call stops after its budget; the socket is still readable.
  ExpectNothing(*b_);
  EXPECT_EQ(b_->Stats().ignored_messages, kMaxMessagesPerRead);
  pollfd p = {b_sock_.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 1);
  EXPECT_TRUE(MustRead(*b_).message.has_ping());
  EXPECT_EQ(b_->Stats().ignored_messages, kMaxMessagesPerRead + 4);
}

TEST_F(ControlChannelTest, ConcurrentSendersEachDeliverWholeMessages) {
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 300;
  std::atomic<int> done{0};
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) {
        for (;;) {
          absl::Status s = a_->Send(Ping(t * kPerThread + i));
          if (s.ok()) break;
          ASSERT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
          std::this_thread::yield();
        }
      }
      done.fetch_add(1);
    });
  }
  std::set<uint64_t> tokens;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (tokens.size() < kThreads * kPerThread && absl::Now() < deadline) {
    auto got = b_->Read();
    ASSERT_TRUE(got.ok()) << got.status();
    if (!got->has_value()) {
      (void)fdpass::WaitReadable(b_sock_.get(), absl::Now() + absl::Milliseconds(50));
      continue;
    }
    ASSERT_TRUE((*got)->message.has_ping());
    EXPECT_TRUE(tokens.insert((*got)->message.ping().token()).second);
  }
  for (std::thread& s : senders) s.join();
  EXPECT_EQ(done.load(), kThreads);
  EXPECT_EQ(tokens.size(), kThreads * kPerThread);
  EXPECT_EQ(a_->Stats().sent_messages, kThreads * kPerThread);
}

TEST(ValidateLinkControlTest, Rules) {
  EXPECT_EQ(ValidateLinkControl(LinkControl(), 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateLinkControl(Ping(1), 0).ok());
  EXPECT_TRUE(ValidateLinkControl(Pong(1), 0).ok());
  EXPECT_TRUE(ValidateLinkControl(Goodbye(""), 0).ok());
  EXPECT_EQ(ValidateLinkControl(Ping(1), 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateLinkControl(Goodbye(""), 1).code(), absl::StatusCode::kInvalidArgument);
  LinkControl unknown;
  ASSERT_TRUE(unknown.ParseFromString(kUnknownKind));
  EXPECT_EQ(unknown.body_case(), LinkControl::BODY_NOT_SET);
  EXPECT_TRUE(ValidateLinkControl(unknown, 0).ok());
  EXPECT_TRUE(ValidateLinkControl(unknown, kMaxControlFds).ok());
  EXPECT_EQ(ValidateLinkControl(unknown, kMaxControlFds + 1).code(),
            absl::StatusCode::kInvalidArgument);
  const ControlChannelOptions testing{/*testing_fds_on_ping=*/true};
  EXPECT_TRUE(ValidateLinkControl(Ping(1), kMaxControlFds, testing).ok());
  EXPECT_EQ(ValidateLinkControl(Ping(1), kMaxControlFds + 1, testing).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateLinkControl(Pong(1), 1, testing).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace links
}  // namespace mesh
