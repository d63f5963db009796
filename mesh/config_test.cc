#include "mesh/config.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mesh {
namespace {

using ::mesh::v1::NodeConfig;
using ::mesh::v1::WaitPolicy;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A fresh directory for this test's files, under TEST_TMPDIR.
std::string TestDir() {
  const char* base = std::getenv("TEST_TMPDIR");
  std::string templ =
      absl::StrCat(base != nullptr ? base : "/tmp", "/config_test.XXXXXX");
  char* dir = ::mkdtemp(templ.data());
  EXPECT_NE(dir, nullptr);
  return templ;
}

std::string WriteFile(const std::string& dir, const std::string& name,
                      const std::string& contents) {
  const std::string path = absl::StrCat(dir, "/", name);
  std::ofstream(path) << contents;
  return path;
}

// Saves XDG_RUNTIME_DIR and restores it when the test ends.
class ScopedXdg {
 public:
  explicit ScopedXdg(const char* value) {
    const char* old = std::getenv("XDG_RUNTIME_DIR");
    had_ = old != nullptr;
    if (had_) old_ = old;
    if (value == nullptr) {
      ::unsetenv("XDG_RUNTIME_DIR");
    } else {
      ::setenv("XDG_RUNTIME_DIR", value, 1);
    }
  }
  ~ScopedXdg() {
    if (had_) {
      ::setenv("XDG_RUNTIME_DIR", old_.c_str(), 1);
    } else {
      ::unsetenv("XDG_RUNTIME_DIR");
    }
  }

 private:
  bool had_ = false;
  std::string old_;
};

// ---------------------------------------------------------------------------
// Loading files.

TEST(LoadConfigFileTest, LoadsTextFormat) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "node.textproto", R"pb(
    # A comment.
    name: "alpha"
    seeds: "unix:/tmp/shmesh/beta.grpc"
    seeds: "127.0.0.1:7001"
    ring_capacity_bytes: 65536
    wait { mode: SPIN }
    log_level: DEBUG
  )pb");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name(), "alpha");
  ASSERT_EQ(config->seeds_size(), 2);
  EXPECT_EQ(config->seeds(1), "127.0.0.1:7001");
  EXPECT_EQ(config->ring_capacity_bytes(), 65536u);
  EXPECT_EQ(config->wait().mode(), WaitPolicy::SPIN);
  EXPECT_EQ(config->log_level(), mesh::v1::DEBUG);
}

TEST(LoadConfigFileTest, LoadsJsonInBothFieldSpellings) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "node.json", R"({
    "name": "alpha",
    "ringCapacityBytes": "65536",
    "max_message_bytes": 100,
    "allowedPeerUids": [1000, 1001],
    "wait": {"mode": "SLEEP", "spinUs": 7},
    "logLevel": "WARNING"
  })");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name(), "alpha");
  EXPECT_EQ(config->ring_capacity_bytes(), 65536u);
  EXPECT_EQ(config->max_message_bytes(), 100u);
  EXPECT_EQ(config->allowed_peer_uids_size(), 2);
  EXPECT_EQ(config->wait().mode(), WaitPolicy::SLEEP);
  EXPECT_EQ(config->wait().spin_us(), 7u);
  EXPECT_EQ(config->log_level(), mesh::v1::WARNING);
}

TEST(LoadConfigFileTest, EmptyTextFileParsesToEmptyConfig) {
  const std::string dir = TestDir();
  absl::StatusOr<NodeConfig> config =
      LoadConfigFile(WriteFile(dir, "empty.textproto", ""));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->name(), "");
}

TEST(LoadConfigFileTest, MissingFileIsNotFound) {
  const std::string path = absl::StrCat(TestDir(), "/nope.textproto");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(),
            absl::StrCat("config file ", path, " not found"));
  // A relative path: the message says where it was looked for.
  char cwd[4096];
  ASSERT_NE(::getcwd(cwd, sizeof cwd), nullptr);
  EXPECT_EQ(LoadConfigFile("no/such.textproto").status().message(),
            absl::StrCat("config file no/such.textproto not found (looked in ", cwd,
                         "/; give an absolute path, or run from the directory that has it)"));
}

TEST(LoadConfigFileTest, UnreadableFileIsPermissionDenied) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "secret.textproto", "name: \"a\"");
  ASSERT_EQ(::chmod(path.c_str(), 0), 0);
  if (::geteuid() != 0) {
    absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
    EXPECT_EQ(config.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(config.status().message(), HasSubstr(path));
    return;
  }
  // Root reads any file: check as an unprivileged uid in a child (CI runs as
  // root). Exit 0: PERMISSION_DENIED naming the path; 1: anything else.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0) _exit(2);
    absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
    bool ok = config.status().code() == absl::StatusCode::kPermissionDenied &&
              absl::StrContains(config.status().message(), path);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_NE(WEXITSTATUS(status), 2) << "could not drop to uid 65534";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "as uid 65534: not PERMISSION_DENIED naming " << path;
}

TEST(LoadConfigFileTest, DirectoryIsInvalidArgument) {
  const std::string dir = TestDir();
  absl::StatusOr<NodeConfig> config = LoadConfigFile(dir);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr(dir), HasSubstr("is a directory")));
}

TEST(LoadConfigFileTest, PathUnderAFileIsAnErrorNamingThePath) {
  const std::string dir = TestDir();
  const std::string file = WriteFile(dir, "plain", "x");
  const std::string path = absl::StrCat(file, "/node.textproto");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kFailedPrecondition)
      << config.status();  // ENOTDIR
  EXPECT_THAT(config.status().message(), HasSubstr(path));
}

TEST(LoadConfigFileTest, UnknownTextFieldNamesFileLineColumnAndFix) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "node.textproto",
                                     "name: \"a\"\n"
                                     "ring_capacity_bytes: 4096\n"
                                     "nmae: \"b\"\n");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(),
            absl::StrCat(path,
                         ":3:1: Message type \"mesh.v1.NodeConfig\" has no "
                         "field named \"nmae\". Fix the field name (see "
                         "mesh/v1/config.proto); did you mean "
                         "\"name\"?"));
}

TEST(LoadConfigFileTest, UnknownNestedTextFieldPointsAtTheName) {
  absl::StatusOr<NodeConfig> config =
      ParseConfig("name: \"a\"\nwait {\n  \tspin: 3\n}\n", "n.txtpb");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  // Line 3, byte column 4 (two spaces and a tab before "spin").
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("n.txtpb:3:4: "),
                    HasSubstr("\"mesh.v1.WaitPolicy\" has no field named "
                              "\"spin\""),
                    HasSubstr("did you mean \"spin_us\"")));
}

TEST(LoadConfigFileTest, TextSyntaxErrorHasTheRightLine) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "node.pbtxt",
                                     "name: \"a\"\n"
                                     "\n"
                                     "seeds: \"x\"\n"
                                     "wait {\n"
                                     "  mode: ADAPTIVE\n"
                                     "  spin_us: \"many\"\n"
                                     "}\n");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr(absl::StrCat(path, ":6:")),
                    HasSubstr("Expected integer")));
  EXPECT_THAT(config.status().message(), Not(HasSubstr("\n")));
}

TEST(LoadConfigFileTest, UnterminatedMessageIsAnError) {
  absl::StatusOr<NodeConfig> config =
      ParseConfig("name: \"a\"\nwait {\n", "n.textproto");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("n.textproto:"));
}

TEST(LoadConfigFileTest, UnknownEnumValueListsTheAllowedOnes) {
  absl::StatusOr<NodeConfig> config =
      ParseConfig("name: \"a\"\nwait { mode: FAST }\n", "n.textproto");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("n.textproto:2:"), HasSubstr("\"FAST\""),
                    HasSubstr("ADAPTIVE, SPIN, SLEEP")));
}

TEST(LoadConfigFileTest, RepeatedScalarFieldIsAnError) {
  absl::StatusOr<NodeConfig> config =
      ParseConfig("name: \"a\"\nname: \"b\"\n", "n.textproto");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("n.textproto:2:"), HasSubstr("\"name\"")));
}

TEST(LoadConfigFileTest, UnknownJsonFieldNamesLineAndField) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "node.json",
                                     "{\n"
                                     "  \"name\": \"a\",\n"
                                     "  \"nmae\": \"b\"\n"
                                     "}\n");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr(absl::StrCat(path, ":3:3: ")),
                    HasSubstr("has no field named \"nmae\""),
                    HasSubstr("did you mean \"name\"")));
}

TEST(LoadConfigFileTest, UnknownNestedJsonField) {
  absl::StatusOr<NodeConfig> config = ParseConfig(
      "{\"name\": \"a\",\n \"wait\": {\"spinUS\": 3}}", "n.json", true);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr("n.json:2:"),
                    HasSubstr("\"mesh.v1.WaitPolicy\" has no field named "
                              "\"spinUS\""),
                    HasSubstr("did you mean \"spin_us\"")));
}

TEST(LoadConfigFileTest, JsonSyntaxErrorHasTheRightLine) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "node.json",
                                     "{\n"
                                     "  \"name\": \"a\",\n"
                                     "  \"seeds\": [\"x\"]\n"
                                     "  \"logLevel\": \"INFO\"\n"
                                     "}\n");
  absl::StatusOr<NodeConfig> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(),
              AllOf(HasSubstr(absl::StrCat(path, ":4:3: ")),
                    HasSubstr("invalid JSON: Expected , or }")));
  EXPECT_THAT(config.status().message(), Not(HasSubstr("\n")));
}

TEST(LoadConfigFileTest, JsonBadValueNamesTheField) {
  absl::StatusOr<NodeConfig> config =
      ParseConfig("{\n \"name\": \"a\",\n\n \"ringCapacityBytes\": \"lots\"\n}",
                  "n.json", true);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(
      config.status().message(),
      AllOf(HasSubstr("n.json:4:2: "), HasSubstr("ring_capacity_bytes")));
}

TEST(LoadConfigFileTest, JsonWithoutLocationSaysItIsJson) {
  absl::StatusOr<NodeConfig> config = ParseConfig("[1, 2]", "n.json", true);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(config.status().message(), HasSubstr("n.json"));
  EXPECT_THAT(config.status().message(), HasSubstr("JSON"));
}

TEST(LoadConfigFileTest, TextIsNotParsedAsJsonUnlessSuffixIsJson) {
  const std::string dir = TestDir();
  const std::string path = WriteFile(dir, "node.conf", "{\"name\": \"a\"}");
  EXPECT_EQ(LoadConfigFile(path).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// ---------------------------------------------------------------------------
// Resolving.

NodeConfig Named(const std::string& name) {
  NodeConfig c;
  c.set_name(name);
  return c;
}

// Resolves `c` and expects INVALID_ARGUMENT mentioning all of `parts`.
void ExpectInvalid(const NodeConfig& c, const std::string& field,
                   const std::string& detail = "") {
  absl::StatusOr<NodeConfig> r = ResolveConfig(c, "node.textproto");
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
  EXPECT_THAT(r.status().message(),
              HasSubstr(absl::StrCat("node.textproto: field ", field, ": ")));
  EXPECT_THAT(r.status().message(), HasSubstr("; "));
  EXPECT_THAT(r.status().message(), HasSubstr(detail));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("\n")));
}

TEST(ResolveConfigTest, FillsEveryDefault) {
  ScopedXdg xdg("/run/user/4242");
  absl::StatusOr<NodeConfig> r = ResolveConfig(Named("alpha"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name(), "alpha");
  EXPECT_EQ(r->run_dir(), "/run/user/4242/shmesh");
  EXPECT_EQ(r->grpc_listen(), "unix:/run/user/4242/shmesh/alpha.grpc");
  EXPECT_EQ(r->seeds_size(), 0);
  EXPECT_EQ(r->ring_capacity_bytes(), 1048576u);
  EXPECT_EQ(r->max_message_bytes(), uint64_t{1} << 30);
  EXPECT_EQ(r->pool().limit_bytes(), uint64_t{1} << 32);
  EXPECT_EQ(r->pool().peer_quota_bytes(), uint64_t{1} << 30);
  EXPECT_EQ(r->pool().threshold_bytes(), 65536u);
  EXPECT_EQ(r->pool().max_peer_segments(), 4096u);
  EXPECT_EQ(r->pool().retain_bytes(), uint64_t{256} << 20);
  ASSERT_EQ(r->allowed_peer_uids_size(), 1);
  EXPECT_EQ(r->allowed_peer_uids(0), ::getuid());
  EXPECT_EQ(r->wait().mode(), WaitPolicy::ADAPTIVE);
  EXPECT_EQ(r->wait().spin_us(), 50u);
  EXPECT_EQ(r->log_level(), mesh::v1::INFO);
  EXPECT_EQ(r->unresponsive_after_ms(), 2000u);
}

TEST(ResolveConfigTest, RunDirFallsBackToTmpWithoutXdg) {
  ScopedXdg xdg(nullptr);
  absl::StatusOr<NodeConfig> r = ResolveConfig(Named("a"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->run_dir(), absl::StrCat("/tmp/shmesh-", ::getuid()));
}

TEST(ResolveConfigTest, RelativeXdgIsIgnored) {
  ScopedXdg xdg("relative/dir");
  absl::StatusOr<NodeConfig> r = ResolveConfig(Named("a"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->run_dir(), absl::StrCat("/tmp/shmesh-", ::getuid()));
}

TEST(ResolveConfigTest, KeepsGivenValues) {
  NodeConfig c = Named("a.b-c_9");
  c.set_run_dir("/var/run/m/");
  c.set_grpc_listen("127.0.0.1:0");
  c.add_seeds("unix:///var/run/m/b.grpc");
  c.add_seeds("localhost:7001");
  c.add_seeds("[::1]:7002");
  c.add_seeds("localhost:7001");  // duplicate: dropped
  c.set_ring_capacity_bytes(4096);
  c.set_max_message_bytes(1);
  c.add_allowed_peer_uids(0);
  c.mutable_wait()->set_mode(WaitPolicy::SLEEP);
  c.mutable_wait()->set_spin_us(1000000);
  c.set_log_level(mesh::v1::ERROR);
  c.set_unresponsive_after_ms(300);
  absl::StatusOr<NodeConfig> r = ResolveConfig(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->run_dir(), "/var/run/m");
  EXPECT_EQ(r->grpc_listen(), "127.0.0.1:0");
  ASSERT_EQ(r->seeds_size(), 3);
  EXPECT_EQ(r->seeds(0), "unix:/var/run/m/b.grpc");
  EXPECT_EQ(r->seeds(1), "localhost:7001");
  EXPECT_EQ(r->seeds(2), "[::1]:7002");
  EXPECT_EQ(r->ring_capacity_bytes(), 4096u);
  EXPECT_EQ(r->max_message_bytes(), 1u);
  ASSERT_EQ(r->allowed_peer_uids_size(), 1);
  EXPECT_EQ(r->allowed_peer_uids(0), 0u);
  EXPECT_EQ(r->wait().mode(), WaitPolicy::SLEEP);
  EXPECT_EQ(r->wait().spin_us(), 1000000u);
  EXPECT_EQ(r->log_level(), mesh::v1::ERROR);
  EXPECT_EQ(r->unresponsive_after_ms(), 300u);
}

TEST(ResolveConfigTest, IsIdempotent) {
  NodeConfig c = Named("a");
  c.add_seeds("unix:/tmp/x/b.grpc");
  absl::StatusOr<NodeConfig> once = ResolveConfig(c);
  ASSERT_TRUE(once.ok()) << once.status();
  absl::StatusOr<NodeConfig> twice = ResolveConfig(*once);
  ASSERT_TRUE(twice.ok()) << twice.status();
  EXPECT_EQ(once->SerializeAsString(), twice->SerializeAsString());
}

TEST(ResolveConfigTest, LargestRingAndMessage) {
  NodeConfig c = Named("a");
  c.set_ring_capacity_bytes(uint64_t{1} << 30);
  c.set_max_message_bytes((uint64_t{1} << 28) - 16);
  EXPECT_TRUE(ResolveConfig(c).ok());
}

TEST(ResolveConfigTest, DefaultSourceIsConfig) {
  absl::StatusOr<NodeConfig> r = ResolveConfig(NodeConfig());
  EXPECT_THAT(r.status().message(), HasSubstr("config: field name: "));
}

TEST(ResolveConfigTest, BadName) {
  ExpectInvalid(NodeConfig(), "name", "required");
  ExpectInvalid(Named(std::string(65, 'a')), "name", "65 characters");
  ExpectInvalid(Named("a b"), "name", "position 2");
  ExpectInvalid(Named("a/b"), "name", "[A-Za-z0-9_.-]");
  ExpectInvalid(Named("caf\xc3\xa9"), "name", "\\xc3");
  EXPECT_TRUE(ResolveConfig(Named(std::string(64, 'a'))).ok());
}

TEST(ResolveConfigTest, BadRunDir) {
  NodeConfig c = Named("a");
  c.set_run_dir("relative/dir");
  ExpectInvalid(c, "run_dir", "not absolute");
}

TEST(ResolveConfigTest, LinkSocketPathTooLong) {
  NodeConfig c = Named("node");
  // "/" + 96 x's + "/node.link" = 107 bytes: fits.
  c.set_run_dir("/" + std::string(96, 'x'));
  EXPECT_TRUE(ResolveConfig(c).ok()) << ResolveConfig(c).status();
  // One more byte does not.
  c.set_run_dir("/" + std::string(97, 'x'));
  ExpectInvalid(c, "run_dir", "108 bytes");
}

TEST(ResolveConfigTest, GrpcSocketPathTooLong) {
  NodeConfig c = Named("a");
  c.set_grpc_listen("unix:/" + std::string(107, 'y'));
  ExpectInvalid(c, "grpc_listen", "108 bytes");
}

TEST(ResolveConfigTest, BadGrpcListen) {
  for (const char* bad : {"unix:relative.sock", "unix:", "localhost",
                          "host:", "host:65536", "host:-1", "host:12a", ":7001",
                          "::1:7001", "[::1:7001", "ho st:1", "dns:///x:1"}) {
    SCOPED_TRACE(bad);
    NodeConfig c = Named("a");
    c.set_grpc_listen(bad);
    ExpectInvalid(c, "grpc_listen");
  }
  for (const char* good :
       {"0.0.0.0:0", "localhost:65535", "[::]:7001", "unix:/tmp/a.sock"}) {
    SCOPED_TRACE(good);
    NodeConfig c = Named("a");
    c.set_grpc_listen(good);
    EXPECT_TRUE(ResolveConfig(c).ok()) << ResolveConfig(c).status();
  }
}

TEST(ResolveConfigTest, BadSeeds) {
  NodeConfig c = Named("a");
  c.add_seeds("127.0.0.1:7001");
  c.add_seeds("nowhere");
  ExpectInvalid(c, "seeds[1]", "no port");

  c = Named("a");
  c.add_seeds("127.0.0.1:0");
  ExpectInvalid(c, "seeds[0]", "port");

  c = Named("a");
  c.add_seeds("");
  ExpectInvalid(c, "seeds[0]", "empty");

  c = Named("a");
  c.add_seeds("unix:/" + std::string(120, 's'));
  ExpectInvalid(c, "seeds[0]", "bytes");
}

TEST(ResolveConfigTest, SeedEqualToOwnAddress) {
  NodeConfig c = Named("a");
  c.set_grpc_listen("127.0.0.1:7001");
  c.add_seeds("127.0.0.1:7001");
  ExpectInvalid(c, "seeds[0]", "own grpc_listen");

  // Also against the default address, in either unix: spelling.
  c = Named("a");
  c.set_run_dir("/tmp/m");
  c.add_seeds("unix:///tmp/m/a.grpc");
  ExpectInvalid(c, "seeds[0]", "own grpc_listen");
}

TEST(ResolveConfigTest, BadRingCapacity) {
  for (uint64_t bad : {uint64_t{1}, uint64_t{2048}, uint64_t{4097},
                       uint64_t{100000}, uint64_t{1} << 31, ~uint64_t{0}}) {
    SCOPED_TRACE(bad);
    NodeConfig c = Named("a");
    c.set_ring_capacity_bytes(bad);
    ExpectInvalid(c, "ring_capacity_bytes", "power of two from 4096");
  }
}

TEST(ResolveConfigTest, MaxMessageIsBoundedByThePoolNotTheRing) {
  NodeConfig c = Named("a");
  c.set_ring_capacity_bytes(4096);
  c.set_max_message_bytes(uint64_t{1} << 30);  // far past a quarter of the ring: the pool carries it
  absl::StatusOr<NodeConfig> r = ResolveConfig(c);
  ASSERT_TRUE(r.ok()) << r.status();
  // What goes through the ring at most: a quarter of it, less the ring's
  // frame header (8) and the message envelope (8).
  EXPECT_EQ(r->pool().threshold_bytes(), 1008u);
  c.set_max_message_bytes((uint64_t{1} << 32) + 1);
  ExpectInvalid(c, "max_message_bytes", "pool.limit_bytes");
  c.mutable_pool()->set_limit_bytes(uint64_t{1} << 33);
  EXPECT_TRUE(ResolveConfig(c).ok());
}

TEST(ResolveConfigTest, BadPool) {
  NodeConfig c = Named("a");
  c.mutable_pool()->set_limit_bytes(4096);
  ExpectInvalid(c, "pool.limit_bytes", "1048576");
  c.mutable_pool()->set_limit_bytes(1 << 20);
  c.mutable_pool()->set_peer_quota_bytes(2 << 20);
  ExpectInvalid(c, "pool.peer_quota_bytes", "limit");
  c.mutable_pool()->set_peer_quota_bytes(0);
  absl::StatusOr<NodeConfig> r = ResolveConfig(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->pool().peer_quota_bytes(), 1u << 20);  // the default, capped at the limit
  EXPECT_EQ(r->max_message_bytes(), 1u << 20);        // likewise
}

TEST(ResolveConfigTest, BadUid) {
  NodeConfig c = Named("a");
  c.add_allowed_peer_uids(1000);
  c.add_allowed_peer_uids(4294967295u);
  ExpectInvalid(c, "allowed_peer_uids[1]", "not a valid uid");
}

TEST(ResolveConfigTest, BadWait) {
  NodeConfig c = Named("a");
  c.mutable_wait()->set_spin_us(1000001);
  ExpectInvalid(c, "wait.spin_us", "at most 1000000");

  c = Named("a");
  c.mutable_wait()->set_mode(static_cast<WaitPolicy::Mode>(7));
  ExpectInvalid(c, "wait.mode", "ADAPTIVE, SPIN, SLEEP");
}

TEST(ResolveConfigTest, BadUnresponsiveAfter) {
  NodeConfig c = Named("a");
  c.set_unresponsive_after_ms(299);
  ExpectInvalid(c, "unresponsive_after_ms", "use 300 to 3600000");
  c.set_unresponsive_after_ms(3600001);
  ExpectInvalid(c, "unresponsive_after_ms", "use 300 to 3600000");
}

TEST(ResolveConfigTest, BadLogLevel) {
  NodeConfig c = Named("a");
  c.set_log_level(static_cast<mesh::v1::LogLevel>(9));
  ExpectInvalid(c, "log_level", "DEBUG, INFO, WARNING, ERROR");
}

TEST(ResolveConfigTest, OpenEnumValueFromAFileIsCaughtByResolve) {
  // Text format and JSON both accept unknown numbers for open enums.
  absl::StatusOr<NodeConfig> c =
      ParseConfig("name: \"a\" wait { mode: 7 }", "n.textproto");
  ASSERT_TRUE(c.ok()) << c.status();
  absl::StatusOr<NodeConfig> r = ResolveConfig(*c, "n.textproto");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(),
              HasSubstr("n.textproto: field wait.mode: 7 is not a known"));
}

}  // namespace
}  // namespace mesh
