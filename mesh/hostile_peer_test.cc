// Attacks on a node by a hostile local peer, each from a separate process:
// a child forked before any node thread exists that joins through
// discovery with its own pid, links by the book (hello, a real sealed ring)
// and then misbehaves on command. Each test reproduces one attack of the
// security issue and checks that the node shrugs it off:
//   - doorbells jammed (flags cleared, buffers filled, "waiting" words set)
//     hang neither the receive thread nor a sender;
//   - a link that fails on the send side is retired like any other;
//   - silent connections do not stall link setup for others;
//   - refused link connections do not flood the log;
//   - a full or stopped peer does not delay a broadcast to the others.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/node.h"
#include "mesh/test_util.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"
#include "ringbuf/ring_layout.h"
#include "testing/fd_count.h"

namespace mesh {
namespace {

using testing_util::ReadLine;
using testing_util::ThreadCpu;
using testing_util::WriteLine;

constexpr char kEvil[] = "0evil";  // sorts first: it dials
constexpr uint64_t kEvilId = 77;

// Lines of /proc/self/maps that map a ring memfd.
int RingMappings() {
  std::ifstream maps("/proc/self/maps");
  int n = 0;
  for (std::string line; std::getline(maps, line);) {
    if (absl::StrContains(line, "memfd:shmesh-ring")) ++n;
  }
  return n;
}

// Runs `fn`; if it has not returned after `limit`, the node is hung:
// report and abort (a hung call can be neither cancelled nor joined).
void WithinOrAbort(absl::Duration limit, const std::string& what, const std::function<void()>& fn) {
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    for (absl::Time end = absl::Now() + limit; absl::Now() < end;) {
      if (done.load()) return;
      absl::SleepFor(absl::Milliseconds(10));
    }
    if (done.load()) return;
    std::fprintf(stderr, "HUNG: %s did not return within %s\n", what.c_str(),
                 absl::FormatDuration(limit).c_str());
    std::abort();
  });
  fn();
  done.store(true);
  watchdog.join();
}

// The hostile peer: a child process that speaks the link protocol by hand.
// Commands (one line each on its stdin pipe) and answers:
//   "link A B"        -> "LINKED" or "ERROR ..."  (handshake with a, whose
//                        id is A, as kEvil with id B)
//   "jam"             -> "JAMMED n"  clear O_NONBLOCK on every descriptor,
//                        fill every doorbell buffer it can, and keep the
//                        "waiting" words set in both rings (until "exit")
//   "write N"         -> "WROTE k"   N frames into its ring (a reads them)
//   "corrupt-closed"  -> "CORRUPTED" garbage in the closed word of a's ring
//   "beat on|off"     -> "BEAT"      bump a's heartbeat every 50 ms, or stop
//   "exit"            -> exits
class HostilePeer {
 public:
  explicit HostilePeer(const std::string& a_link) {
    int to[2], from[2];
    if (::pipe(to) != 0 || ::pipe(from) != 0) std::abort();
    pid_ = ::fork();
    if (pid_ < 0) std::abort();
    if (pid_ == 0) {
      ::close(to[1]);
      ::close(from[0]);
      _exit(Run(a_link, to[0], from[1]));
    }
    ::close(to[0]);
    ::close(from[1]);
    to_ = base::UniqueFd(to[1]);
    from_ = base::UniqueFd(from[0]);
  }
  ~HostilePeer() { Exit(); }

  pid_t pid() const { return pid_; }
  // Sends `command` and returns the answer ("TIMEOUT" after 10 s: the
  // child is stuck).
  std::string Ask(const std::string& command) {
    WriteLine(to_.get(), command);
    pollfd p = {from_.get(), POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) return "TIMEOUT";
    return ReadLine(from_.get());
  }
  void Exit() {
    if (pid_ <= 0) return;
    WriteLine(to_.get(), "exit");
    to_.reset();
    int status = 0;
    (void)::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  // The child's side. Uses only fdpass, ringbuf and protobuf (safe after
  // fork: no thread of the parent is needed).
  static int Run(const std::string& a_link, int in, int out) {
    std::optional<ringbuf::Ring> ring;           // ours: a consumes it
    base::UniqueFd sock;
    std::vector<base::UniqueFd> received;      // a's ring memfd, a's consumer end
    std::optional<ringbuf::SharedRegion> a_ring;  // a's ring, mapped raw
    std::atomic<bool> jam{false}, beat{false}, stop{false};
    std::thread keeper;
    auto header = [](ringbuf::SharedRegion& r) { return reinterpret_cast<ringbuf::RingHeader*>(r.data()); };
    for (;;) {
      const std::string line = ReadLine(in);
      if (line.empty() || line == "exit") break;
      if (absl::StartsWith(line, "link ")) {
        const std::vector<std::string> words = absl::StrSplit(line, ' ');
        uint64_t a_id = 0, my_id = 0;
        if (words.size() != 3 || !absl::SimpleAtoi(words[1], &a_id) || !absl::SimpleAtoi(words[2], &my_id)) {
          WriteLine(out, "ERROR usage");
          continue;
        }
        auto r = ringbuf::Ring::Create(4096);
        auto s = fdpass::ConnectSeqpacket(a_link, absl::Now() + absl::Seconds(5));
        if (!r.ok() || !s.ok()) {
          WriteLine(out, "ERROR setup");
          continue;
        }
        ring.emplace(std::move(*r));
        sock = std::move(*s);
        mesh::v1::LinkHello hello;
        hello.set_version(2);
        hello.set_name(kEvil);
        hello.set_id(my_id);
        hello.set_to_name("a");
        hello.set_to_id(a_id);
        hello.set_ring_capacity_bytes(4096);
        const int fds[2] = {ring->region_fd(), ring->consumer_doorbell_fd()};
        auto sent = fdpass::SendMessage(sock.get(), hello.SerializeAsString(), absl::MakeConstSpan(fds),
                                        absl::Now() + absl::Seconds(5));
        auto reply = fdpass::ReceiveMessage(sock.get(), absl::Now() + absl::Seconds(5));
        mesh::v1::LinkReply rep;
        if (!sent.ok() || !reply.ok() || !rep.ParseFromString(reply->bytes) || !rep.has_welcome() ||
            reply->fds.size() != 2) {
          WriteLine(out, absl::StrCat("ERROR handshake: ", rep.reject_reason(), " ",
                                      reply.ok() ? "" : reply.status().ToString()));
          continue;
        }
        received = std::move(reply->fds);
        auto mapped = ringbuf::SharedRegion::Map(base::UniqueFd(::dup(received[0].get())),
                                                 ringbuf::RingRegionSize(rep.welcome().ring_capacity_bytes()));
        if (!mapped.ok()) {
          WriteLine(out, "ERROR map");
          continue;
        }
        a_ring.emplace(std::move(*mapped));
        keeper = std::thread([&] {
          int ticks = 0;
          while (!stop.load()) {
            if (jam.load()) {
              // a clears these when it rings: set them again at once, so
              // that a rings on every publish.
              header(*a_ring)->consumer_waiting.store(1);
              auto* ours = reinterpret_cast<ringbuf::RingHeader*>(const_cast<uint8_t*>(ring->region().data()));
              ours->producer_waiting.store(1);
            }
            if (beat.load() && ++ticks % 50 == 0) {
              auto& hb = header(*a_ring)->consumer_heartbeat;
              hb.store(hb.load() + 1);
            }
            absl::SleepFor(absl::Milliseconds(1));
          }
        });
        WriteLine(out, "LINKED");
      } else if (line == "jam") {
        // Every descriptor we hold that a shares, or that leads to a:
        // blocking, and every buffer full.
        std::vector<int> fds = {ring->producer_doorbell_fd(), ring->consumer_doorbell_fd(), received[1].get()};
        uint64_t filled = 0;
        for (int fd : fds) {
          const int flags = ::fcntl(fd, F_GETFL);
          (void)::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
          const char byte = 0;
          while (::send(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1) ++filled;
          (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        }
        jam.store(true);
        WriteLine(out, absl::StrCat("JAMMED ", filled));
      } else if (absl::StartsWith(line, "write ")) {
        int n = 0;
        (void)absl::SimpleAtoi(line.substr(6), &n);
        int k = 0;
        for (; k < n; ++k) {
          if (!ring->producer().Write(mesh::kMessagePrefix, absl::StrCat("evil ", k), absl::InfinitePast()).ok()) break;
        }
        WriteLine(out, absl::StrCat("WROTE ", k));
      } else if (line == "corrupt-closed") {
        header(*a_ring)->closed.store(0xdeadbeef);
        WriteLine(out, "CORRUPTED");
      } else if (absl::StartsWith(line, "beat ")) {
        beat.store(line == "beat on");
        WriteLine(out, "BEAT");
      }
    }
    stop.store(true);
    if (keeper.joinable()) keeper.join();
    return 0;
  }

  pid_t pid_ = -1;
  base::UniqueFd to_, from_;
};

class HostilePeerTest : public ::testing::Test {
 protected:
  // Stops every node, newest first. After it no handler runs, so a test
  // whose handlers capture its own locals holds
  //   absl::Cleanup stop_nodes = [this] { StopNodes(); };
  // declared after those locals: the nodes stop before the locals go.
  void StopNodes() {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)->Stop();
  }
  void SetUp() override {
    char tmpl[] = "/tmp/mhp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    peers_.clear();
    nodes_.clear();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  mesh::v1::NodeConfig Config(const std::string& name, const std::vector<std::string>& seeds) {
    return testing_util::TestConfig(dir_, name, seeds);
  }
  Node* Add(const mesh::v1::NodeConfig& config) {
    auto node = Node::Create(config);
    EXPECT_TRUE(node.ok()) << node.status();
    nodes_.push_back(std::move(*node));
    return nodes_.back().get();
  }
  // Forks a hostile peer. Call before the first node starts (fork with
  // running gRPC threads is not safe for the child).
  HostilePeer* Fork() {
    peers_.push_back(std::make_unique<HostilePeer>(absl::StrCat(dir_, "/a.link")));
    return peers_.back().get();
  }

  // Announces `pid` to `a` as member `name` through discovery.
  void Announce(Node* a, const std::string& name, uint64_t id, pid_t pid) {
    absl::Status announced = testing_util::AnnounceMember(a->grpc_address(), dir_, name, id, pid);
    ASSERT_TRUE(announced.ok()) << announced;
  }

  // Announces `peer` as kEvil and has it link with `a`.
  void Link(Node* a, HostilePeer* peer, uint64_t id = kEvilId) {
    Announce(a, kEvil, id, peer->pid());
    ASSERT_EQ(peer->Ask(absl::StrCat("link ", a->id(), " ", id)), "LINKED");
    for (absl::Time end = absl::Now() + absl::Seconds(10); absl::Now() < end; absl::SleepFor(absl::Milliseconds(5))) {
      const auto peers = a->Peers();
      if (std::find(peers.begin(), peers.end(), kEvil) != peers.end()) return;
    }
    FAIL() << "a never reported the hostile peer up";
  }

  std::string dir_;
  std::vector<std::unique_ptr<HostilePeer>> peers_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// Attack 1. Doorbells that a peer shares with the node: it clears
// O_NONBLOCK on every descriptor it holds, fills every buffer it can and
// keeps the "waiting" words set, so that the node must ring. The node's
// receive thread (ringing our producer after draining what we wrote) and
// its senders (ringing us after writing) must never block: both used to
// hang forever in write() on a shared eventfd.
TEST_F(HostilePeerTest, JammedDoorbellsHangNeitherTheReceiverNorASender) {
  HostilePeer* evil = Fork();
  Node* a = Add(Config("a", {}));
  Node* b = Add(Config("b", {"a"}));
  absl::Mutex mu;
  std::vector<std::string> got;
  EXPECT_TRUE(a->SetMessageHandler([&](const MessageView& m) {
    absl::MutexLock lock(&mu);
    got.push_back(absl::StrCat(m.from, ":", m.payload));
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  ASSERT_NO_FATAL_FAILURE(Link(a, evil));
  const std::string jammed = evil->Ask("jam");
  ASSERT_TRUE(absl::StartsWith(jammed, "JAMMED ")) << jammed;
  std::printf("hostile peer: %s bytes queued into doorbells\n", jammed.c_str() + 7);

  // The receive thread drains what the peer writes, publishes head, finds
  // producer_waiting set and rings the jammed doorbell: it must go on
  // serving b.
  ASSERT_EQ(evil->Ask("write 40"), "WROTE 40");
  WithinOrAbort(absl::Seconds(10), "sends to a jammed peer", [&] {
    // Until a's ring to the peer is full (the peer never reads): every
    // publish rings the jammed doorbell (consumer_waiting is kept set).
    int sent = 0;
    for (; sent < 100000; ++sent) {
      absl::Status s = a->Send(kEvil, std::string(64, 'x'), absl::InfinitePast());
      if (!s.ok()) {
        EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
        break;
      }
    }
    EXPECT_GT(sent, 100);
    // And one that waits for room: it must give up at its deadline.
    const absl::Time start = absl::Now();
    absl::Status s = a->Send(kEvil, std::string(64, 'l'), absl::Now() + absl::Milliseconds(200));
    EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  });
  ASSERT_EQ(evil->Ask("write 40"), "WROTE 40");
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(b->Send("a", absl::StrCat("b ", i)).ok());
  bool all = false;
  for (absl::Time end = absl::Now() + absl::Seconds(10); !all && absl::Now() < end;
       absl::SleepFor(absl::Milliseconds(5))) {
    absl::MutexLock lock(&mu);
    all = std::count_if(got.begin(), got.end(), [](const std::string& m) { return absl::StartsWith(m, "b:"); }) ==
              200 &&
          std::count_if(got.begin(), got.end(),
                        [](const std::string& m) { return absl::StartsWith(m, "0evil:"); }) == 80;
  }
  EXPECT_TRUE(all) << "a's receive thread stopped serving (hung on a jammed doorbell?)";
  // Stop() too returns (it closes the rings and rings their doorbells).
  WithinOrAbort(absl::Seconds(10), "a->Stop()", [&] { a->Stop(); });
}

// Attack 2. The peer writes garbage into the closed word of the ring the
// node writes into, then hangs up. The send fails (DATA_LOSS) and the link
// must be retired like any other: peer-down, descriptors closed, rings
// unmapped, the name free, and no spinning receive thread. Done three
// times: nothing may accumulate.
TEST_F(HostilePeerTest, LinkThatFailsOnTheSendSideIsRetired) {
  std::vector<HostilePeer*> evil;
  for (int i = 0; i < 3; ++i) evil.push_back(Fork());
  Node* a = Add(Config("a", {}));
  std::atomic<int> downs{0};
  EXPECT_TRUE(a->SetPeerDownHandler([&](const PeerInfo& p) {
    if (p.name == kEvil) downs.fetch_add(1);
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
  ASSERT_TRUE(a->Start().ok());
  absl::SleepFor(absl::Milliseconds(200));  // let the node settle (spare ring, threads)
  const size_t fds_before = shmesh::testing::CountOpenFds();
  const int maps_before = RingMappings();
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    ASSERT_NO_FATAL_FAILURE(Link(a, evil[round], kEvilId + round));
    ASSERT_EQ(evil[round]->Ask("corrupt-closed"), "CORRUPTED");
    absl::Status s = a->Send(kEvil, "hello");
    EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
    evil[round]->Exit();  // hangs up
    for (absl::Time end = absl::Now() + absl::Seconds(5); downs.load() <= round && absl::Now() < end;) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    EXPECT_EQ(downs.load(), round + 1) << "no peer-down for a link that failed on the send side";
    EXPECT_TRUE(a->Peers().empty());
    // Not spinning on the dead socket.
    const absl::Duration cpu_before = ThreadCpu("mesh-recv");
    absl::SleepFor(absl::Milliseconds(500));
    const absl::Duration cpu = ThreadCpu("mesh-recv") - cpu_before;
    EXPECT_LT(cpu, absl::Milliseconds(100)) << "the receive thread spins after the link failed";
    // Descriptors and mappings are back where they were (the spare ring
    // is replaced after each handshake, so it counts in both).
    size_t fds = 0;
    int maps = 0;
    for (absl::Time end = absl::Now() + absl::Seconds(5); absl::Now() < end; absl::SleepFor(absl::Milliseconds(10))) {
      fds = shmesh::testing::CountOpenFds();
      maps = RingMappings();
      if (fds <= fds_before && maps == maps_before) break;
    }
    // (+1: gRPC may hold a socket of its own for a moment.)
    EXPECT_LE(fds, fds_before + 1) << "the failed link's descriptors were not closed";
    EXPECT_EQ(maps, maps_before) << "the failed link's rings are still mapped";
  }
  // The name is free again: a new process may join as kEvil.
  Announce(a, kEvil, kEvilId + 10, ::getpid());
}

// Attack 3. Connections that never send a hello must not stall link
// setup for anyone else: 150 from a process that never joined (refused at
// accept), then 150 from a member's process (4 held at most, each until
// its own deadline). Meanwhile b joins and links at once.
TEST_F(HostilePeerTest, SilentConnectionsDoNotStallLinkSetup) {
  // Two children: a stranger and a member, each opening silent
  // connections on command.
  auto silent = [&](int* to_fd, int* from_fd) {
    int to[2], from[2];
    if (::pipe(to) != 0 || ::pipe(from) != 0) std::abort();
    const std::string a_link = absl::StrCat(dir_, "/a.link");
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(to[1]);
      ::close(from[0]);
      (void)ReadLine(to[0]);
      std::vector<base::UniqueFd> conns;
      for (int i = 0; i < 150; ++i) {
        auto c = fdpass::ConnectSeqpacket(a_link, absl::Now() + absl::Milliseconds(100));
        if (c.ok()) conns.push_back(std::move(*c));
      }
      WriteLine(from[1], absl::StrCat("OPEN ", conns.size()));
      (void)ReadLine(to[0]);  // hold them until told (or EOF)
      _exit(0);
    }
    ::close(to[0]);
    ::close(from[1]);
    *to_fd = to[1];
    *from_fd = from[0];
    return pid;
  };
  int stranger_to, stranger_from, member_to, member_from;
  const pid_t stranger = silent(&stranger_to, &stranger_from);
  const pid_t member = silent(&member_to, &member_from);
  base::UniqueFd st(stranger_to), sf(stranger_from), mt(member_to), mf(member_from);

  Node* a = Add(Config("a", {}));
  ASSERT_TRUE(a->Start().ok());
  Announce(a, "0member", 99, member);
  WriteLine(st.get(), "go");
  WriteLine(mt.get(), "go");
  const std::string s_open = ReadLine(sf.get());
  const std::string m_open = ReadLine(mf.get());
  std::printf("silent connections: stranger %s, member %s\n", s_open.c_str(), m_open.c_str());
  EXPECT_EQ(s_open, "OPEN 150");

  const absl::Time start = absl::Now();
  Node* b = Add(Config("b", {"a"}));
  ASSERT_TRUE(b->Start().ok());
  absl::Status linked = a->WaitForPeers(1, absl::Now() + absl::Seconds(10));
  const absl::Duration took = absl::Now() - start;
  std::printf("b linked with a %s after it started, past 300 silent connections\n",
              absl::FormatDuration(took).c_str());
  ASSERT_TRUE(linked.ok()) << linked;
  // Without waiting behind the silent ones: a handshake timeout is 2 s,
  // and 300 of them in a row would take 10 minutes.
  EXPECT_LT(took, absl::Seconds(1.5));
  WriteLine(st.get(), "done");
  WriteLine(mt.get(), "done");
  for (pid_t p : {stranger, member}) {
    int status = 0;
    (void)::waitpid(p, &status, 0);
  }
}

// Attack 4. A connect-and-hang-up loop on the link socket: every refusal
// used to be one WARNING line (19,636 in a second). Now at most one line a
// second, counting those left out.
TEST_F(HostilePeerTest, RefusedLinkConnectionsDoNotFloodTheLog) {
  // The node's log goes to stderr: capture it in a file for this test.
  char path[] = "/tmp/mhp-log-XXXXXX";
  const int log_fd = ::mkstemp(path);
  ASSERT_GE(log_fd, 0);
  std::fflush(stderr);
  const int saved = ::dup(2);
  ASSERT_EQ(::dup2(log_fd, 2), 2);
  Node* a = Add(Config("a", {}));
  ASSERT_TRUE(a->Start().ok());
  int connects = 0;
  for (absl::Time end = absl::Now() + absl::Seconds(1.2); absl::Now() < end; ++connects) {
    auto c = fdpass::ConnectSeqpacket(absl::StrCat(dir_, "/a.link"), absl::Now() + absl::Milliseconds(100));
    if (c.ok()) c->reset();
  }
  absl::SleepFor(absl::Milliseconds(1100));  // the link thread catches up; one more line may come
  // One more refusal after the interval: its line counts the rest.
  { auto c = fdpass::ConnectSeqpacket(absl::StrCat(dir_, "/a.link"), absl::Now() + absl::Milliseconds(100)); }
  absl::SleepFor(absl::Milliseconds(200));
  a->Stop();
  std::fflush(stderr);
  ASSERT_EQ(::dup2(saved, 2), 2);
  ::close(saved);
  std::ifstream in(path);
  int refusals = 0;
  bool counted = false;
  for (std::string line; std::getline(in, line);) {
    if (!absl::StrContains(line, "refused a link connection")) continue;
    ++refusals;
    if (absl::StrContains(line, "more refused since the last such line")) counted = true;
  }
  ::close(log_fd);
  ::unlink(path);
  std::printf("%d connect-and-hang-ups; %d refusal lines\n", connects, refusals);
  EXPECT_GT(connects, 100) << "too few connections to prove anything";
  EXPECT_GE(refusals, 1);
  EXPECT_LE(refusals, 4);
  EXPECT_TRUE(counted) << "no line counts the refusals left out";
}

// Attack 5. A peer that never reads fills its ring; broadcasts must still
// reach every other peer at once, name the full one, and not wait for it
// at all once it is reported unresponsive.
TEST_F(HostilePeerTest, FullOrStoppedPeerDoesNotDelayBroadcastToOthers) {
  HostilePeer* evil = Fork();
  mesh::v1::NodeConfig ca = Config("a", {});
  ca.set_unresponsive_after_ms(600);
  Node* a = Add(ca);
  Node* b = Add(Config("b", {"a"}));
  absl::Mutex mu;
  absl::Time b_got = absl::InfiniteFuture();
  std::string b_last;
  EXPECT_TRUE(b->SetMessageHandler([&](const MessageView& m) {
    absl::MutexLock lock(&mu);
    b_got = absl::Now();
    b_last = std::string(m.payload);
  }).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  ASSERT_NO_FATAL_FAILURE(Link(a, evil));
  ASSERT_EQ(evil->Ask("beat on"), "BEAT");  // alive, but never reads
  // Fill the peer's ring.
  int sent = 0;
  while (a->Send(kEvil, std::string(1000, 'f'), absl::InfinitePast()).ok()) ++sent;
  ASSERT_GT(sent, 10);

  // 1. Full but responsive: waited for until the deadline, while b gets
  //    its copy at once.
  auto broadcast = [&](const std::string& text, absl::Duration deadline, absl::Duration* b_after,
                       absl::Duration* call) {
    const absl::Time start = absl::Now();
    auto r = a->Broadcast(text + std::string(1000, '.'), start + deadline);
    *call = absl::Now() - start;
    EXPECT_TRUE(r.ok()) << r.status();
    for (absl::Time end = absl::Now() + absl::Seconds(5); absl::Now() < end; absl::SleepFor(absl::Milliseconds(1))) {
      absl::MutexLock lock(&mu);
      if (absl::StartsWith(b_last, text)) break;
    }
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(absl::StartsWith(b_last, text)) << b_last;
    *b_after = b_got - start;
    return r.ok() ? *r : BroadcastResult();
  };
  absl::Duration b_after, call;
  BroadcastResult r = broadcast("one", absl::Milliseconds(800), &b_after, &call);
  std::printf("full peer: b got the broadcast after %s; the call took %s\n", absl::FormatDuration(b_after).c_str(),
              absl::FormatDuration(call).c_str());
  EXPECT_LT(b_after, absl::Milliseconds(200)) << "b waited for the full peer";
  EXPECT_GE(call, absl::Milliseconds(700)) << "the full peer was not waited for until the deadline";
  EXPECT_EQ(r.delivered, std::vector<std::string>{"b"});
  ASSERT_EQ(r.not_reached.size(), 1u);
  EXPECT_EQ(r.not_reached[0].first, kEvil);
  EXPECT_EQ(r.not_reached[0].second.code(), absl::StatusCode::kDeadlineExceeded) << r.not_reached[0].second;

  // 2. Stopped (no heartbeat): reported unresponsive, then not waited for.
  ASSERT_EQ(evil->Ask("beat off"), "BEAT");
  for (absl::Time end = absl::Now() + absl::Seconds(5); a->UnresponsivePeers().empty() && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_EQ(a->UnresponsivePeers(), std::vector<std::string>{kEvil});
  r = broadcast("two", absl::Seconds(5), &b_after, &call);
  std::printf("stopped peer: b got the broadcast after %s; the call took %s\n", absl::FormatDuration(b_after).c_str(),
              absl::FormatDuration(call).c_str());
  EXPECT_LT(call, absl::Milliseconds(500)) << "the broadcast waited for an unresponsive peer";
  EXPECT_EQ(r.delivered, std::vector<std::string>{"b"});
  ASSERT_EQ(r.not_reached.size(), 1u);
  EXPECT_EQ(r.not_reached[0].second.code(), absl::StatusCode::kResourceExhausted) << r.not_reached[0].second;
  EXPECT_TRUE(absl::StrContains(r.not_reached[0].second.message(), "unresponsive")) << r.not_reached[0].second;
}

}  // namespace
}  // namespace mesh
