// Topics and services through the tools, end to end with real processes:
// meshd --subscribe / --publish --history / --serve, and meshctl echo, pub,
// call, hz and topics joining the mesh as members.
#include <signal.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
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
using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::StartsWith;

std::vector<std::string> Lines(const std::string& s) {
  return absl::StrSplit(s, '\n', absl::SkipEmpty());
}

// Whether meshctl's private run directory (/tmp/meshctl-<pid>.XXXXXX) of
// process `pid` is still there.
bool MemberDirLeft(int pid) {
  const std::string prefix = absl::StrCat("meshctl-", pid, ".");
  for (const auto& entry : std::filesystem::directory_iterator("/tmp")) {
    if (absl::StartsWith(entry.path().filename().string(), prefix)) return true;
  }
  return false;
}

class TopicsCliTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  std::string Path(const std::string& name) { return dir_.Sub(name); }
  std::string Target() { return absl::StrCat("unix:", Path("run/a.grpc")); }

  // Starts meshd for node `name` (a starts the mesh; the others join
  // through a) with `flags`, and waits until it has started.
  std::unique_ptr<Child> StartMeshd(const std::string& name,
                                    std::vector<std::string> flags) {
    const std::string config = Path(name + ".textproto");
    FILE* f = std::fopen(config.c_str(), "w");
    std::fprintf(f, "name: \"%s\"\nrun_dir: \"%s\"\n%s", name.c_str(),
                 Path("run").c_str(),
                 name == "a" ? ""
                             : absl::StrCat("seeds: \"", Target(), "\"\n").c_str());
    std::fclose(f);
    std::vector<std::string> argv = {RunfilePath("mesh/cmd/meshd"), "--config",
                                     config};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto child = std::make_unique<Child>(argv, Path(name + ".out"),
                                         Path(name + ".err"));
    EXPECT_TRUE(WaitForFileToContain(Path(name + ".err"), "INFO started"))
        << ReadFile(Path(name + ".err"));
    return child;
  }

  std::vector<std::string> MeshctlArgv(std::vector<std::string> args) {
    args.insert(args.begin(), {RunfilePath("mesh/cmd/meshctl"),
                               absl::StrCat("--target=", Target())});
    return args;
  }
  ProcessResult Meshctl(std::vector<std::string> args) {
    return RunProcess(MeshctlArgv(std::move(args)), "", absl::Seconds(20));
  }

  ShortTempDir dir_{"shmesh-tc."};
};

TEST_F(TopicsCliTest, PubReachesEchoAndMeshdSubscriberAndCallIsAnswered) {
  std::unique_ptr<Child> a =
      StartMeshd("a", {"--subscribe=chat/*,other/x", "--serve=upper"});

  Child echo(MeshctlArgv({"echo", "chat/**", "--count=2"}), Path("echo.out"),
             Path("echo.err"));
  ASSERT_TRUE(WaitForFileToContain(Path("echo.err"), "Ctrl-C to stop"))
      << ReadFile(Path("echo.err"));
  EXPECT_THAT(ReadFile(Path("echo.err")),
              HasSubstr(absl::StrCat("meshctl: echo chat/** as meshctl-",
                                     echo.pid(), ", linked with 1 nodes")));

  // pub waits for both subscribers the target knows of (a, and echo's
  // node), then publishes twice.
  ProcessResult pub =
      Meshctl({"pub", "chat/room", "hello there", "--count=2", "--rate=100"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_THAT(pub.out, HasSubstr(absl::StrCat(
                           "published 2 messages to chat/room; reached: a, "
                           "meshctl-",
                           echo.pid(), "\n")));
  EXPECT_EQ(pub.err, "");

  EXPECT_EQ(echo.Wait(absl::Seconds(10)), 0) << ReadFile(Path("echo.err"));
  const std::vector<std::string> echoed = Lines(ReadFile(Path("echo.out")));
  ASSERT_EQ(echoed.size(), 2u) << ReadFile(Path("echo.out"));
  for (const std::string& line : echoed) {
    EXPECT_THAT(line, StartsWith("chat/room meshctl-"));
    EXPECT_TRUE(absl::EndsWith(line, " hello there")) << line;
  }
  // echo left the mesh and removed its run directory.
  EXPECT_FALSE(MemberDirLeft(echo.pid()));
  // a (meshd --subscribe) printed the same two lines.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Lines(ReadFile(Path("a.out"))).size() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(Lines(ReadFile(Path("a.out"))), echoed);

  // The service: a answers with the request upper-cased.
  ProcessResult call = Meshctl({"call", "upper", "make me loud"});
  ASSERT_EQ(call.exit_code, 0) << call.err;
  EXPECT_EQ(call.out, "MAKE ME LOUD\n");
  call = Meshctl({"call", "upper", "--server=a", "--", "-dash-"});
  ASSERT_EQ(call.exit_code, 0) << call.err;
  EXPECT_EQ(call.out, "-DASH-\n");

  // topics: a's subscriptions and what they got, its service.
  ProcessResult topics = Meshctl({"topics"});
  ASSERT_EQ(topics.exit_code, 0) << topics.err;
  EXPECT_THAT(topics.out, ContainsRegex("\nchat/room +a +sub +chat/\\* +2 +22 "));
  EXPECT_THAT(topics.out, ContainsRegex("\nchat/\\* +a +2 +22 "));
  EXPECT_THAT(topics.out, ContainsRegex("\nother/x +a +0 +0 "));
  EXPECT_THAT(topics.out, ContainsRegex("\nupper +a +2\n"));
  ProcessResult json = Meshctl({"topics", "--format=json"});
  ASSERT_EQ(json.exit_code, 0) << json.err;
  EXPECT_THAT(json.out, HasSubstr("\"served\""));
  EXPECT_THAT(json.out, HasSubstr("\"members\": []"));

  // An echo stopped by SIGINT leaves cleanly too.
  Child idle(MeshctlArgv({"echo", "nothing/**"}), Path("idle.out"),
             Path("idle.err"));
  ASSERT_TRUE(WaitForFileToContain(Path("idle.err"), "Ctrl-C to stop"));
  EXPECT_TRUE(MemberDirLeft(idle.pid()));
  idle.Signal(SIGINT);
  EXPECT_EQ(idle.Wait(absl::Seconds(10)), 0) << ReadFile(Path("idle.err"));
  EXPECT_FALSE(MemberDirLeft(idle.pid()));

  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(), 0) << ReadFile(Path("a.err"));
}

TEST_F(TopicsCliTest, LateEchoGetsHistoryAndHzMeasuresTheRate) {
  std::unique_ptr<Child> a = StartMeshd("a", {});
  std::unique_ptr<Child> b = StartMeshd(
      "b", {"--stdin", "--publish=news", "--history=3", "--log_level=debug"});
  // Nobody subscribes yet: the history keeps the last 3 of 4.
  b->WriteStdin("1\n22\n333\n4444\n");
  ASSERT_TRUE(
      WaitForFileToContain(Path("b.err"), "published 4 bytes to news"))
      << ReadFile(Path("b.err"));
  ProcessResult late = Meshctl({"echo", "news", "--count=3"});
  ASSERT_EQ(late.exit_code, 0) << late.err;
  EXPECT_EQ(late.out, "news b 22\nnews b 333\nnews b 4444\n");

  // hz while meshctl pub sends 50 messages a second for a second.
  Child hz(MeshctlArgv({"hz", "tick", "--count=2"}), Path("hz.out"),
           Path("hz.err"));
  ASSERT_TRUE(WaitForFileToContain(Path("hz.err"), "a report per second"))
      << ReadFile(Path("hz.err"));
  ProcessResult pub =
      Meshctl({"pub", "tick", "x", "--count=50", "--rate=50"});
  ASSERT_EQ(pub.exit_code, 0) << pub.err;
  EXPECT_EQ(hz.Wait(absl::Seconds(10)), 0) << ReadFile(Path("hz.err"));
  const std::string out = ReadFile(Path("hz.out"));
  double best = 0;
  for (const std::string& line : Lines(out)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "tick: average rate: ")) continue;
    double hz_value = 0;
    ASSERT_TRUE(absl::SimpleAtod(rest.substr(0, rest.find(' ')), &hz_value))
        << line;
    EXPECT_THAT(line, ContainsRegex("min: [0-9.]+s  max: [0-9.]+s  std dev: "
                                    "[0-9.]+s  window: [0-9]+$"));
    best = std::max(best, hz_value);
  }
  // 50 Hz, with room for a loaded machine (a stall delays messages, and
  // the publisher then catches up on its schedule).
  EXPECT_GT(best, 20) << out;
  EXPECT_LT(best, 200) << out;

  b->Signal(SIGTERM);
  a->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(), 0);
  EXPECT_EQ(a->Wait(), 0);
}

// meshd --shared_ring: real processes, the lines through one broadcast
// ring; a late meshctl echo (a short-lived member) gets the history, then
// a live line.
TEST_F(TopicsCliTest, ASharedRingPublisherReachesALateEcho) {
  std::unique_ptr<Child> a = StartMeshd("a", {});
  std::unique_ptr<Child> b = StartMeshd(
      "b", {"--stdin", "--publish=news", "--history=2", "--shared_ring", "--log_level=debug"});
  ASSERT_TRUE(WaitForFileToContain(Path("b.err"), "(shared ring)")) << ReadFile(Path("b.err"));
  b->WriteStdin("1\n22\n333\n");
  ASSERT_TRUE(WaitForFileToContain(Path("b.err"), "published 3 bytes to news")) << ReadFile(Path("b.err"));
  Child echo(MeshctlArgv({"echo", "news", "--count=3"}), Path("echo.out"), Path("echo.err"));
  ASSERT_TRUE(WaitForFileToContain(Path("echo.out"), "news b 333")) << ReadFile(Path("echo.err"));
  b->WriteStdin("4444\n");
  EXPECT_EQ(echo.Wait(absl::Seconds(10)), 0) << ReadFile(Path("echo.err"));
  EXPECT_EQ(ReadFile(Path("echo.out")), "news b 22\nnews b 333\nnews b 4444\n");
  b->Signal(SIGTERM);
  a->Signal(SIGTERM);
  EXPECT_EQ(b->Wait(), 0);
  EXPECT_EQ(a->Wait(), 0);
}

TEST_F(TopicsCliTest, ErrorsSayWhatHappenedAndWhatToDo) {
  std::unique_ptr<Child> a = StartMeshd("a", {});

  ProcessResult r = Meshctl({"pub", "lonely/topic", "x", "--wait_ms=300"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no subscriber of lonely/topic within "
                               "--wait_ms=300 ms; nothing was published"));
  r = Meshctl({"call", "nothing/here", "x", "--wait_ms=300"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no linked node serves nothing/here"));
  EXPECT_THAT(r.err, HasSubstr("meshd --serve=nothing/here"));

  // Bad names are bad usage.
  r = Meshctl({"echo", "a//b"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad pattern \"a//b\""));
  r = Meshctl({"pub", "a/*", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("bad topic \"a/*\""));
  r = Meshctl({"pub", "t"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("pub needs DATA"));
  r = Meshctl({"topics", "--format=dot"});
  EXPECT_EQ(r.exit_code, 2);

  // A dead target is one line, as for the other commands.
  r = RunProcess({RunfilePath("mesh/cmd/meshctl"),
                  absl::StrCat("--target=unix:", Path("dead.grpc")), "echo",
                  "x"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot reach"));

  // meshd's own flags.
  const std::string meshd = RunfilePath("mesh/cmd/meshd");
  const std::string config = Path("a.textproto");
  for (const auto& [flags, message] :
       std::vector<std::pair<std::vector<std::string>, std::string>>{
           {{"--publish=t"}, "--publish needs --stdin"},
           {{"--history=3"}, "--history needs --publish=TOPIC"},
           {{"--shared_ring"}, "--shared_ring needs --publish=TOPIC"},
           {{"--subscribe=a//b"}, "--subscribe pattern \"a//b\""},
           {{"--stdin", "--publish=t", "--history=100000"}, "history"},
           {{"--serve=x,x"}, "--serve service \"x\""},
       }) {
    std::vector<std::string> argv = {meshd, "--config", config};
    argv.insert(argv.end(), flags.begin(), flags.end());
    r = RunProcess(argv);
    EXPECT_EQ(r.exit_code, 2) << flags[0] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr(message)) << flags[0];
  }

  a->Signal(SIGTERM);
  EXPECT_EQ(a->Wait(), 0);
}

}  // namespace
}  // namespace cmd
}  // namespace mesh
