// Tests for fdpass: base::UniqueFd and the SOCK_SEQPACKET / SCM_RIGHTS layer.
//
// Everything runs on real kernel objects: socketpairs, filesystem sockets in
// a short mkdtemp() directory (Bazel's TEST_TMPDIR is longer than sun_path),
// pipes, memfds, fork()ed and exec()ed children. Every test checks that the
// process's descriptor count is unchanged at the end. Children report through
// their exit code and never touch gtest.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "testing/fd_count.h"

namespace fdpass {
namespace {

using ::shmesh::testing::CountOpenFds;
using ::testing::HasSubstr;

absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

bool IsCloexec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  return flags != -1 && (flags & FD_CLOEXEC) != 0;
}

bool IsNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags != -1 && (flags & O_NONBLOCK) != 0;
}

std::pair<base::UniqueFd, base::UniqueFd> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) std::abort();
  return {base::UniqueFd(fds[0]), base::UniqueFd(fds[1])};
}

base::UniqueFd MakeMemfd(const std::string& contents) {
  base::UniqueFd fd(::memfd_create("fdpass_test", MFD_CLOEXEC));
  if (!fd.valid()) std::abort();
  if (::write(fd.get(), contents.data(), contents.size()) !=
      static_cast<ssize_t>(contents.size())) {
    std::abort();
  }
  return fd;
}

std::string ReadMemfd(int fd) {
  char buf[256];
  ssize_t n = ::pread(fd, buf, sizeof(buf), 0);
  return n < 0 ? std::string() : std::string(buf, static_cast<size_t>(n));
}

// Reads from `fd` until EOF.
std::string ReadAll(int fd) {
  std::string out;
  char buf[256];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// The open descriptor numbers of this process.
std::set<int> OpenFdNumbers() {
  std::set<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) std::abort();
  int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != own) fds.insert(fd);
  }
  ::closedir(dir);
  return fds;
}

// Runs `body` in a fork()ed child and returns its exit code (128 + signal
// if it was killed). The child leaves with _exit: no atexit, no gtest.
int RunInChild(const std::function<int()>& body) {
  pid_t pid = ::fork();
  if (pid < 0) std::abort();
  if (pid == 0) ::_exit(body());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) std::abort();
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + WTERMSIG(status);
}

// Asserts that no test leaks a descriptor.
class FdLeakTest : public ::testing::Test {
 protected:
  void SetUp() override {
    baseline_ = CountOpenFds();
    ASSERT_NE(baseline_, SIZE_MAX) << "cannot read /proc/self/fd";
  }
  void TearDown() override {
    EXPECT_EQ(CountOpenFds(), baseline_) << "descriptor leak";
  }

 private:
  size_t baseline_ = 0;
};

// A short directory for socket files, removed with its contents at the end.
class SocketDirTest : public FdLeakTest {
 protected:
  void SetUp() override {
    FdLeakTest::SetUp();
    char tmpl[] = "/tmp/fdp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    if (DIR* d = ::opendir(dir_.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..") continue;
        std::string full = dir_ + "/" + name;
        if (::unlink(full.c_str()) != 0) ::rmdir(full.c_str());
      }
      ::closedir(d);
    }
    EXPECT_EQ(::rmdir(dir_.c_str()), 0) << std::strerror(errno);
    FdLeakTest::TearDown();
  }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  std::string dir_;
};

// ---------------------------------------------------- socketpair messages

using SeqpacketPairTest = FdLeakTest;

TEST_F(SeqpacketPairTest, SocketsAreNonBlockingAndCloexec) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  for (int fd : {pair->first.get(), pair->second.get()}) {
    EXPECT_TRUE(IsCloexec(fd));
    EXPECT_TRUE(IsNonBlocking(fd));
  }
}

TEST_F(SeqpacketPairTest, SendsBytesAndDescriptors) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto [pipe_r, pipe_w] = MakePipe();
  base::UniqueFd memfd = MakeMemfd("shared contents");
  auto [extra_r, extra_w] = MakePipe();

  ASSERT_TRUE(SendMessage(pair->first.get(), "hello",
                          {pipe_w.get(), memfd.get(), extra_r.get()}, Soon())
                  .ok());
  // The sender still owns what it sent.
  EXPECT_TRUE(IsOpen(pipe_w.get()));
  EXPECT_TRUE(IsOpen(memfd.get()));

  auto msg = ReceiveMessage(pair->second.get(), Soon());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->bytes, "hello");
  ASSERT_EQ(msg->fds.size(), 3u);
  for (const base::UniqueFd& fd : msg->fds) {
    EXPECT_TRUE(IsCloexec(fd.get())) << fd.get();
    EXPECT_NE(fd.get(), pipe_w.get());
    EXPECT_NE(fd.get(), memfd.get());
  }
  // The received pipe end is the same pipe: write through it, read here.
  ASSERT_EQ(::write(msg->fds[0].get(), "ping", 4), 4);
  char buf[4];
  ASSERT_EQ(::read(pipe_r.get(), buf, 4), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  // The received memfd is the same file.
  EXPECT_EQ(ReadMemfd(msg->fds[1].get()), "shared contents");
  ASSERT_EQ(::pwrite(msg->fds[1].get(), "SHARED", 6, 0), 6);
  EXPECT_EQ(ReadMemfd(memfd.get()), "SHARED contents");
}

TEST_F(SeqpacketPairTest, DescriptorsWithoutBytes) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  base::UniqueFd memfd = MakeMemfd("x");
  ASSERT_TRUE(SendMessage(pair->first.get(), "", {memfd.get()}, Soon()).ok());
  auto msg = ReceiveMessage(pair->second.get(), Soon());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->bytes, "");
  ASSERT_EQ(msg->fds.size(), 1u);
  EXPECT_EQ(ReadMemfd(msg->fds[0].get()), "x");
}

TEST_F(SeqpacketPairTest, MessageBoundariesAreKept) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  const std::string big(kMaxMessageBytes, 'b');
  ASSERT_TRUE(SendMessage(pair->first.get(), "one", {}, Soon()).ok());
  ASSERT_TRUE(SendMessage(pair->first.get(), big, {}, Soon()).ok());
  ASSERT_TRUE(SendMessage(pair->first.get(), "three", {}, Soon()).ok());
  auto one = ReceiveMessage(pair->second.get(), Soon());
  auto two = ReceiveMessage(pair->second.get(), Soon());
  auto three = ReceiveMessage(pair->second.get(), Soon());
  ASSERT_TRUE(one.ok() && two.ok() && three.ok());
  EXPECT_EQ(one->bytes, "one");
  EXPECT_EQ(two->bytes, big);
  EXPECT_EQ(three->bytes, "three");
}

TEST_F(SeqpacketPairTest, SendRejectsInvalidMessages) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  int s = pair->first.get();
  base::UniqueFd memfd = MakeMemfd("x");
  std::vector<int> seventeen(kMaxFdsPerMessage + 1, memfd.get());

  EXPECT_EQ(
      SendMessage(s, std::string(kMaxMessageBytes + 1, 'x'), {}, Soon()).code(),
      absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SendMessage(s, "x", seventeen, Soon()).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SendMessage(s, "x", {-1}, Soon()).code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status empty = SendMessage(s, "", {}, Soon());
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(empty.message(), HasSubstr("EOF"));
  // None of them sent anything.
  EXPECT_EQ(
      ReceiveMessage(pair->second.get(), absl::InfinitePast()).status().code(),
      absl::StatusCode::kDeadlineExceeded);
}

TEST_F(SeqpacketPairTest, ReceiveTimesOutAtDeadline) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  absl::Time start = absl::Now();
  auto msg =
      ReceiveMessage(pair->second.get(), start + absl::Milliseconds(100));
  absl::Duration took = absl::Now() - start;
  EXPECT_EQ(msg.status().code(), absl::StatusCode::kDeadlineExceeded)
      << msg.status();
  EXPECT_GE(took, absl::Milliseconds(100));
  EXPECT_LT(took, absl::Seconds(2));
}

TEST_F(SeqpacketPairTest, PastDeadlineTriesOnce) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  absl::Time start = absl::Now();
  EXPECT_EQ(
      ReceiveMessage(pair->second.get(), absl::InfinitePast()).status().code(),
      absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
  // A queued message is still returned with a passed deadline.
  ASSERT_TRUE(
      SendMessage(pair->first.get(), "queued", {}, absl::InfinitePast()).ok());
  auto msg = ReceiveMessage(pair->second.get(), absl::InfinitePast());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->bytes, "queued");
}

TEST_F(SeqpacketPairTest, ReceiveWakesWhenMessageArrives) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  std::thread sender([fd = pair->first.get()] {
    absl::SleepFor(absl::Milliseconds(50));
    absl::Status s = SendMessage(fd, "late", {}, Soon());
    if (!s.ok()) std::abort();
  });
  auto msg = ReceiveMessage(pair->second.get(), Soon());
  sender.join();
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->bytes, "late");
}

TEST_F(SeqpacketPairTest, SendWaitsForRoomUntilDeadline) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  int a = pair->first.get();
  int b = pair->second.get();
  const std::string chunk(4096, 'c');
  int queued = 0;
  for (; queued < 100000; ++queued) {
    absl::Status s = SendMessage(a, chunk, {}, absl::InfinitePast());
    if (absl::IsDeadlineExceeded(s)) break;
    ASSERT_TRUE(s.ok()) << s;
  }
  ASSERT_GT(queued, 0);
  ASSERT_LT(queued, 100000) << "socket buffer never filled";

  absl::Time start = absl::Now();
  absl::Status full = SendMessage(a, chunk, {}, start + absl::Milliseconds(50));
  EXPECT_EQ(full.code(), absl::StatusCode::kDeadlineExceeded) << full;
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));

  // A reader drains the queue; a waiting sender then gets through.
  std::thread reader([b, queued] {
    absl::SleepFor(absl::Milliseconds(50));
    for (int i = 0; i < queued; ++i) {
      if (!ReceiveMessage(b, Soon()).ok()) std::abort();
    }
  });
  absl::Status later = SendMessage(a, "after", {}, Soon());
  reader.join();
  ASSERT_TRUE(later.ok()) << later;
  auto msg = ReceiveMessage(b, Soon());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->bytes, "after");
}

TEST_F(SeqpacketPairTest, EofAfterPeerCloses) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE(SendMessage(pair->first.get(), "last words", {}, Soon()).ok());
  pair->first.reset();
  // Queued messages come first, then EOF, every time it is asked.
  auto msg = ReceiveMessage(pair->second.get(), Soon());
  ASSERT_TRUE(msg.ok()) << msg.status();
  EXPECT_EQ(msg->bytes, "last words");
  for (int i = 0; i < 2; ++i) {
    auto eof = ReceiveMessage(pair->second.get(), Soon());
    EXPECT_EQ(eof.status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_THAT(eof.status().message(), HasSubstr("peer closed"));
  }
}

TEST_F(SeqpacketPairTest, SendToClosedPeerIsUnavailable) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  pair->second.reset();
  // MSG_NOSIGNAL: no SIGPIPE kills the test here.
  absl::Status s = SendMessage(pair->first.get(), "anyone?", {}, Soon());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("peer closed"));
}

TEST_F(SeqpacketPairTest, PeerClosingWithUnreadDataIsUnavailable) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  ASSERT_TRUE(SendMessage(pair->first.get(), "never read", {}, Soon()).ok());
  pair->second.reset();  // Closes with our message unread: ECONNRESET.
  auto msg = ReceiveMessage(pair->first.get(), Soon());
  EXPECT_EQ(msg.status().code(), absl::StatusCode::kUnavailable)
      << msg.status();
}

TEST_F(SeqpacketPairTest, TooManyDescriptorsAreRejectedAndClosed) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  base::UniqueFd memfd = MakeMemfd("x");
  // 20 descriptors, sent with a raw sendmsg (SendMessage refuses to).
  constexpr int kCount = 20;
  std::vector<int> fds(kCount, memfd.get());
  char byte = 'x';
  iovec iov = {&byte, 1};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kCount)];
  std::memset(control, 0, sizeof(control));
  msghdr m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * kCount);
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * kCount);
  ASSERT_EQ(::sendmsg(pair->first.get(), &m, MSG_NOSIGNAL), 1)
      << std::strerror(errno);

  auto msg = ReceiveMessage(pair->second.get(), Soon());
  EXPECT_EQ(msg.status().code(), absl::StatusCode::kInvalidArgument)
      << msg.status();
  EXPECT_THAT(msg.status().message(), HasSubstr("more than 16"));
  // The fixture checks that none of the received duplicates stayed open.
}

TEST_F(SeqpacketPairTest, OversizedMessageIsDataLossAndClosesFds) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  base::UniqueFd memfd = MakeMemfd("x");
  // One byte over the limit, plus a descriptor, with a raw sendmsg.
  std::string big(kMaxMessageBytes + 1, 'x');
  iovec iov = {big.data(), big.size()};
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int))];
  std::memset(control, 0, sizeof(control));
  msghdr m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  int raw = memfd.get();
  std::memcpy(CMSG_DATA(c), &raw, sizeof(int));
  ASSERT_EQ(::sendmsg(pair->first.get(), &m, MSG_NOSIGNAL),
            static_cast<ssize_t>(big.size()))
      << std::strerror(errno);

  auto msg = ReceiveMessage(pair->second.get(), Soon());
  EXPECT_EQ(msg.status().code(), absl::StatusCode::kDataLoss) << msg.status();
  EXPECT_THAT(msg.status().message(), HasSubstr("truncated"));
}

TEST_F(SeqpacketPairTest, DescriptorsDroppedUnderLowRlimitAreDataLoss) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  {
    base::UniqueFd memfd = MakeMemfd("x");
    std::vector<int> eight(8, memfd.get());
    ASSERT_TRUE(SendMessage(pair->first.get(), "eight", eight, Soon()).ok());
  }
  // In a child, so the test process keeps its own RLIMIT_NOFILE.
  int child_rc = RunInChild([fd = pair->second.get()]() -> int {
    size_t baseline = CountOpenFds();
    // Pick the soft limit that leaves exactly 3 free descriptor numbers.
    std::set<int> open = OpenFdNumbers();
    rlim_t limit = 0;
    for (int free_slots = 0; free_slots < 3; ++limit) {
      if (open.count(static_cast<int>(limit)) == 0) ++free_slots;
    }
    rlimit rl;
    if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 10;
    rl.rlim_cur = limit;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) return 11;
    auto msg = ReceiveMessage(fd, Soon());
    if (msg.status().code() != absl::StatusCode::kDataLoss) return 12;
    if (msg.status().message().find("closed the 3 that arrived") ==
        absl::string_view::npos) {
      return 13;
    }
    if (CountOpenFds() != baseline) return 14;
    return 0;
  });
  EXPECT_EQ(child_rc, 0);
}

TEST_F(SeqpacketPairTest, PeerCredOfPairIsThisProcess) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto cred = GetPeerCred(pair->first.get());
  ASSERT_TRUE(cred.ok()) << cred.status();
  EXPECT_EQ(cred->pid, ::getpid());
  EXPECT_EQ(cred->uid, ::getuid());
  EXPECT_EQ(cred->gid, ::getgid());
}

TEST_F(SeqpacketPairTest, PeerCredNeedsAConnectedSocket) {
  auto [r, w] = MakePipe();
  EXPECT_EQ(GetPeerCred(r.get()).status().code(),
            absl::StatusCode::kInvalidArgument);
  base::UniqueFd lone(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(lone.valid());
  EXPECT_EQ(GetPeerCred(lone.get()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(SeqpacketPairTest, WaitReadable) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  absl::Time start = absl::Now();
  EXPECT_EQ(
      WaitReadable(pair->second.get(), start + absl::Milliseconds(30)).code(),
      absl::StatusCode::kDeadlineExceeded);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(30));
  ASSERT_TRUE(SendMessage(pair->first.get(), "x", {}, Soon()).ok());
  EXPECT_TRUE(WaitReadable(pair->second.get(), absl::InfinitePast()).ok());
  EXPECT_TRUE(WaitReadable(pair->second.get(), absl::InfiniteFuture()).ok());
  // A descriptor that isn't open.
  base::UniqueFd closed(::dup(pair->first.get()));
  int stale = closed.get();
  closed.reset();
  EXPECT_EQ(WaitReadable(stale, Soon()).code(),
            absl::StatusCode::kInvalidArgument);
}

// Interrupting signals (no SA_RESTART) arrive every 5 ms while calls wait:
// they neither fail nor cut the wait short.
TEST_F(SeqpacketPairTest, SignalsDoNotInterruptWaits) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  static std::atomic<int> signals{0};
  struct sigaction sa = {};
  sa.sa_handler = [](int) { signals.fetch_add(1, std::memory_order_relaxed); };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // No SA_RESTART: syscalls return EINTR.
  struct sigaction old_sa;
  ASSERT_EQ(::sigaction(SIGALRM, &sa, &old_sa), 0);
  itimerval every_5ms = {{0, 5000}, {0, 5000}};
  ASSERT_EQ(::setitimer(ITIMER_REAL, &every_5ms, nullptr), 0);

  absl::Time start = absl::Now();
  auto msg =
      ReceiveMessage(pair->second.get(), start + absl::Milliseconds(100));
  absl::Duration took = absl::Now() - start;

  itimerval off = {};
  ::setitimer(ITIMER_REAL, &off, nullptr);
  ::sigaction(SIGALRM, &old_sa, nullptr);

  EXPECT_EQ(msg.status().code(), absl::StatusCode::kDeadlineExceeded)
      << msg.status();
  EXPECT_GE(took, absl::Milliseconds(100));
  EXPECT_GT(signals.load(), 0);
}

// fd passing between processes: the child receives a memfd and a pipe end
// from the parent, reads the memfd and answers through the pipe.
TEST_F(SeqpacketPairTest, ChildUsesDescriptorsPassedByParent) {
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  auto [pipe_r, pipe_w] = MakePipe();
  base::UniqueFd memfd = MakeMemfd("from parent");

  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // Drop the child's inherited copies of what it is about to receive, so
    // that it can only use the duplicates that come over the socket.
    pipe_w.reset();
    memfd.reset();
    pipe_r.reset();
    auto msg = ReceiveMessage(pair->second.get(), Soon());
    if (!msg.ok() || msg->bytes != "use these" || msg->fds.size() != 2) {
      ::_exit(1);
    }
    if (!IsCloexec(msg->fds[0].get()) || !IsCloexec(msg->fds[1].get())) {
      ::_exit(2);
    }
    std::string text = ReadMemfd(msg->fds[0].get());
    std::string reply = "child read: " + text;
    if (::write(msg->fds[1].get(), reply.data(), reply.size()) !=
        static_cast<ssize_t>(reply.size())) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  ASSERT_TRUE(SendMessage(pair->first.get(), "use these",
                          {memfd.get(), pipe_w.get()}, Soon())
                  .ok());
  pipe_w.reset();  // Only the child's copy remains: EOF when it exits.
  EXPECT_EQ(ReadAll(pipe_r.get()), "child read: from parent");
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// ------------------------------------------------- filesystem sockets

using ListenTest = SocketDirTest;

TEST_F(ListenTest, ListenConnectAcceptExchange) {
  std::string path = Path("node.sock");
  auto listener = ListenSeqpacket(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto client = ConnectSeqpacket(path, Soon());
  ASSERT_TRUE(client.ok()) << client.status();
  auto server = Accept(listener->get(), Soon());
  ASSERT_TRUE(server.ok()) << server.status();
  for (int fd : {listener->get(), client->get(), server->get()}) {
    EXPECT_TRUE(IsCloexec(fd)) << fd;
    EXPECT_TRUE(IsNonBlocking(fd)) << fd;
  }
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));

  base::UniqueFd memfd = MakeMemfd("ring");
  ASSERT_TRUE(SendMessage(client->get(), "hello", {memfd.get()}, Soon()).ok());
  auto got = ReceiveMessage(server->get(), Soon());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->bytes, "hello");
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_EQ(ReadMemfd(got->fds[0].get()), "ring");
  ASSERT_TRUE(SendMessage(server->get(), "welcome", {}, Soon()).ok());
  auto back = ReceiveMessage(client->get(), Soon());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->bytes, "welcome");

  for (int fd : {client->get(), server->get()}) {
    auto cred = GetPeerCred(fd);
    ASSERT_TRUE(cred.ok()) << cred.status();
    EXPECT_EQ(cred->pid, ::getpid());
    EXPECT_EQ(cred->uid, ::getuid());
    EXPECT_EQ(cred->gid, ::getgid());
  }
}

TEST_F(ListenTest, AcceptTimesOutAtDeadline) {
  auto listener = ListenSeqpacket(Path("a.sock"));
  ASSERT_TRUE(listener.ok()) << listener.status();
  absl::Time start = absl::Now();
  auto conn = Accept(listener->get(), start + absl::Milliseconds(50));
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kDeadlineExceeded)
      << conn.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));
  // With a passed deadline, Accept still takes a pending connection.
  auto client = ConnectSeqpacket(Path("a.sock"), Soon());
  ASSERT_TRUE(client.ok()) << client.status();
  auto server = Accept(listener->get(), absl::InfinitePast());
  EXPECT_TRUE(server.ok()) << server.status();
}

TEST_F(ListenTest, StaleSocketFileIsReplaced) {
  std::string path = Path("stale.sock");
  {
    auto dead = ListenSeqpacket(path);
    ASSERT_TRUE(dead.ok()) << dead.status();
  }  // Closed: the file stays behind, as after a crash.
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(ConnectSeqpacket(path, Soon()).status().code(),
            absl::StatusCode::kUnavailable);

  auto fresh = ListenSeqpacket(path);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  auto client = ConnectSeqpacket(path, Soon());
  ASSERT_TRUE(client.ok()) << client.status();
  auto server = Accept(fresh->get(), Soon());
  EXPECT_TRUE(server.ok()) << server.status();
}

TEST_F(ListenTest, LiveListenerIsAlreadyExists) {
  std::string path = Path("live.sock");
  auto first = ListenSeqpacket(path);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ListenSeqpacket(path);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists)
      << second.status();

  // The first listener is untouched; the probe left it one connection that
  // was closed at once.
  auto probe = Accept(first->get(), Soon());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(ReceiveMessage(probe->get(), Soon()).status().code(),
            absl::StatusCode::kOutOfRange);
  auto client = ConnectSeqpacket(path, Soon());
  ASSERT_TRUE(client.ok()) << client.status();
  auto server = Accept(first->get(), Soon());
  EXPECT_TRUE(server.ok()) << server.status();
}

TEST_F(ListenTest, StreamListenerIsAlreadyExists) {
  std::string path = Path("stream.sock");
  base::UniqueFd stream(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(stream.valid());
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  ASSERT_EQ(
      ::bind(stream.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
      0);
  ASSERT_EQ(::listen(stream.get(), 1), 0);
  EXPECT_EQ(ListenSeqpacket(path).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(ConnectSeqpacket(path, Soon()).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ListenTest, NonSocketIsFailedPrecondition) {
  std::string file = Path("plain");
  {
    base::UniqueFd fd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid());
  }
  auto listener = ListenSeqpacket(file);
  EXPECT_EQ(listener.status().code(), absl::StatusCode::kFailedPrecondition)
      << listener.status();
  struct stat st;
  ASSERT_EQ(::lstat(file.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "the file must be left alone";

  std::string dir = Path("subdir");
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  EXPECT_EQ(ListenSeqpacket(dir).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(ListenTest, PathsAreValidated) {
  // /tmp/fdp-XXXXXX/ is 16 bytes; fill up to exactly the 107-byte limit.
  std::string longest = Path(std::string(107 - dir_.size() - 1, 'p'));
  ASSERT_EQ(longest.size(), 107u);
  auto ok = ListenSeqpacket(longest);
  ASSERT_TRUE(ok.ok()) << ok.status();
  auto client = ConnectSeqpacket(longest, Soon());
  ASSERT_TRUE(client.ok()) << client.status();
  auto server = Accept(ok->get(), Soon());
  ASSERT_TRUE(server.ok()) << server.status();

  std::string too_long = longest + "q";
  auto rejected = ListenSeqpacket(too_long);
  EXPECT_EQ(rejected.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(rejected.status().message(), HasSubstr("107-byte"));
  EXPECT_EQ(ConnectSeqpacket(too_long, Soon()).status().code(),
            absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(ListenSeqpacket("").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ListenSeqpacket(std::string("\0abstract", 9)).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ListenSeqpacket(Path(std::string("a\0b", 3))).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      ConnectSeqpacket(std::string("\0abstract", 9), Soon()).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(ListenTest, ConnectWithoutListenerIsUnavailable) {
  std::string missing = Path("missing.sock");
  auto conn = ConnectSeqpacket(missing, Soon());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(conn.status().message(), HasSubstr(missing));
}

TEST_F(ListenTest, ConnectWaitsForBacklogRoom) {
  std::string path = Path("busy.sock");
  auto listener = ListenSeqpacket(path, /*backlog=*/0);
  ASSERT_TRUE(listener.ok()) << listener.status();
  // Fill the backlog with connections nobody accepts yet.
  std::vector<base::UniqueFd> pending;
  for (int i = 0; i < 16; ++i) {
    auto conn = ConnectSeqpacket(path, absl::InfinitePast());
    if (absl::IsDeadlineExceeded(conn.status())) break;
    ASSERT_TRUE(conn.ok()) << conn.status();
    pending.push_back(*std::move(conn));
  }
  ASSERT_FALSE(pending.empty());
  ASSERT_LT(pending.size(), 16u) << "backlog never filled";

  absl::Time start = absl::Now();
  auto late = ConnectSeqpacket(path, start + absl::Milliseconds(50));
  EXPECT_EQ(late.status().code(), absl::StatusCode::kDeadlineExceeded)
      << late.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(50));

  // Once the listener accepts, a waiting connect gets through.
  std::vector<base::UniqueFd> accepted;
  std::thread acceptor([&accepted, fd = listener->get(), n = pending.size()] {
    absl::SleepFor(absl::Milliseconds(50));
    for (size_t i = 0; i <= n; ++i) {
      auto conn = Accept(fd, Soon());
      if (!conn.ok()) std::abort();
      accepted.push_back(*std::move(conn));
    }
  });
  auto waited = ConnectSeqpacket(path, Soon());
  acceptor.join();
  ASSERT_TRUE(waited.ok()) << waited.status();
  EXPECT_TRUE(IsNonBlocking(waited->get()));
  EXPECT_EQ(accepted.size(), pending.size() + 1);
}

TEST_F(ListenTest, PeerCredOfForkedChild) {
  std::string path = Path("creds.sock");
  auto listener = ListenSeqpacket(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto conn = ConnectSeqpacket(path, Soon());
    if (!conn.ok()) ::_exit(1);
    // Stay connected until the parent has looked.
    auto bye = ReceiveMessage(conn->get(), Soon());
    ::_exit(bye.ok() && bye->bytes == "bye" ? 0 : 2);
  }
  auto server = Accept(listener->get(), Soon());
  ASSERT_TRUE(server.ok()) << server.status();
  auto cred = GetPeerCred(server->get());
  ASSERT_TRUE(cred.ok()) << cred.status();
  EXPECT_EQ(cred->pid, child);
  EXPECT_EQ(cred->uid, ::getuid());
  EXPECT_TRUE(SendMessage(server->get(), "bye", {}, Soon()).ok());
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// ------------------------------------------------- stream listeners

// Connects a blocking SOCK_STREAM socket to `path`: 0, or the errno.
int ConnectStreamErrno(const std::string& path, base::UniqueFd* out = nullptr) {
  base::UniqueFd sock(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!sock.valid()) return errno;
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr),
                sizeof(addr)) != 0) {
    return errno;
  }
  if (out != nullptr) *out = std::move(sock);
  return 0;
}

mode_t PermissionBits(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 07777;
  return st.st_mode & 07777;
}

TEST_F(ListenTest, StreamListenerAcceptsWithCredentialsAndMode0600) {
  std::string path = Path("grpc.sock");
  auto listener = ListenStream(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  EXPECT_TRUE(IsCloexec(listener->get()));
  EXPECT_TRUE(IsNonBlocking(listener->get()));
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);

  base::UniqueFd client;
  ASSERT_EQ(ConnectStreamErrno(path, &client), 0);
  auto server = Accept(listener->get(), Soon());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(IsCloexec(server->get()));
  EXPECT_TRUE(IsNonBlocking(server->get()));
  auto cred = GetPeerCred(server->get());
  ASSERT_TRUE(cred.ok()) << cred.status();
  EXPECT_EQ(cred->pid, ::getpid());
  EXPECT_EQ(cred->uid, ::getuid());
  // A byte stream: what one side writes the other reads.
  ASSERT_EQ(::write(client.get(), "PRI", 3), 3);
  char buf[8];
  ASSERT_TRUE(WaitReadable(server->get(), Soon()).ok());
  EXPECT_EQ(::read(server->get(), buf, sizeof(buf)), 3);

  auto wide = ListenStream(Path("wide.sock"), 0666);
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(PermissionBits(Path("wide.sock")), 0666u);
}

TEST_F(ListenTest, StreamListenerModeKeepsOtherUsersOut) {
  std::string path = Path("private.sock");
  if (::geteuid() != 0) {
    // Not root: mode 0 keeps even our own uid out.
    auto listener = ListenStream(path, 0);
    ASSERT_TRUE(listener.ok()) << listener.status();
    EXPECT_EQ(ConnectStreamErrno(path), EACCES);
    return;
  }
  // Root connects anywhere: check mode 0600 as uid 65534 in a child (CI
  // runs as root), through a directory it may enter.
  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  auto listener = ListenStream(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  int rc = RunInChild([&path]() -> int {
    if (::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      return 2;
    }
    return ConnectStreamErrno(path) == EACCES ? 0 : 1;
  });
  EXPECT_NE(rc, 2) << "could not drop to uid 65534";
  EXPECT_EQ(rc, 0) << "uid 65534 could connect to a 0600 socket";
  // With mode 0666 it can.
  std::string open_path = Path("open.sock");
  auto open_listener = ListenStream(open_path, 0666);
  ASSERT_TRUE(open_listener.ok()) << open_listener.status();
  rc = RunInChild([&open_path]() -> int {
    if (::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      return 2;
    }
    return ConnectStreamErrno(open_path);
  });
  EXPECT_EQ(rc, 0) << "uid 65534 could not connect to a 0666 socket: "
                   << std::strerror(rc);
  auto accepted = Accept(open_listener->get(), Soon());
  EXPECT_TRUE(accepted.ok()) << accepted.status();
}

TEST_F(ListenTest, StreamListenerReplacesStaleFilesOfEitherType) {
  std::string path = Path("stale.sock");
  {
    auto dead = ListenStream(path);
    ASSERT_TRUE(dead.ok()) << dead.status();
  }  // Closed: the file stays behind, as after a crash.
  EXPECT_EQ(ConnectStreamErrno(path), ECONNREFUSED);
  auto fresh = ListenStream(path);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(ConnectStreamErrno(path), 0);

  std::string seq_path = Path("was_seqpacket.sock");
  {
    auto dead = ListenSeqpacket(seq_path);
    ASSERT_TRUE(dead.ok()) << dead.status();
  }
  auto replaced = ListenStream(seq_path);
  ASSERT_TRUE(replaced.ok()) << replaced.status();
  EXPECT_EQ(ConnectStreamErrno(seq_path), 0);
}

TEST_F(ListenTest, StreamListenerRefusesLiveListenersAndOtherFiles) {
  std::string path = Path("live.sock");
  auto first = ListenStream(path);
  ASSERT_TRUE(first.ok()) << first.status();
  auto second = ListenStream(path);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists)
      << second.status();
  // The first one still works; the probe cost it one connection.
  auto probe = Accept(first->get(), Soon());
  ASSERT_TRUE(probe.ok()) << probe.status();
  EXPECT_EQ(ConnectStreamErrno(path), 0);

  std::string seq_path = Path("seq.sock");
  auto seq = ListenSeqpacket(seq_path);
  ASSERT_TRUE(seq.ok()) << seq.status();
  EXPECT_EQ(ListenStream(seq_path).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(ConnectSeqpacket(seq_path, Soon()).ok())
      << "the seqpacket listener must be left alone";

  std::string file = Path("plain");
  {
    base::UniqueFd fd(::open(file.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd.valid());
  }
  EXPECT_EQ(ListenStream(file).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ListenStream("").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ListenStream(Path(std::string(120, 'x'))).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Every descriptor fdpass makes is close-on-exec: an exec()ed shell sees
// none of them (`[` is a shell builtin, so /proc/self is the shell).
TEST_F(ListenTest, DescriptorsDoNotSurviveExec) {
  std::string path = Path("exec.sock");
  auto listener = ListenSeqpacket(path);
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto client = ConnectSeqpacket(path, Soon());
  ASSERT_TRUE(client.ok()) << client.status();
  auto server = Accept(listener->get(), Soon());
  ASSERT_TRUE(server.ok()) << server.status();
  auto pair = SeqpacketPair();
  ASSERT_TRUE(pair.ok()) << pair.status();
  base::UniqueFd memfd = MakeMemfd("x");
  ASSERT_TRUE(SendMessage(pair->first.get(), "fd", {memfd.get()}, Soon()).ok());
  auto received = ReceiveMessage(pair->second.get(), Soon());
  ASSERT_TRUE(received.ok()) << received.status();

  std::vector<int> ours = {listener->get(),    client->get(),
                           server->get(),      pair->first.get(),
                           pair->second.get(), received->fds[0].get()};
  std::string script =
      absl::StrCat("for fd in ", absl::StrJoin(ours, " "),
                   "; do [ -e /proc/self/fd/$fd ] && exit 1; done; exit 0");
  int rc = RunInChild([&script]() -> int {
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    return 127;
  });
  EXPECT_EQ(rc, 0) << "a descriptor survived exec: "
                   << absl::StrJoin(ours, " ");
}

}  // namespace
}  // namespace fdpass
