#include "mesh/cmd/flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(std::string, test_name, "dflt", "A string flag.");
ABSL_FLAG(int32_t, test_count, 3, "An int flag.\nSecond line.");
ABSL_FLAG(bool, test_on, false, "A bool flag.");

namespace mesh {
namespace cmd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<ParsedArgs> Parse(std::vector<std::string> args) {
  std::vector<char*> argv;
  static std::string prog = "prog";
  argv.push_back(prog.data());
  for (std::string& a : args) argv.push_back(a.data());
  return ParseArgs(static_cast<int>(argv.size()), argv.data());
}

class FlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::SetFlag(&FLAGS_test_name, "dflt");
    absl::SetFlag(&FLAGS_test_count, 3);
    absl::SetFlag(&FLAGS_test_on, false);
  }
};

TEST_F(FlagsTest, SetsFlagsInEverySpelling) {
  absl::StatusOr<ParsedArgs> p =
      Parse({"cmd", "--test_name=x", "-test_count", "7", "--test_on", "tail"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "x");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 7);
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_on));
  EXPECT_THAT(p->positional, ElementsAre("cmd", "tail"));
  EXPECT_EQ(p->given.count("test_name"), 1u);
  EXPECT_EQ(p->given.count("test_on"), 1u);
  EXPECT_FALSE(p->help);

  p = Parse({"--notest_on", "--", "--test_name=y"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_on));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "x");
  EXPECT_THAT(p->positional, ElementsAre("--test_name=y"));
}

TEST_F(FlagsTest, Help) {
  EXPECT_TRUE(Parse({"--help"})->help);
  EXPECT_TRUE(Parse({"-h"})->help);
  EXPECT_FALSE(Parse({"-h"})->version);
  EXPECT_TRUE(Parse({"--version"})->version);
  EXPECT_TRUE(Parse({"-version"})->version);
  EXPECT_FALSE(Parse({"--version"})->help);
}

TEST_F(FlagsTest, Errors) {
  absl::StatusOr<ParsedArgs> p = Parse({"--nope=1"});
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr("unknown flag --nope"));

  p = Parse({"--test_count=many"});
  EXPECT_THAT(p.status().message(), HasSubstr("--test_count"));

  p = Parse({"--test_count"});
  EXPECT_THAT(p.status().message(), HasSubstr("needs a value"));

  // Abseil's own flags are not settable through the tools.
  p = Parse({"--flagfile=/etc/passwd"});
  EXPECT_THAT(p.status().message(), HasSubstr("unknown flag --flagfile"));
}

TEST_F(FlagsTest, HelpListsThisFilesFlags) {
  const std::string help = FlagsHelp("mesh/cmd/flags_test.cc");
  EXPECT_THAT(help, HasSubstr("  --test_count=3\n      An int flag.\n      "
                              "Second line.\n"));
  EXPECT_THAT(help, HasSubstr("  --test_name=\"dflt\"\n"));
  EXPECT_LT(help.find("test_count"), help.find("test_name"));
}

}  // namespace
}  // namespace cmd
}  // namespace mesh
