// meshd as a real child process: usage and config errors, and two daemons
// exchanging lines through --stdin and --print over a real mesh.
#include <signal.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mesh/version.h"
#include "testing/subprocess.h"
#include "testing/temp_dir.h"

namespace mesh {
namespace cmd {
namespace {

using ::shmesh::testing::Child;
using ::shmesh::testing::ProcessResult;
using ::shmesh::testing::ReadFile;
using ::shmesh::testing::RunfilePath;
using ::shmesh::testing::RunProcess;
using ::shmesh::testing::ShortTempDir;
using ::shmesh::testing::WaitForFileToContain;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Meshd() { return RunfilePath("mesh/cmd/meshd"); }

std::string WriteConfig(const std::string& dir, const std::string& file,
                        const std::string& text) {
  const std::string path = absl::StrCat(dir, "/", file);
  FILE* f = std::fopen(path.c_str(), "w");
  std::fputs(text.c_str(), f);
  std::fclose(f);
  return path;
}

int Lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

TEST(MeshdTest, HelpDocumentsEveryFlag) {
  ProcessResult r = RunProcess({Meshd(), "--help"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* flag :
       {"--config", "--print", "--stdin", "--exit_on_eof", "--log_level",
        "--wait_peers", "--wait_timeout_ms", "--send_timeout_ms",
        "--subscribe", "--publish", "--history", "--shared_ring", "--serve", "upper-cased"}) {
    EXPECT_THAT(r.out, HasSubstr(flag));
  }
  EXPECT_THAT(r.out, HasSubstr("SIGHUP restarts only the\nnode's gRPC server"));
  // Nothing an installed copy lacks: no repository paths.
  EXPECT_THAT(r.out, Not(HasSubstr("examples/")));
  EXPECT_THAT(r.out, Not(HasSubstr("proto/mesh")));
}

TEST(MeshdTest, VersionPrintsTheRelease) {
  ProcessResult r = RunProcess({Meshd(), "--version"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "meshd (shmesh) " SHMESH_VERSION "\n");
}

TEST(MeshdTest, BadUsageExitsTwo) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {},
           {"--config=x.textproto", "--bogus"},
           {"--config=x.textproto", "--log_level=loud"},
           {"--config=x.textproto", "--wait_peers=many"},
           {"--config=x.textproto", "--exit_on_eof"},
           {"x.textproto"},
       }) {
    SCOPED_TRACE(absl::StrJoin(args, " "));
    std::vector<std::string> argv = {Meshd()};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_TRUE(absl::StartsWith(r.err, "meshd: ")) << r.err;
    EXPECT_THAT(r.err, HasSubstr("usage: meshd --config FILE"));
  }
}

TEST(MeshdTest, BadConfigIsOneLineAndExitsTwo) {
  ShortTempDir dir("shmesh-cmd.");
  const std::string path =
      WriteConfig(dir.path(), "node.textproto", "name: \"a\"\nnmae: \"b\"\n");
  ProcessResult r = RunProcess({Meshd(), "--config", path});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(absl::StartsWith(
      r.err, absl::StrCat("meshd: ", path,
                          ":2:1: Message type \"mesh.v1.NodeConfig\" has no "
                          "field named \"nmae\".")))
      << r.err;
  EXPECT_EQ(Lines(r.err), 1) << r.err;

  // A value error, with --log_level taking the other loading path.
  const std::string bad_ring = WriteConfig(
      dir.path(), "ring.textproto", "name: \"a\"\nring_capacity_bytes: 5000\n");
  for (const std::vector<std::string>& extra :
       std::vector<std::vector<std::string>>{{}, {"--log_level=debug"}}) {
    std::vector<std::string> argv = {Meshd(), "--config", bad_ring};
    argv.insert(argv.end(), extra.begin(), extra.end());
    r = RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2);
    EXPECT_THAT(r.err, HasSubstr("field ring_capacity_bytes: 5000"));
    EXPECT_EQ(Lines(r.err), 1) << r.err;
  }

  const std::string missing = absl::StrCat(dir.path(), "/missing.textproto");
  r = RunProcess({Meshd(), "--config", missing});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err,
            absl::StrCat("meshd: config file ", missing, " not found\n"));
}

TEST(MeshdTest, TwoDaemonsExchangeLines) {
  ShortTempDir dir("shmesh-cmd.");
  const std::string run = absl::StrCat(dir.path(), "/run");
  const std::string a_config =
      WriteConfig(dir.path(), "a.textproto",
                  absl::StrCat("name: \"a\"\nrun_dir: \"", run, "\"\n"));
  const std::string b_config =
      WriteConfig(dir.path(), "b.json",
                  absl::StrCat("{\"name\": \"b\", \"runDir\": \"", run,
                               "\", \"seeds\": [\"unix:", run, "/a.grpc\"]}"));
  const std::string a_out = absl::StrCat(dir.path(), "/a.out");
  const std::string a_err = absl::StrCat(dir.path(), "/a.err");
  const std::string b_out = absl::StrCat(dir.path(), "/b.out");
  const std::string b_err = absl::StrCat(dir.path(), "/b.err");

  Child a({Meshd(), "--config", a_config, "--print"}, a_out, a_err);
  ASSERT_TRUE(WaitForFileToContain(a_err, "meshd[a] INFO started: a"))
      << ReadFile(a_err);
  EXPECT_THAT(ReadFile(a_err),
              HasSubstr(absl::StrCat("grpc unix:", run, "/a.grpc")));

  // b stays up after its stdin ends, until a has printed every line: a peer
  // that stops at once can race its last messages against its Leave (see
  // ExitOnEofStopsCleanly for --exit_on_eof).
  Child b({Meshd(), "--config", b_config, "--stdin", "--wait_peers=1",
           "--wait_timeout_ms=20000", "--print"},
          b_out, b_err);
  b.WriteStdin("@a hello a\nto all\n\n@nobody x\n@a tab\there\n");
  b.CloseStdin();
  ASSERT_TRUE(WaitForFileToContain(a_out, "b: tab\\there\n"))
      << ReadFile(a_out) << ReadFile(a_err) << ReadFile(b_err);
  EXPECT_EQ(ReadFile(a_out), "b: hello a\nb: to all\nb: tab\\there\n");
  ASSERT_TRUE(WaitForFileToContain(
      b_err, "end of stdin; running until SIGTERM or SIGINT"));
  const std::string b_log = ReadFile(b_err);
  EXPECT_THAT(b_log, HasSubstr("peer up: a (pid "));
  EXPECT_THAT(b_log, HasSubstr("have 1 peer after"));
  EXPECT_THAT(b_log, HasSubstr("send to nobody failed: NOT_FOUND"));

  b.Signal(SIGTERM);
  EXPECT_EQ(b.Wait(), 0) << ReadFile(b_err);
  EXPECT_THAT(ReadFile(b_err), HasSubstr("meshd[b] INFO stopped"));
  EXPECT_TRUE(WaitForFileToContain(a_err, "peer down: b"));

  a.Signal(SIGTERM);
  EXPECT_EQ(a.Wait(), 0);
  const std::string a_log = ReadFile(a_err);
  EXPECT_THAT(a_log, HasSubstr("peer up: b (pid "));
  EXPECT_THAT(a_log, HasSubstr("received SIGTERM; stopping"));
  EXPECT_THAT(a_log, HasSubstr("meshd[a] INFO stopped"));
}

TEST(MeshdTest, ExitOnEofStopsCleanly) {
  ShortTempDir dir("shmesh-cmd.");
  const std::string config = WriteConfig(
      dir.path(), "solo.textproto",
      absl::StrCat("name: \"solo\"\nrun_dir: \"", dir.path(), "/run\"\n"));
  const std::string err = absl::StrCat(dir.path(), "/err");
  Child solo({Meshd(), "--config", config, "--stdin", "--exit_on_eof"},
             absl::StrCat(dir.path(), "/out"), err);
  solo.WriteStdin("@nobody hi\nlast line without newline");
  solo.CloseStdin();
  EXPECT_EQ(solo.Wait(), 0) << ReadFile(err);
  const std::string log = ReadFile(err);
  EXPECT_THAT(log, HasSubstr("send to nobody failed"));
  EXPECT_THAT(log, HasSubstr("broadcast reached no peers"));
  EXPECT_THAT(log, HasSubstr("end of stdin; stopping"));
  EXPECT_THAT(log, HasSubstr("meshd[solo] INFO stopped"));
}

TEST(MeshdTest, SigintStopsCleanlyAndStdinEofKeepsRunning) {
  ShortTempDir dir("shmesh-cmd.");
  const std::string config = WriteConfig(
      dir.path(), "solo.textproto",
      absl::StrCat("name: \"solo\"\nrun_dir: \"", dir.path(), "/run\"\n"));
  const std::string out = absl::StrCat(dir.path(), "/out");
  const std::string err = absl::StrCat(dir.path(), "/err");
  Child solo({Meshd(), "--config", config, "--stdin", "--wait_peers=1",
              "--wait_timeout_ms=100"},
             out, err);
  solo.WriteStdin("nobody is listening\n");
  solo.CloseStdin();
  ASSERT_TRUE(WaitForFileToContain(
      err, "end of stdin; running until SIGTERM or SIGINT"))
      << ReadFile(err);
  EXPECT_THAT(ReadFile(err), HasSubstr("only 0 of 1 peers after 100 ms"));
  EXPECT_THAT(ReadFile(err), HasSubstr("broadcast reached no peers"));
  solo.Signal(SIGINT);
  EXPECT_EQ(solo.Wait(), 0) << ReadFile(err);
  EXPECT_THAT(ReadFile(err), HasSubstr("received SIGINT; stopping"));
}

TEST(MeshdTest, SighupRestartsTheGrpcServerAndLinksStayUp) {
  ShortTempDir dir("shmesh-cmd.");
  const std::string run = absl::StrCat(dir.path(), "/run");
  auto config = [&](const std::string& name, const std::string& seed) {
    return WriteConfig(
        dir.path(), name + ".textproto",
        absl::StrCat("name: \"", name, "\"\nrun_dir: \"", run, "\"\n",
                     seed.empty() ? ""
                                  : absl::StrCat("seeds: \"unix:", run, "/",
                                                 seed, ".grpc\"\n")));
  };
  const std::string a_out = absl::StrCat(dir.path(), "/a.out");
  const std::string a_err = absl::StrCat(dir.path(), "/a.err");
  const std::string b_err = absl::StrCat(dir.path(), "/b.err");
  const std::string c_err = absl::StrCat(dir.path(), "/c.err");
  Child a({Meshd(), "--config", config("a", ""), "--print"}, a_out, a_err);
  ASSERT_TRUE(WaitForFileToContain(a_err, "INFO started: a"))
      << ReadFile(a_err);
  Child b({Meshd(), "--config", config("b", "a"), "--stdin", "--wait_peers=1",
           "--wait_timeout_ms=20000"},
          absl::StrCat(dir.path(), "/b.out"), b_err);
  ASSERT_TRUE(WaitForFileToContain(b_err, "have 1 peer after"))
      << ReadFile(b_err);
  b.WriteStdin("@a before\n");
  ASSERT_TRUE(WaitForFileToContain(a_out, "b: before\n")) << ReadFile(a_err);

  // Two restarts of a's gRPC server, one at a time: a logs each when done.
  auto restarts_logged = [&] {
    const std::string log = ReadFile(a_err);
    int n = 0;
    for (size_t at = log.find("gRPC server restarted on unix:");
         at != std::string::npos;
         at = log.find("gRPC server restarted on unix:", at + 1)) {
      ++n;
    }
    return n;
  };
  for (int i = 1; i <= 2; ++i) {
    a.Signal(SIGHUP);
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (restarts_logged() < i && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_EQ(restarts_logged(), i) << ReadFile(a_err);
  }
  // The link never went down: b's lines still arrive.
  b.WriteStdin("@a after\n");
  ASSERT_TRUE(WaitForFileToContain(a_out, "b: after\n")) << ReadFile(a_err);
  // The new server serves: a third daemon joins through a.
  Child c({Meshd(), "--config", config("c", "a"), "--wait_peers=2",
           "--wait_timeout_ms=20000"},
          absl::StrCat(dir.path(), "/c.out"), c_err);
  ASSERT_TRUE(WaitForFileToContain(c_err, "have 2 peers after"))
      << ReadFile(c_err) << ReadFile(a_err);
  EXPECT_THAT(ReadFile(a_err), Not(HasSubstr("peer down")));
  EXPECT_THAT(ReadFile(a_err), Not(HasSubstr("restart failed")));
  EXPECT_THAT(ReadFile(b_err), Not(HasSubstr("peer down")));

  for (Child* child : {&c, &b, &a}) child->Signal(SIGTERM);
  for (Child* child : {&c, &b, &a}) EXPECT_EQ(child->Wait(), 0);
}

TEST(MeshdTest, TakenNameExitsOne) {
  ShortTempDir dir("shmesh-cmd.");
  const std::string run1 = absl::StrCat(dir.path(), "/run1");
  const std::string run2 = absl::StrCat(dir.path(), "/run2");
  const std::string first = WriteConfig(
      dir.path(), "first.textproto",
      absl::StrCat("name: \"a\"\nrun_dir: \"", run1, "\"\n"));
  // Another run directory, so the sockets do not collide: only the seed
  // can tell that the name is taken.
  const std::string second = WriteConfig(
      dir.path(), "second.textproto",
      absl::StrCat("name: \"a\"\nrun_dir: \"", run2, "\"\nseeds: \"unix:",
                   run1, "/a.grpc\"\n"));
  const std::string a_err = absl::StrCat(dir.path(), "/a.err");
  Child a({Meshd(), "--config", first}, absl::StrCat(dir.path(), "/a.out"),
          a_err);
  ASSERT_TRUE(WaitForFileToContain(a_err, "INFO started: a"))
      << ReadFile(a_err);

  ProcessResult r = RunProcess({Meshd(), "--config", second});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("meshd: node a: cannot join the mesh"));
  EXPECT_THAT(r.err,
              HasSubstr(absl::StrCat("name 'a' is taken by a live node (pid ",
                                     a.pid(), ")")));
  EXPECT_THAT(r.err, Not(HasSubstr("INFO started: a")));

  // The first daemon is unaffected and stops cleanly.
  a.Signal(SIGTERM);
  EXPECT_EQ(a.Wait(), 0) << ReadFile(a_err);
  EXPECT_THAT(ReadFile(a_err), Not(HasSubstr("member joined")));
}

}  // namespace
}  // namespace cmd
}  // namespace mesh
