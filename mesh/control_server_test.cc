// The control plane under stress, through real nodes in this process, real
// gRPC servers on real Unix sockets, and clients in child processes
// (testing/control_client) that may run as another uid:
//   - SO_PEERCRED: a client of a disallowed uid is refused and logged
//     (rate-limited); allowed clients keep being served;
//   - malformed, oversized and semantically bad requests get gRPC errors
//     and the node keeps answering;
//   - the data plane keeps flowing while control servers are restarted and
//     flooded with calls;
//   - descriptors: refused and accepted connections leave none behind;
//   - start failures leave nothing behind and never remove a live node's
//     sockets; restarts on TCP keep the port.
// CI runs as root: the refused client then runs as uid 65534 against a node
// that allows only root. Not as root, the node is configured to refuse our
// own uid instead, and allowed clients are checked against a second node.
#include <arpa/inet.h>
#include <fcntl.h>
#include <signal.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/node.h"
#include "mesh/test_util.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "testing/fd_count.h"

namespace mesh {
namespace {

using ::testing::HasSubstr;

constexpr char kRefusalLine[] = "refused a gRPC connection on ";

// ------------------------------------------------------------------ helpers

// Redirects this process's stderr (where nodes log) into a file while it
// lives, then restores it and replays what was captured, so the test log
// keeps it.
class StderrCapture {
 public:
  StderrCapture() {
    path_ = absl::StrCat(getenv("TEST_TMPDIR") ? getenv("TEST_TMPDIR") : "/tmp", "/stderr-", ::getpid(), "-",
                         counter_++);
    std::fflush(stderr);
    saved_ = base::UniqueFd(::fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3));
    base::UniqueFd file(::open(path_.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_APPEND | O_CLOEXEC, 0600));
    if (!saved_.valid() || !file.valid() || ::dup2(file.get(), STDERR_FILENO) < 0) std::abort();
  }
  ~StderrCapture() {
    std::fflush(stderr);
    ::dup2(saved_.get(), STDERR_FILENO);
    std::string text = Contents();
    (void)!::write(STDERR_FILENO, text.data(), text.size());
    ::unlink(path_.c_str());
  }
  const std::string& path() const { return path_; }
  std::string Contents() const {
    std::string out;
    FILE* f = std::fopen(path_.c_str(), "r");
    if (f == nullptr) return out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    std::fclose(f);
    return out;
  }

 private:
  static inline int counter_ = 0;
  std::string path_;
  base::UniqueFd saved_;
};

std::vector<std::string> LinesWith(const std::string& text, absl::string_view needle) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StrContains(line, needle)) out.emplace_back(line);
  }
  return out;
}

// A running testing/control_client (see its header), started with `args`,
// with SIGUSR1 blocked (for its topology-on-sigusr1 mode).
class Helper {
 public:
  explicit Helper(const std::vector<std::string>& args) {
    const std::string binary =
        absl::StrCat(getenv("TEST_SRCDIR"), "/", getenv("TEST_WORKSPACE"), "/testing/control_client");
    std::vector<std::string> argv_storage = {binary};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    int out[2];
    if (::pipe2(out, O_CLOEXEC) != 0) std::abort();
    // Blocked in this thread across fork, so the child is born with it
    // blocked: a SIGUSR1 sent at any time after fork stays pending.
    sigset_t usr1, old_mask;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &usr1, &old_mask);
    pid_ = ::fork();
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec: the parent runs
      // gRPC threads.
      ::dup2(out[1], STDOUT_FILENO);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
    ::close(out[1]);
    out_ = base::UniqueFd(out[0]);
  }
  pid_t pid() const { return pid_; }
  // Reads its output to the end and reaps it.
  std::string Wait(int* exit_code = nullptr) {
    std::string text;
    char buf[512];
    ssize_t n;
    while ((n = ::read(out_.get(), buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
    out_.reset();
    int status = 0;
    ::waitpid(pid_, &status, 0);
    if (exit_code != nullptr) *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return text;
  }

 private:
  pid_t pid_ = -1;
  base::UniqueFd out_;
};

struct HelperResult {
  int exit_code = -1;
  pid_t pid = 0;
  std::string out;
};

// Runs testing/control_client with `args` to completion.
HelperResult RunHelper(const std::vector<std::string>& args) {
  Helper helper(args);
  HelperResult r;
  r.pid = helper.pid();
  r.out = helper.Wait(&r.exit_code);
  return r;
}

std::string UidArg(uid_t uid) { return uid == ::getuid() ? "-1" : absl::StrCat(uid); }

std::unique_ptr<mesh::v1::Topology::Stub> TopologyStub(const std::string& target) {
  return mesh::v1::Topology::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
}

// GetTopology(local_only) on `target`, waiting up to 10 s for the server
// to be there.
grpc::Status GetLocalTopology(const std::string& target, mesh::v1::TopologySnapshot* snap = nullptr) {
  auto stub = TopologyStub(target);
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  mesh::v1::GetTopologyRequest req;
  req.set_local_only(true);
  mesh::v1::TopologySnapshot ignored;
  return stub->GetTopology(&ctx, req, snap != nullptr ? snap : &ignored);
}

// Polls CountOpenFds until it has not changed for a while (gRPC closes
// connections asynchronously), at most 10 s.
size_t SettledFdCount() {
  size_t last = shmesh::testing::CountOpenFds();
  int same = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (same < 5 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    size_t now = shmesh::testing::CountOpenFds();
    same = now == last ? same + 1 : 0;
    last = now;
  }
  return last;
}

// Waits up to 10 s for CountOpenFds to come down to `want`.
size_t FdCountReturnsTo(size_t want) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  size_t now = shmesh::testing::CountOpenFds();
  while (now != want && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    now = shmesh::testing::CountOpenFds();
  }
  return now;
}

// One raw request (arbitrary bytes) to `method`, unary or as a stream (the
// wire format is the same; a server-streaming method reads one message).
// Returns the call's status; 5 s deadline.
grpc::Status RawCall(grpc::GenericStub* stub, const std::string& method, const std::string& bytes, bool streaming) {
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  absl::Notification done;
  grpc::Status status;
  if (!streaming) {
    stub->UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
      status = std::move(s);
      done.Notify();
    });
    done.WaitForNotification();
    return status;
  }
  class Reactor : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
   public:
    Reactor(grpc::Status* status, absl::Notification* done) : status_(status), done_(done) {}
    void OnReadDone(bool ok) override {
      if (ok) StartRead(&response_);
    }
    void OnDone(const grpc::Status& s) override {
      *status_ = s;
      done_->Notify();
    }
    grpc::ByteBuffer response_;

   private:
    grpc::Status* status_;
    absl::Notification* done_;
  } reactor(&status, &done);
  stub->PrepareBidiStreamingCall(&ctx, method, grpc::StubOptions(), &reactor);
  reactor.StartWriteLast(&request, grpc::WriteOptions());
  reactor.StartRead(&reactor.response_);
  reactor.StartCall();
  done.WaitForNotification();
  return status;
}

class ControlServerTest : public ::testing::Test {
 protected:
  // Stops every node, newest first. After it no handler runs, so a test
  // whose handlers capture its own locals holds
  //   absl::Cleanup stop_nodes = [this] { StopNodes(); };
  // declared after those locals: the nodes stop before the locals go.
  void StopNodes() {
    for (auto it = nodes_.rbegin(); it != nodes_.rend(); ++it) (*it)->Stop();
  }
  void SetUp() override {
    char tmpl[] = "/tmp/mcs-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    nodes_.clear();
    std::error_code ec;
    for (const std::string& own : own_files_) std::filesystem::remove(own, ec);
    // Stop() removes every socket: the directory must be empty.
    EXPECT_TRUE(std::filesystem::is_empty(dir_, ec)) << dir_;
    std::filesystem::remove_all(dir_, ec);
  }

  mesh::v1::NodeConfig Config(const std::string& name, const std::vector<std::string>& seeds) {
    return testing_util::TestConfig(dir_, name, seeds);
  }

  Node* Add(const mesh::v1::NodeConfig& config) {
    auto node = Node::Create(config);
    EXPECT_TRUE(node.ok()) << node.status();
    if (!node.ok()) std::abort();
    nodes_.push_back(std::move(*node));
    return nodes_.back().get();
  }
  Node* Add(const std::string& name, const std::vector<std::string>& seeds) { return Add(Config(name, seeds)); }

  // A node that refuses gRPC clients of RefusedUid(): as root, the default
  // (only root allowed); otherwise one allowing only another uid.
  Node* AddGuarded(const std::string& name) {
    mesh::v1::NodeConfig c = Config(name, {});
    if (::geteuid() != 0) c.add_allowed_peer_uids(::getuid() + 1);
    return Add(c);
  }
  static uid_t RefusedUid() { return ::geteuid() == 0 ? 65534 : ::getuid(); }

  // Lets other uids reach `node`'s gRPC socket (the run directory is 0700
  // and the socket 0600): only the SO_PEERCRED check stands in their way.
  void OpenToOtherUsers(Node* node) {
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    ASSERT_EQ(::chmod(SocketPath(node).c_str(), 0666), 0);
  }
  static std::string SocketPath(Node* node) { return node->grpc_address().substr(5); }

  std::string dir_;
  std::vector<std::string> own_files_;  // test-made files in dir_
  std::vector<std::unique_ptr<Node>> nodes_;
};

// ------------------------------------------------------------ SO_PEERCRED

TEST_F(ControlServerTest, SocketIsPrivateByDefault) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  struct stat st;
  ASSERT_EQ(::lstat(SocketPath(a).c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(ControlServerTest, DisallowedUidIsRefusedAndLoggedWhileAllowedClientsAreServed) {
  StderrCapture log;
  Node* guarded = AddGuarded("a");
  ASSERT_TRUE(guarded->Start().ok());
  OpenToOtherUsers(guarded);
  // An allowed client: the guarded node itself as root, else a second node.
  Node* open = guarded;
  if (::geteuid() != 0) {
    open = Add("b", {});
    ASSERT_TRUE(open->Start().ok());
  }
  ASSERT_TRUE(GetLocalTopology(open->grpc_address()).ok());

  const uid_t refused = RefusedUid();
  HelperResult r = RunHelper({UidArg(refused), "topology", guarded->grpc_address()});
  ASSERT_EQ(r.exit_code, 0) << "could not run as uid " << refused << ": " << r.out;
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("uid=", refused, " code=UNAVAILABLE"))) << r.out;

  // The node logged it, naming pid, uid and the fix.
  std::vector<std::string> lines = LinesWith(log.Contents(), kRefusalLine);
  ASSERT_FALSE(lines.empty()) << log.Contents();
  EXPECT_THAT(lines[0], HasSubstr(absl::StrCat("from pid ", r.pid, ", uid ", refused)));
  EXPECT_THAT(lines[0], HasSubstr(absl::StrCat("add uid ", refused, " to allowed_peer_uids")));
  EXPECT_THAT(lines[0], HasSubstr("WARNING"));

  // Allowed clients are still served, in another process and in this one.
  HelperResult ok = RunHelper({"-1", "topology", open->grpc_address()});
  EXPECT_THAT(ok.out, HasSubstr(absl::StrCat("uid=", ::getuid(), " code=OK"))) << ok.out;
  EXPECT_THAT(ok.out, HasSubstr(absl::StrCat("reporter=", open->name()))) << ok.out;
  EXPECT_TRUE(GetLocalTopology(open->grpc_address()).ok());
  // The refused uid is refused at the socket, before any byte of HTTP/2.
  HelperResult raw = RunHelper({UidArg(refused), "raw", SocketPath(guarded), "3"});
  EXPECT_THAT(raw.out, HasSubstr("answered=0 closed=3 failed=0")) << raw.out;
}

TEST_F(ControlServerTest, RefusalWarningsAreRateLimitedAndCountTheRest) {
  StderrCapture log;
  Node* a = AddGuarded("a");
  ASSERT_TRUE(a->Start().ok());
  OpenToOtherUsers(a);
  const std::string uid = UidArg(RefusedUid());
  const absl::Time start = absl::Now();
  HelperResult burst = RunHelper({uid, "raw", SocketPath(a), "50"});
  EXPECT_THAT(burst.out, HasSubstr("answered=0 closed=50 failed=0")) << burst.out;
  // Past the 1 s window: the next refusal is logged, with the count of the
  // ones left out since the last line.
  absl::SleepFor(absl::Milliseconds(1100));
  HelperResult last = RunHelper({uid, "raw", SocketPath(a), "1"});
  EXPECT_THAT(last.out, HasSubstr("closed=1")) << last.out;
  const absl::Duration elapsed = absl::Now() - start;

  std::vector<std::string> lines = LinesWith(log.Contents(), kRefusalLine);
  // At most one line per second (plus the first).
  EXPECT_LE(lines.size(), static_cast<size_t>(absl::ToInt64Seconds(elapsed)) + 2) << log.Contents();
  // Every refusal is accounted for: each line is one, plus the ones it says
  // were left out before it.
  int64_t accounted = 0;
  for (const std::string& line : lines) {
    accounted += 1;
    size_t at = line.find(" (");
    int64_t more = 0;
    if (at != std::string::npos && absl::StrContains(line, "more refused since the last such line")) {
      std::string count = line.substr(at + 2, line.find(' ', at + 2) - (at + 2));
      ASSERT_TRUE(absl::SimpleAtoi(count, &more)) << line;
    }
    accounted += more;
  }
  EXPECT_EQ(accounted, 51) << log.Contents();
}

// ------------------------------------------------------- malformed requests

TEST_F(ControlServerTest, MalformedAndOversizedRequestsGetErrorsAndTheNodeKeepsServing) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  grpc::GenericStub stub(grpc::CreateChannel(a->grpc_address(), grpc::InsecureChannelCredentials()));
  struct Method {
    const char* name;
    bool streaming;
  };
  const Method methods[] = {
      {"/mesh.v1.Discovery/Join", false},         {"/mesh.v1.Discovery/Leave", false},
      {"/mesh.v1.Discovery/WatchMembers", true},  {"/mesh.v1.Topology/GetTopology", false},
      {"/mesh.v1.Topology/WatchTopology", true},  {"/mesh.v1.Messaging/Send", false},
  };
  // Bytes that are not a valid encoding of any message.
  std::vector<std::pair<std::string, std::string>> malformed = {
      {"truncated varint", std::string("\x08", 1)},
      {"truncated length-delimited field", std::string("\x0a\x05" "ab", 4)},
      {"field number 0", std::string("\x00\x01", 2)},
      {"wire type 7", std::string("\x0f\x01", 2)},
      {"unmatched end-group", std::string("\x0c", 1)},
      {"varint of 11 bytes", std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12)},
  };
  std::mt19937 rng(20240611);
  for (int i = 0; i < 20; ++i) {
    std::string bytes(1 + rng() % 200, '\0');
    for (char& c : bytes) c = static_cast<char>(rng());
    bytes[0] = '\0';  // field number 0: invalid whatever follows
    malformed.emplace_back(absl::StrCat("random bytes #", i), bytes);
  }
  for (const Method& m : methods) {
    for (const auto& [what, bytes] : malformed) {
      grpc::Status s = RawCall(&stub, m.name, bytes, m.streaming);
      EXPECT_FALSE(s.ok()) << m.name << " accepted " << what;
      // Rejected, not left hanging until the deadline.
      EXPECT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << m.name << " " << what;
    }
    // Over ControlServer's 4 MiB request limit.
    grpc::Status s = RawCall(&stub, m.name, std::string((4 << 20) + 1024, 'x'), m.streaming);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << m.name << ": " << s.error_message();
  }
  // Invalid UTF-8 in a string field (proto3 checks it when parsing).
  const std::string bad_utf8 = std::string("\x0a\x02\xff\xfe", 4);
  for (const char* method : {"/mesh.v1.Discovery/Leave", "/mesh.v1.Messaging/Send"}) {
    grpc::Status s = RawCall(&stub, method, bad_utf8, false);
    EXPECT_FALSE(s.ok()) << method;
    EXPECT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << method;
  }
  grpc::Status s = RawCall(&stub, "/mesh.v1.Discovery/Join", std::string("\x0a\x04\x0a\x02\xff\xfe", 6), false);
  EXPECT_FALSE(s.ok()) << "Join with a member name of invalid UTF-8";
  // A known field with the wrong wire type is kept as an unknown field by
  // protobuf, so the request parses without it: the services' checks must
  // then reject what is missing.
  for (const char* method : {"/mesh.v1.Discovery/Join", "/mesh.v1.Discovery/Leave", "/mesh.v1.Messaging/Send"}) {
    grpc::Status s = RawCall(&stub, method, std::string("\x08\x01", 2), false);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method << ": " << s.error_message();
  }
  // Send moved from Topology to Messaging: the old name is not served.
  {
    grpc::Status s = RawCall(&stub, "/mesh.v1.Topology/Send", "", false);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
  }

  // Still alive and answering.
  mesh::v1::TopologySnapshot snap;
  ASSERT_TRUE(GetLocalTopology(a->grpc_address(), &snap).ok());
  EXPECT_EQ(snap.reporter(), "a");
  EXPECT_EQ(snap.members_size(), 1);
}

mesh::v1::Member ValidMember(const std::string& name) {
  mesh::v1::Member m;
  m.set_name(name);
  m.set_id(7);
  m.set_pid(::getpid());
  m.set_uid(::getuid());
  m.set_grpc_address("unix:/nonexistent/x.grpc");
  m.set_link_socket("/nonexistent/x.link");
  return m;
}

TEST_F(ControlServerTest, SemanticallyBadRequestsSayWhatIsWrong) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  auto channel = grpc::CreateChannel(a->grpc_address(), grpc::InsecureChannelCredentials());
  auto discovery = mesh::v1::Discovery::NewStub(channel);
  auto topology = mesh::v1::Topology::NewStub(channel);
  auto messaging = mesh::v1::Messaging::NewStub(channel);
  auto join = [&](const mesh::v1::JoinRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    mesh::v1::JoinResponse resp;
    return discovery->Join(&ctx, req, &resp);
  };
  struct Case {
    std::string what;
    mesh::v1::JoinRequest req;
    grpc::StatusCode code;
    std::string says;
  };
  std::vector<Case> cases;
  {
    Case c{"no member", {}, grpc::StatusCode::INVALID_ARGUMENT, "JoinRequest.member is required"};
    cases.push_back(c);
  }
  {
    Case c{"bad name", {}, grpc::StatusCode::INVALID_ARGUMENT, "characters outside [A-Za-z0-9_.-]"};
    *c.req.mutable_member() = ValidMember("no spaces allowed");
    cases.push_back(c);
  }
  {
    Case c{"long name", {}, grpc::StatusCode::INVALID_ARGUMENT, "name must be 1 to 64 characters"};
    *c.req.mutable_member() = ValidMember(std::string(65, 'n'));
    cases.push_back(c);
  }
  {
    Case c{"id 0", {}, grpc::StatusCode::INVALID_ARGUMENT, "id is 0"};
    *c.req.mutable_member() = ValidMember("x");
    c.req.mutable_member()->set_id(0);
    cases.push_back(c);
  }
  {
    Case c{"relative link socket", {}, grpc::StatusCode::INVALID_ARGUMENT, "link_socket must be an absolute path"};
    *c.req.mutable_member() = ValidMember("x");
    c.req.mutable_member()->set_link_socket("x.link");
    cases.push_back(c);
  }
  {
    Case c{"huge address", {}, grpc::StatusCode::INVALID_ARGUMENT, "JoinRequest.member.grpc_address is 5000 bytes"};
    *c.req.mutable_member() = ValidMember("x");
    c.req.mutable_member()->set_grpc_address(std::string(5000, 'a'));
    cases.push_back(c);
  }
  {
    Case c{"huge address in known", {}, grpc::StatusCode::INVALID_ARGUMENT, "JoinRequest.known[1].grpc_address"};
    *c.req.mutable_member() = ValidMember("x");
    *c.req.add_known() = ValidMember("y");
    *c.req.add_known() = ValidMember("z");
    c.req.mutable_known(1)->set_grpc_address(std::string(400, 'a'));
    cases.push_back(c);
  }
  {
    Case c{"huge known list", {}, grpc::StatusCode::INVALID_ARGUMENT,
           "JoinRequest.known lists 5000 members, over the limit of 1024"};
    *c.req.mutable_member() = ValidMember("x");
    for (int i = 0; i < 5000; ++i) *c.req.add_known() = ValidMember(absl::StrCat("k", i));
    cases.push_back(c);
  }
  {
    Case c{"uid not allowed", {}, grpc::StatusCode::PERMISSION_DENIED, "which is not in allowed_peer_uids"};
    *c.req.mutable_member() = ValidMember("x");
    c.req.mutable_member()->set_uid(::getuid() + 4242);
    cases.push_back(c);
  }
  {
    Case c{"our own name", {}, grpc::StatusCode::ALREADY_EXISTS, "pick another name"};
    *c.req.mutable_member() = ValidMember("a");
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    grpc::Status s = join(c.req);
    EXPECT_EQ(s.error_code(), c.code) << c.what << ": " << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.says)) << c.what;
  }
  {
    grpc::ClientContext ctx;
    mesh::v1::LeaveRequest req;
    req.set_id(5);
    mesh::v1::LeaveResponse resp;
    grpc::Status s = discovery->Leave(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("name and (non-zero) id"));
  }
  auto send = [&](const mesh::v1::SendRequest& req) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    mesh::v1::SendResponse resp;
    return messaging->Send(&ctx, req, &resp);
  };
  {
    mesh::v1::SendRequest req;
    req.set_to("b");
    req.set_broadcast(true);
    grpc::Status s = send(req);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("exactly one of `to` and `broadcast`"));
    req.clear_broadcast();
    req.set_timeout_ms(4000000000u);
    s = send(req);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("over the limit"));
    req.set_timeout_ms(0);
    req.set_payload(std::string(1 << 20, 'p'));  // over max_message_bytes (16 KiB - 8)
    s = send(req);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("exceeds max_message_bytes"));
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    mesh::v1::WatchTopologyRequest req;
    req.set_min_interval_ms(4000000000u);
    auto reader = topology->WatchTopology(&ctx, req);
    mesh::v1::TopologySnapshot snap;
    EXPECT_FALSE(reader->Read(&snap));
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("min_interval_ms 4000000000 is over the limit of 60000"));
  }
  // None of the bad joins made a member.
  mesh::v1::TopologySnapshot snap;
  ASSERT_TRUE(GetLocalTopology(a->grpc_address(), &snap).ok());
  EXPECT_EQ(snap.members_size(), 1) << snap.DebugString();
}

TEST_F(ControlServerTest, WatchStreamsAreCapped) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  // 64 streams (the cap) over two connections (at most 128 calls each).
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < 2; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("test.distinct", i);  // two channels, two connections
    channels.push_back(grpc::CreateCustomChannel(a->grpc_address(), grpc::InsecureChannelCredentials(), args));
  }
  struct Watch {
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<mesh::v1::TopologySnapshot>> reader;
  };
  std::vector<std::unique_ptr<Watch>> watches;
  std::vector<std::unique_ptr<mesh::v1::Topology::Stub>> stubs;
  for (auto& ch : channels) stubs.push_back(mesh::v1::Topology::NewStub(ch));
  auto open_watch = [&](int i) {
    auto w = std::make_unique<Watch>();
    w->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    mesh::v1::WatchTopologyRequest req;
    req.set_local_only(true);
    w->reader = stubs[i % 2]->WatchTopology(&w->ctx, req);
    return w;
  };
  for (int i = 0; i < 64; ++i) {
    watches.push_back(open_watch(i));
    mesh::v1::TopologySnapshot snap;
    ASSERT_TRUE(watches.back()->reader->Read(&snap)) << "watch " << i;
  }
  {
    auto extra = open_watch(0);
    mesh::v1::TopologySnapshot snap;
    EXPECT_FALSE(extra->reader->Read(&snap));
    grpc::Status s = extra->reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("already serves 64 watch streams"));
  }
  // Unary calls still work meanwhile.
  EXPECT_TRUE(GetLocalTopology(a->grpc_address()).ok());
  // Closing one frees a slot (once the server has seen the cancellation).
  watches[0]->ctx.TryCancel();
  mesh::v1::TopologySnapshot ignored;
  while (watches[0]->reader->Read(&ignored)) {
  }
  (void)watches[0]->reader->Finish();
  bool reopened = false;
  for (int attempt = 0; attempt < 100 && !reopened; ++attempt) {
    auto again = open_watch(1);
    mesh::v1::TopologySnapshot snap;
    reopened = again->reader->Read(&snap);
    again->ctx.TryCancel();
    while (again->reader->Read(&snap)) {
    }
    (void)again->reader->Finish();
    if (!reopened) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(reopened) << "a slot never came free";
  for (auto& w : watches) w->ctx.TryCancel();
  for (size_t i = 1; i < watches.size(); ++i) {
    while (watches[i]->reader->Read(&ignored)) {
    }
    (void)watches[i]->reader->Finish();
  }
}

// ------------------------------------------------------ restart, overload

TEST_F(ControlServerTest, DataPlaneFlowsWhileControlServersRestartAndAreFlooded) {
  Node* a = Add("a", {});
  Node* b = Add("b", {"a"});
  absl::Mutex mu;
  int64_t next = 0;  // next sequence number expected from a
  int64_t order_errors = 0;
  int64_t from_c = 0;
  EXPECT_TRUE(b->SetMessageHandler([&](const MessageView& m) {
    std::string copy(m.payload);  // shared memory: copy before parsing
    absl::MutexLock lock(&mu);
    if (m.from == "c") {
      ++from_c;
      return;
    }
    int64_t seq = -1;
    if (m.from != "a" || !absl::SimpleAtoi(copy, &seq) || seq != next) ++order_errors;
    next = seq + 1;
  }).ok());
  std::atomic<int> peer_downs{0};
  auto count_down = [&](const PeerInfo&) {
    // relaxed: a counter, read after the nodes' threads are done with it
    // or only for a failure message.
    peer_downs.fetch_add(1, std::memory_order_relaxed);
  };
  EXPECT_TRUE(a->SetPeerDownHandler(count_down).ok());
  EXPECT_TRUE(b->SetPeerDownHandler(count_down).ok());
  // The handlers above capture this test's locals: stop first.
  absl::Cleanup stop_nodes = [this] { StopNodes(); };
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(b->Start().ok());
  ASSERT_TRUE(a->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
  ASSERT_TRUE(b->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());

  // a streams numbered messages to b until told to stop.
  absl::Notification stop_sending;
  int64_t sent = 0;
  absl::Status send_error;
  std::thread sender([&] {
    while (!stop_sending.HasBeenNotified()) {
      for (int k = 0; k < 64; ++k) {
        absl::Status s = a->Send("b", absl::StrCat(sent), absl::Now() + absl::Seconds(10));
        if (!s.ok()) {
          send_error = s;
          return;
        }
        ++sent;
      }
      absl::SleepFor(absl::Microseconds(200));
    }
  });

  // Clients flooding both control servers: whole-mesh and local topology,
  // and watch streams. Any status is fine for them (UNAVAILABLE during a
  // restart, RESOURCE_EXHAUSTED past a cap).
  absl::Notification stop_flooding;
  std::atomic<int> calls_ok{0};
  std::vector<std::thread> flooders;
  for (int t = 0; t < 12; ++t) {
    const std::string target = (t % 2 == 0 ? a : b)->grpc_address();
    flooders.emplace_back([&, t, target] {
      auto stub = TopologyStub(target);
      for (int i = 0; !stop_flooding.HasBeenNotified(); ++i) {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(3));
        bool ok = false;
        if ((i + t) % 3 != 2) {
          mesh::v1::GetTopologyRequest req;
          req.set_local_only((i + t) % 3 == 0);
          mesh::v1::TopologySnapshot snap;
          ok = stub->GetTopology(&ctx, req, &snap).ok();
        } else {
          mesh::v1::WatchTopologyRequest req;
          req.set_min_interval_ms(1);
          auto reader = stub->WatchTopology(&ctx, req);
          mesh::v1::TopologySnapshot snap;
          ok = reader->Read(&snap) && reader->Read(&snap);
          ctx.TryCancel();
          while (reader->Read(&snap)) {
          }
          (void)reader->Finish();
        }
        // relaxed: a counter, read after the flooders are joined.
        if (ok) calls_ok.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  for (int round = 0; round < 4; ++round) {
    absl::SleepFor(absl::Milliseconds(100));
    absl::Status s = a->RestartControlServer();
    ASSERT_TRUE(s.ok()) << s;
    absl::SleepFor(absl::Milliseconds(100));
    s = b->RestartControlServer();
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(a->Peers(), std::vector<std::string>{"b"}) << "round " << round;
    EXPECT_EQ(b->Peers(), std::vector<std::string>{"a"}) << "round " << round;
  }
  stop_flooding.Notify();
  for (auto& t : flooders) t.join();
  stop_sending.Notify();
  sender.join();
  ASSERT_TRUE(send_error.ok()) << "after " << sent << " messages: " << send_error;

  // Every message arrived, in order.
  {
    absl::MutexLock lock(&mu);
    auto all_in = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return next >= sent || order_errors > 0; };
    mu.AwaitWithTimeout(absl::Condition(&all_in), absl::Seconds(30));
    EXPECT_EQ(next, sent);
    EXPECT_EQ(order_errors, 0);
  }
  EXPECT_GT(sent, 0);
  EXPECT_EQ(peer_downs.load(std::memory_order_relaxed), 0) << "a link went down during the restarts";
  // relaxed: the flooders are joined.
  EXPECT_GT(calls_ok.load(std::memory_order_relaxed), 0);

  // Both servers answer again, and a third node joins through a and links
  // with both.
  mesh::v1::TopologySnapshot snap;
  ASSERT_TRUE(GetLocalTopology(a->grpc_address(), &snap).ok());
  EXPECT_EQ(snap.links_size(), 1);
  ASSERT_TRUE(GetLocalTopology(b->grpc_address(), &snap).ok());
  Node* c = Add("c", {"a"});
  ASSERT_TRUE(c->Start().ok());
  ASSERT_TRUE(c->WaitForPeers(2, absl::Now() + absl::Seconds(20)).ok()) << "c has " << c->Peers().size();
  ASSERT_TRUE(c->Send("b", "hello from c", absl::Now() + absl::Seconds(5)).ok());
  absl::MutexLock lock(&mu);
  auto got_c = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return from_c > 0; };
  EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&got_c), absl::Seconds(10)));
}

TEST_F(ControlServerTest, RestartEndsWatchStreamsAndServesAgain) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  auto stub = TopologyStub(a->grpc_address());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  mesh::v1::WatchTopologyRequest req;
  auto reader = stub->WatchTopology(&ctx, req);
  mesh::v1::TopologySnapshot snap;
  ASSERT_TRUE(reader->Read(&snap));
  absl::Status restarted = a->RestartControlServer();
  ASSERT_TRUE(restarted.ok()) << restarted;
  // The stream ended with the old server (well before its 60 s deadline).
  while (reader->Read(&snap)) {
  }
  grpc::Status ended = reader->Finish();
  EXPECT_NE(ended.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << ended.error_message();
  // The same address serves again, on the same channel and a new one.
  grpc::ClientContext again;
  again.set_wait_for_ready(true);
  again.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  mesh::v1::GetTopologyRequest get;
  get.set_local_only(true);
  EXPECT_TRUE(stub->GetTopology(&again, get, &snap).ok());
  EXPECT_TRUE(GetLocalTopology(a->grpc_address()).ok());
}

TEST_F(ControlServerTest, RestartNeedsARunningNode) {
  Node* a = Add("a", {});
  EXPECT_EQ(a->RestartControlServer().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(a->Start().ok());
  EXPECT_TRUE(a->RestartControlServer().ok());
  a->Stop();
  absl::Status s = a->RestartControlServer();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("is not running"));
}

TEST_F(ControlServerTest, TcpServerRestartsOnItsPort) {
  mesh::v1::NodeConfig config = Config("a", {});
  config.set_grpc_listen("127.0.0.1:0");
  Node* a = Add(config);
  ASSERT_TRUE(a->Start().ok());
  const std::string address = a->grpc_address();
  ASSERT_TRUE(absl::StartsWith(address, "127.0.0.1:")) << address;
  EXPECT_NE(address, "127.0.0.1:0");
  ASSERT_TRUE(GetLocalTopology(address).ok());
  for (int i = 0; i < 2; ++i) {
    absl::Status s = a->RestartControlServer();
    ASSERT_TRUE(s.ok()) << s;
    EXPECT_EQ(a->grpc_address(), address);
    EXPECT_TRUE(GetLocalTopology(address).ok());
  }
}

// -------------------------------------------------------------- descriptors

TEST_F(ControlServerTest, RefusedAndAcceptedConnectionsLeaveNoDescriptorsBehind) {
  Node* guarded = AddGuarded("a");
  ASSERT_TRUE(guarded->Start().ok());
  OpenToOtherUsers(guarded);
  Node* open = guarded;
  if (::geteuid() != 0) {
    open = Add("b", {});
    ASSERT_TRUE(open->Start().ok());
  }
  const std::string refused = UidArg(RefusedUid());
  // Warm up: gRPC makes some descriptors of its own on first use.
  RunHelper({"-1", "topology", open->grpc_address()});
  RunHelper({refused, "topology", guarded->grpc_address()});
  const size_t baseline = SettledFdCount();
  ASSERT_NE(baseline, SIZE_MAX);

  for (int i = 0; i < 5; ++i) {
    HelperResult ok = RunHelper({"-1", "topology", open->grpc_address()});
    EXPECT_THAT(ok.out, HasSubstr("code=OK")) << ok.out;
    HelperResult no = RunHelper({refused, "topology", guarded->grpc_address()});
    EXPECT_THAT(no.out, HasSubstr("code=UNAVAILABLE")) << no.out;
  }
  HelperResult raw_no = RunHelper({refused, "raw", SocketPath(guarded), "30"});
  EXPECT_THAT(raw_no.out, HasSubstr("answered=0 closed=30")) << raw_no.out;
  HelperResult raw_ok = RunHelper({"-1", "raw", SocketPath(open), "30"});
  EXPECT_THAT(raw_ok.out, HasSubstr("answered=30")) << raw_ok.out;
  // Connections held open while we look do count: the check can fail.
  {
    std::vector<base::UniqueFd> held;
    for (int i = 0; i < 3; ++i) {
      base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_un addr = {};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, SocketPath(open).c_str(), sizeof(addr.sun_path) - 1);
      ASSERT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      held.push_back(std::move(fd));
    }
    // Ours (3) plus the server's ends (3) once accepted.
    EXPECT_EQ(FdCountReturnsTo(baseline + 6), baseline + 6);
  }
  EXPECT_EQ(FdCountReturnsTo(baseline), baseline);

  // Restarts leave nothing behind either.
  ASSERT_TRUE(guarded->RestartControlServer().ok());
  ASSERT_TRUE(open->RestartControlServer().ok());
  EXPECT_TRUE(GetLocalTopology(open->grpc_address()).ok());
  HelperResult after = RunHelper({refused, "topology", guarded->grpc_address()});
  EXPECT_THAT(after.out, HasSubstr("code=UNAVAILABLE")) << after.out;
  EXPECT_EQ(FdCountReturnsTo(baseline), baseline);
}

TEST_F(ControlServerTest, OutOfDescriptorsBacksOffAndServesTheWaitingClientLater) {
  StderrCapture log;
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  ASSERT_TRUE(GetLocalTopology(a->grpc_address()).ok());  // gRPC warmed up
  // The client, started now (its pipe needs descriptors), connects when
  // told to.
  Helper client({"-1", "topology-on-sigusr1", a->grpc_address()});
  // gRPC closes the warm-up call's connection in the background: let that
  // happen first, so no descriptor number frees up under the limit later.
  ASSERT_NE(SettledFdCount(), SIZE_MAX);
  // Use up every descriptor number under a low RLIMIT_NOFILE, so the accept
  // thread's accept() fails with EMFILE.
  rlimit original;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &original), 0);
  rlimit low = original;
  low.rlim_cur = shmesh::testing::CountOpenFds() + 16;
  ASSERT_LT(low.rlim_cur, original.rlim_cur);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<base::UniqueFd> fillers;
  auto fill = [&fillers] {
    for (;;) {
      int fd = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0);
      if (fd < 0) break;
      fillers.emplace_back(fd);
    }
  };
  fill();
  // Nothing below may open a descriptor in this process until the limit is
  // restored: the client is a child process, and the warning is watched
  // through the log file's size (stat), not by reading it.
  const absl::Time signalled = absl::Now();
  ASSERT_EQ(::kill(client.pid(), SIGUSR1), 0);
  struct stat st = {};
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while ((::stat(log.path().c_str(), &st) != 0 || st.st_size == 0) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
    fill();  // in case gRPC closed something meanwhile
  }
  // Give it a few back-off rounds with the connection still waiting.
  absl::SleepFor(absl::Milliseconds(300));
  fillers.clear();
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &original), 0);
  // The waiting client is served once descriptors free up.
  std::string out = client.Wait();
  EXPECT_THAT(out, HasSubstr("code=OK")) << out;
  std::vector<std::string> lines = LinesWith(log.Contents(), "cannot accept gRPC connections on ");
  ASSERT_FALSE(lines.empty()) << log.Contents();
  EXPECT_THAT(lines[0], HasSubstr("retrying every 100ms"));
  // One line per second at most, however many failed accepts.
  EXPECT_LE(lines.size(), 2u + static_cast<size_t>(absl::ToInt64Seconds(absl::Now() - signalled)));
  EXPECT_TRUE(GetLocalTopology(a->grpc_address()).ok());
}

// ----------------------------------------------------------- start failures

TEST_F(ControlServerTest, FailedStartLeavesALiveNodesSocketsAlone) {
  Node* a = Add("a", {});
  ASSERT_TRUE(a->Start().ok());
  {
    auto dup = Node::Create(Config("a", {}));
    ASSERT_TRUE(dup.ok());
    absl::Status s = (*dup)->Start();
    EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
  }  // destroyed: Stop() must not remove a's files
  EXPECT_TRUE(std::filesystem::exists(SocketPath(a)));
  EXPECT_TRUE(std::filesystem::exists(absl::StrCat(dir_, "/a.link")));
  EXPECT_TRUE(GetLocalTopology(a->grpc_address()).ok());
  Node* b = Add("b", {"a"});
  ASSERT_TRUE(b->Start().ok());
  EXPECT_TRUE(b->WaitForPeers(1, absl::Now() + absl::Seconds(10)).ok());
}

TEST_F(ControlServerTest, ControlServerThatCannotListenCleansUp) {
  // A live listener of someone else's at the Unix path.
  const std::string held_path = absl::StrCat(dir_, "/held.sock");
  auto held = fdpass::ListenStream(held_path);
  ASSERT_TRUE(held.ok()) << held.status();
  own_files_.push_back(held_path);
  mesh::v1::NodeConfig config = Config("a", {});
  config.set_grpc_listen(absl::StrCat("unix:", held_path));
  {
    auto node = Node::Create(config);
    ASSERT_TRUE(node.ok());
    absl::Status s = (*node)->Start();
    EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("change grpc_listen"));
    EXPECT_FALSE(std::filesystem::exists(absl::StrCat(dir_, "/a.link"))) << "link socket left behind";
  }
  EXPECT_TRUE(std::filesystem::exists(held_path)) << "someone else's socket was removed";

  // A TCP port someone else holds.
  base::UniqueFd tcp(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(tcp.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(tcp.get(), 4), 0);
  ASSERT_EQ(::getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  config.set_grpc_listen(absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)));
  auto node = Node::Create(config);
  ASSERT_TRUE(node.ok());
  absl::Status s = (*node)->Start();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("change grpc_listen"));
  EXPECT_FALSE(std::filesystem::exists(absl::StrCat(dir_, "/a.link"))) << "link socket left behind";
}

TEST_F(ControlServerTest, StaleGrpcSocketFileIsReplaced) {
  const std::string path = absl::StrCat(dir_, "/a.grpc");
  {
    auto dead = fdpass::ListenStream(path);
    ASSERT_TRUE(dead.ok()) << dead.status();
  }  // closed: the file stays, as after a crash
  ASSERT_TRUE(std::filesystem::exists(path));
  Node* a = Add("a", {});
  absl::Status s = a->Start();
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(GetLocalTopology(a->grpc_address()).ok());
}

}  // namespace
}  // namespace mesh
