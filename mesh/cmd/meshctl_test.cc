// meshctl against a real gRPC server on a Unix socket: fake Topology and
// Messaging services that answer with a fixed snapshot (or delivery) and
// record what they were asked.
// meshctl runs as a real child process (fork + exec).
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/version.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "testing/subprocess.h"
#include "testing/temp_dir.h"

namespace mesh {
namespace cmd {
namespace {

using ::mesh::v1::TopologySnapshot;
using ::shmesh::testing::ProcessResult;
using ::shmesh::testing::RunfilePath;
using ::shmesh::testing::RunProcess;
using ::shmesh::testing::ShortTempDir;
using ::testing::HasSubstr;
using ::testing::Not;

TopologySnapshot ThreeNodes() {
  TopologySnapshot s;
  s.set_reporter("a");
  s.mutable_taken()->set_seconds(1795370581);
  const char* names[] = {"a", "b", "c"};
  for (int i = 0; i < 3; ++i) {
    mesh::v1::Member* m = s.add_members();
    m->set_name(names[i]);
    m->set_id(0x1111111111111111ull * (i + 1));
    m->set_pid(100 + i);
    m->set_state(mesh::v1::UP);
    m->set_grpc_address(absl::StrCat("unix:/tmp/x/", names[i], ".grpc"));
  }
  for (int i = 0; i < 3; ++i) {
    for (int j = i + 1; j < 3; ++j) {
      mesh::v1::Link* l = s.add_links();
      l->set_a(names[i]);
      l->set_b(names[j]);
      l->set_messages_a_to_b(42);
      l->set_confirmed_by_both(true);
    }
  }
  return s;
}

// Streams `count` snapshots (reporter w0, w1, ...), then idles until the
// client cancels.
class WatchReactor : public grpc::ServerWriteReactor<TopologySnapshot> {
 public:
  WatchReactor(TopologySnapshot snapshot, int count)
      : snapshot_(std::move(snapshot)), left_(count) {
    absl::MutexLock lock(&mu_);
    NextLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked();
      return;
    }
    NextLocked();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (!writing_) FinishLocked();
  }
  void OnDone() override { delete this; }

 private:
  void NextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (cancelled_) {
      FinishLocked();
      return;
    }
    if (left_ <= 0) return;
    snapshot_.set_reporter(absl::StrCat("w", sent_++));
    --left_;
    writing_ = true;
    StartWrite(&snapshot_);
  }
  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(grpc::Status::CANCELLED);
  }

  absl::Mutex mu_;
  TopologySnapshot snapshot_ ABSL_GUARDED_BY(mu_);
  int left_ ABSL_GUARDED_BY(mu_);
  int sent_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

// A unary call that never answers: it finishes only when cancelled (by the
// client's deadline).
class HangingReactor : public grpc::ServerUnaryReactor {
 public:
  void OnCancel() override { Finish(grpc::Status::CANCELLED); }
  void OnDone() override { delete this; }
};

class FakeTopology final : public mesh::v1::Topology::CallbackService {
 public:
  grpc::ServerUnaryReactor* GetTopology(
      grpc::CallbackServerContext* context,
      const mesh::v1::GetTopologyRequest* request,
      TopologySnapshot* response) override {
    {
      absl::MutexLock lock(&mu_);
      last_local_only_ = request->local_only();
      if (hang_) return new HangingReactor();
    }
    *response = ThreeNodes();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<TopologySnapshot>* WatchTopology(
      grpc::CallbackServerContext* context,
      const mesh::v1::WatchTopologyRequest* request) override {
    absl::MutexLock lock(&mu_);
    last_min_interval_ms_ = request->min_interval_ms();
    return new WatchReactor(ThreeNodes(), hang_ ? 0 : 5);
  }

  void set_hang(bool hang) {
    absl::MutexLock lock(&mu_);
    hang_ = hang;
  }
  bool last_local_only() {
    absl::MutexLock lock(&mu_);
    return last_local_only_;
  }
  uint32_t last_min_interval_ms() {
    absl::MutexLock lock(&mu_);
    return last_min_interval_ms_;
  }

 private:
  absl::Mutex mu_;
  bool hang_ ABSL_GUARDED_BY(mu_) = false;
  bool last_local_only_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t last_min_interval_ms_ ABSL_GUARDED_BY(mu_) = 0;
};

class FakeMessaging final : public mesh::v1::Messaging::CallbackService {
 public:
  grpc::ServerUnaryReactor* Send(grpc::CallbackServerContext* context,
                                 const mesh::v1::SendRequest* request,
                                 mesh::v1::SendResponse* response) override {
    {
      absl::MutexLock lock(&mu_);
      last_send_ = *request;
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    if (request->to() == "nobody") {
      reactor->Finish(
          grpc::Status(grpc::StatusCode::NOT_FOUND, "no link to nobody"));
      return reactor;
    }
    if (request->broadcast()) {
      response->add_delivered_to("b");
      response->add_delivered_to("c");
    } else {
      response->add_delivered_to(request->to());
    }
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  mesh::v1::SendRequest last_send() {
    absl::MutexLock lock(&mu_);
    return last_send_;
  }

 private:
  absl::Mutex mu_;
  mesh::v1::SendRequest last_send_ ABSL_GUARDED_BY(mu_);
};

class MeshctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    target_ = absl::StrCat("unix:", dir_.path(), "/node.grpc");
    grpc::ServerBuilder builder;
    builder.AddListeningPort(target_, grpc::InsecureServerCredentials());
    builder.RegisterService(&service_);
    builder.RegisterService(&messaging_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown();
  }

  ProcessResult Meshctl(std::vector<std::string> args) {
    args.insert(args.begin(), RunfilePath("mesh/cmd/meshctl"));
    return RunProcess(args);
  }
  ProcessResult MeshctlAtTarget(std::vector<std::string> args) {
    args.insert(args.begin(), absl::StrCat("--target=", target_));
    return Meshctl(std::move(args));
  }

  ShortTempDir dir_{"shmesh-cmd."};
  std::string target_;
  FakeTopology service_;
  FakeMessaging messaging_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(MeshctlTest, TopologyTable) {
  ProcessResult r = MeshctlAtTarget({"topology"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_THAT(r.out, HasSubstr("reporter a at 2026-11-22T18:03:01.000Z: 3 "
                               "members, 3 links"));
  for (const char* s : {"MEMBER", "2222222222222222", "unix:/tmp/x/c.grpc",
                        "a<->b", "a<->c", "b<->c"}) {
    EXPECT_THAT(r.out, HasSubstr(s));
  }
  EXPECT_FALSE(service_.last_local_only());
}

TEST_F(MeshctlTest, MembersAndLinksSections) {
  ProcessResult members = MeshctlAtTarget({"members"});
  ASSERT_EQ(members.exit_code, 0) << members.err;
  EXPECT_THAT(members.out, HasSubstr("unix:/tmp/x/b.grpc"));
  EXPECT_THAT(members.out, Not(HasSubstr("a<->b")));

  ProcessResult links = MeshctlAtTarget({"links", "--local_only"});
  ASSERT_EQ(links.exit_code, 0) << links.err;
  EXPECT_THAT(links.out, HasSubstr("a<->b"));
  EXPECT_THAT(links.out, Not(HasSubstr("unix:/tmp/x/b.grpc")));
  EXPECT_TRUE(service_.last_local_only());
}

TEST_F(MeshctlTest, TopologyJsonParsesBack) {
  // Flags may also follow the command, and --target can be a bare path.
  ProcessResult r = Meshctl({"topology", "--format", "json", "--target",
                             absl::StrCat(dir_.path(), "/node.grpc")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  TopologySnapshot back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(r.out, &back).ok())
      << r.out;
  EXPECT_TRUE(
      google::protobuf::util::MessageDifferencer::Equals(back, ThreeNodes()));
}

TEST_F(MeshctlTest, TopicsOfAMeshWithoutTopics) {
  ProcessResult r = MeshctlAtTarget({"topics"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("reporter a at 2026-11-22T18:03:01.000Z: 0 "
                               "topics, 0 subscriptions, 0 services\n"));
  EXPECT_THAT(r.out, HasSubstr("(no topics)"));
  EXPECT_THAT(r.out, Not(HasSubstr("MEMBER")));
  EXPECT_FALSE(service_.last_local_only());
  // The topology table shows no topics part when there are none.
  r = MeshctlAtTarget({"topology"});
  EXPECT_THAT(r.out, Not(HasSubstr("(no topics)")));
}

TEST_F(MeshctlTest, TopologyDot) {
  ProcessResult r = MeshctlAtTarget({"topology", "--format=dot"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "graph shmesh {")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("\"a\" -- \"b\""));
  EXPECT_THAT(r.out, HasSubstr("\"b\" -- \"c\""));
}

TEST_F(MeshctlTest, WatchStopsAfterCount) {
  ProcessResult r = MeshctlAtTarget(
      {"watch", "--count=3", "--format=json", "--min_interval_ms=25"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines =
      absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r.out;
  for (int i = 0; i < 3; ++i) {
    TopologySnapshot s;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[i], &s).ok());
    EXPECT_EQ(s.reporter(), absl::StrCat("w", i));
  }
  EXPECT_EQ(service_.last_min_interval_ms(), 25u);
}

TEST_F(MeshctlTest, WatchTableSeparatesSnapshots) {
  ProcessResult r = MeshctlAtTarget({"watch", "--count=2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("reporter w0 at"));
  EXPECT_THAT(r.out, HasSubstr("\n\nreporter w1 at"));
}

TEST_F(MeshctlTest, WatchWithoutSnapshotTimesOut) {
  service_.set_hang(true);
  ProcessResult r = MeshctlAtTarget({"watch", "--timeout_ms=300"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no snapshot within 300 ms"));
}

TEST_F(MeshctlTest, SlowNodeHitsTheDeadline) {
  service_.set_hang(true);
  ProcessResult r = MeshctlAtTarget({"topology", "--timeout_ms=300"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("GetTopology failed: DEADLINE_EXCEEDED"));
}

TEST_F(MeshctlTest, SendToOnePeer) {
  ProcessResult r = MeshctlAtTarget(
      {"send", "--to=b", "--payload=hello there", "--send_wait_ms=250"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "delivered to b\n");
  const mesh::v1::SendRequest sent = messaging_.last_send();
  EXPECT_EQ(sent.to(), "b");
  EXPECT_FALSE(sent.broadcast());
  EXPECT_EQ(sent.payload(), "hello there");
  EXPECT_EQ(sent.timeout_ms(), 250u);
}

TEST_F(MeshctlTest, SendBroadcast) {
  ProcessResult r = MeshctlAtTarget({"send", "--broadcast", "--payload="});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "delivered to b, c\n");
  EXPECT_TRUE(messaging_.last_send().broadcast());
}

TEST_F(MeshctlTest, SendErrorIsReported) {
  ProcessResult r = MeshctlAtTarget({"send", "--to=nobody", "--payload=x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "meshctl: send to nobody failed: NOT_FOUND: no link to nobody\n");
}

TEST_F(MeshctlTest, DeadTargetIsOneClearLine) {
  const std::string dead = absl::StrCat("unix:", dir_.path(), "/dead.grpc");
  for (const char* command : {"topology", "watch", "members"}) {
    SCOPED_TRACE(command);
    ProcessResult r = Meshctl({"--target", dead, command});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_TRUE(absl::StartsWith(
        r.err, absl::StrCat("meshctl: cannot reach ", dead, ": ")))
        << r.err;
    EXPECT_TRUE(absl::EndsWith(r.err, "; is a node running there?\n")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

TEST_F(MeshctlTest, BadUsageExitsTwo) {
  const std::vector<std::vector<std::string>> cases = {
      {"topology"},                                 // no --target
      {"--target=unix:/x"},                         // no command
      {"--target=unix:/x", "frobnicate"},           // unknown command
      {"--target=unix:/x", "topology", "extra"},    // stray argument
      {"--target=unix:/x", "--bogus", "topology"},  // unknown flag
      {"--target=unix:/x", "--timeout_ms=soon", "topology"},
      {"--target=unix:/x", "--format=yaml", "topology"},
      {"--target=nocolon", "topology"},
      {"--target=unix:/x", "send",
       "--payload=x"},  // neither --to nor --broadcast
      {"--target=unix:/x", "send", "--to=b", "--broadcast", "--payload=x"},
      {"--target=unix:/x", "send", "--to=b"},  // no --payload
      {"--target=unix:/x", "echo"},             // no PATTERN
      {"--target=unix:/x", "hz", "a", "b"},     // stray argument
      {"--target=unix:/x", "call", "upper"},    // no DATA
      {"--target=unix:/x", "topics", "--format=dot"},
      {"--target=unix:/x", "pub", "t", "x", "--rate=-1"},
      {"--target=unix:/x", "hz", "t", "--window=0"},
      {"--target=unix:/x", "echo", "t", "--wait_ms=-5"},
  };
  for (const auto& args : cases) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    ProcessResult r = Meshctl(args);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_TRUE(absl::StartsWith(r.err, "meshctl: ")) << r.err;
    EXPECT_THAT(r.err, HasSubstr("usage: meshctl --target ADDR COMMAND"));
    EXPECT_EQ(r.out, "");
  }
}

TEST_F(MeshctlTest, VersionPrintsTheRelease) {
  ProcessResult r = Meshctl({"--version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "meshctl (shmesh) " SHMESH_VERSION "\n");
}

TEST_F(MeshctlTest, HelpDocumentsEverything) {
  ProcessResult r = Meshctl({"--help"});
  ASSERT_EQ(r.exit_code, 0);
  for (const char* s :
       {"topology", "members", "links", "watch", "send", "--target", "--format",
        "--timeout_ms", "--count", "--to", "--broadcast", "--payload",
        "--send_wait_ms", "--local_only", "--min_interval_ms", "control plane",
        "Topology.GetTopology", "Topology.WatchTopology", "Messaging.Send",
        "NOT the fast path", "exit status", "topics", "echo PATTERN",
        "hz PATTERN", "pub TOPIC DATA", "call SERVICE DATA", "--wait_ms",
        "--rate", "--window", "--server", "JOIN THE MESH AS A MEMBER",
        "meshctl-<pid>"}) {
    EXPECT_THAT(r.out, HasSubstr(s));
  }
}

}  // namespace
}  // namespace cmd
}  // namespace mesh
