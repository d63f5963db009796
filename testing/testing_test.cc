#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>

#include "gtest/gtest.h"
#include "testing/fd_count.h"
#include "testing/temp_dir.h"

namespace shmesh {
namespace testing {
namespace {

TEST(ShortTempDirTest, IsCreatedShortAndRemovedWithItsContents) {
  std::string path;
  {
    ShortTempDir dir("tt-");
    ASSERT_TRUE(dir.ok());
    path = dir.path();
    EXPECT_EQ(path.rfind("/tmp/tt-", 0), 0u) << path;
    EXPECT_EQ(path.size(), std::string("/tmp/tt-XXXXXX").size());
    EXPECT_TRUE(std::filesystem::is_directory(path));
    std::filesystem::create_directory(dir.Sub("nested"));
    std::ofstream(dir.Sub("nested/file")) << "x";
    EXPECT_TRUE(std::filesystem::exists(path + "/nested/file"));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ShortTempDirTest, MovesOwnership) {
  ShortTempDir a("tt-");
  ASSERT_TRUE(a.ok());
  const std::string path = a.path();
  ShortTempDir b(std::move(a));
  EXPECT_FALSE(a.ok());  // NOLINT(bugprone-use-after-move): documented state.
  EXPECT_EQ(b.path(), path);
  {
    ShortTempDir c("tt-");
    const std::string other = c.path();
    c = std::move(b);
    EXPECT_FALSE(std::filesystem::exists(other)) << "the overwritten dir stays";
    EXPECT_TRUE(std::filesystem::exists(path));
  }
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(CountOpenFdsTest, SeesNewDescriptorsAndIsStable) {
  const size_t before = CountOpenFds();
  ASSERT_NE(before, static_cast<size_t>(-1));
  EXPECT_EQ(CountOpenFds(), before) << "counting leaks a descriptor";
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  EXPECT_EQ(CountOpenFds(), before + 2);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(CountOpenFds(), before);
  { ShortTempDir dir("tt-"); }
  EXPECT_EQ(CountOpenFds(), before) << "ShortTempDir leaks a descriptor";
}

}  // namespace
}  // namespace testing
}  // namespace shmesh
