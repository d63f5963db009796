#include "ringbuf/region.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "ringbuf/internal/test_util.h"
#include "ringbuf/ring.h"

namespace ringbuf {
namespace {

using ::ringbuf::testing_internal::CountOpenFds;
using ::ringbuf::testing_internal::DupOrDie;
using ::ringbuf::testing_internal::RunInChild;
using ::testing::HasSubstr;

constexpr int kAllSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;

// A raw memfd of `size` bytes with `seals`, built without SharedRegion.
base::UniqueFd RawMemfd(size_t size, int seals) {
  const int fd = ::memfd_create("region_test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  EXPECT_GE(fd, 0) << std::strerror(errno);
  EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0) << std::strerror(errno);
  if (seals != 0) {
    EXPECT_EQ(::fcntl(fd, F_ADD_SEALS, seals), 0) << std::strerror(errno);
  }
  return base::UniqueFd(fd);
}

class SharedRegionTest : public ::testing::Test {
 protected:
  void SetUp() override { fds_before_ = CountOpenFds(); }
  void TearDown() override { EXPECT_EQ(CountOpenFds(), fds_before_) << "fd leak"; }
  int fds_before_ = 0;
};

TEST_F(SharedRegionTest, CreateMakesSealedCloexecZeroedMemfd) {
  absl::StatusOr<SharedRegion> region = SharedRegion::Create("region_test", 10000);
  ASSERT_TRUE(region.ok()) << region.status();
  EXPECT_EQ(region->size(), 10000u);
  ASSERT_NE(region->data(), nullptr);
  for (size_t i = 0; i < region->size(); ++i) ASSERT_EQ(region->data()[i], 0) << i;
  const int seals = ::fcntl(region->fd(), F_GET_SEALS);
  EXPECT_EQ(seals & kAllSeals, kAllSeals);
  EXPECT_EQ(seals & F_SEAL_WRITE, 0);
  EXPECT_NE(::fcntl(region->fd(), F_GETFD) & FD_CLOEXEC, 0);
  // The seals hold: the size cannot change.
  EXPECT_NE(::ftruncate(region->fd(), 20000), 0);
  EXPECT_NE(::ftruncate(region->fd(), 100), 0);
}

TEST_F(SharedRegionTest, CreateRejectsZeroSize) {
  EXPECT_EQ(SharedRegion::Create("x", 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(SharedRegionTest, CreateMapRoundTripAcrossFork) {
  constexpr size_t kSize = 3 * 4096 + 123;
  absl::StatusOr<SharedRegion> region = SharedRegion::Create("round_trip", kSize);
  ASSERT_TRUE(region.ok()) << region.status();
  for (size_t i = 0; i < kSize / 2; ++i) region->data()[i] = static_cast<uint8_t>(i * 7);
  const int fd = region->fd();
  const int code = RunInChild([fd] {
    // The child maps its own dup of the fd, as a peer that received it
    // over a socket would, and answers in the second half.
    absl::StatusOr<SharedRegion> mapped = SharedRegion::Map(DupOrDie(fd), kSize);
    if (!mapped.ok()) return 10;
    for (size_t i = 0; i < kSize / 2; ++i) {
      if (mapped->data()[i] != static_cast<uint8_t>(i * 7)) return 11;
    }
    for (size_t i = kSize / 2; i < kSize; ++i) mapped->data()[i] = static_cast<uint8_t>(i * 3);
    return 0;
  });
  ASSERT_EQ(code, 0);
  for (size_t i = kSize / 2; i < kSize; ++i) {
    ASSERT_EQ(region->data()[i], static_cast<uint8_t>(i * 3)) << i;
  }
}

TEST_F(SharedRegionTest, MapInSameProcessSharesMemory) {
  absl::StatusOr<SharedRegion> a = SharedRegion::Create("two_maps", 4096);
  ASSERT_TRUE(a.ok()) << a.status();
  absl::StatusOr<SharedRegion> b = SharedRegion::Map(DupOrDie(a->fd()), 4096);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_NE(a->data(), b->data());
  a->data()[100] = 42;
  EXPECT_EQ(b->data()[100], 42);
}

TEST_F(SharedRegionTest, MoveTransfersOwnership) {
  absl::StatusOr<SharedRegion> a = SharedRegion::Create("move", 4096);
  ASSERT_TRUE(a.ok());
  const int fd = a->fd();
  uint8_t* data = a->data();
  SharedRegion b = std::move(*a);
  EXPECT_EQ(b.fd(), fd);
  EXPECT_EQ(b.data(), data);
  absl::StatusOr<SharedRegion> c = SharedRegion::Create("move2", 8192);
  ASSERT_TRUE(c.ok());
  b = std::move(*c);  // unmaps and closes the first region
  EXPECT_EQ(b.size(), 8192u);
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // closed
}

TEST_F(SharedRegionTest, MapRefusesPipe) {
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  base::UniqueFd write_end(p[1]);
  absl::StatusOr<SharedRegion> r = SharedRegion::Map(base::UniqueFd(p[0]), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("not a memfd"));
}

TEST_F(SharedRegionTest, MapRefusesSocket) {
  int s[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, s), 0);
  base::UniqueFd other(s[1]);
  absl::StatusOr<SharedRegion> r = SharedRegion::Map(base::UniqueFd(s[0]), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("not a memfd"));
}

TEST_F(SharedRegionTest, MapRefusesDevZero) {
  const int fd = ::open("/dev/zero", O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  absl::StatusOr<SharedRegion> r = SharedRegion::Map(base::UniqueFd(fd), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("not a memfd"));
}

TEST_F(SharedRegionTest, MapRefusesRegularFile) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(dir != nullptr ? dir : "/tmp", "/region_test_file");
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::unlink(path.c_str());
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  absl::StatusOr<SharedRegion> r = SharedRegion::Map(base::UniqueFd(fd), 4096);
  EXPECT_FALSE(r.ok());
  // Disk files have no seals (EINVAL); a tmpfs file reports only F_SEAL_SEAL.
  EXPECT_TRUE(r.status().code() == absl::StatusCode::kInvalidArgument ||
              r.status().code() == absl::StatusCode::kFailedPrecondition)
      << r.status();
}

TEST_F(SharedRegionTest, MapRefusesUnsealedMemfd) {
  absl::StatusOr<SharedRegion> r = SharedRegion::Map(RawMemfd(4096, 0), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("F_SEAL_SHRINK"));
  EXPECT_THAT(r.status().message(), HasSubstr("F_SEAL_GROW"));
}

TEST_F(SharedRegionTest, MapRefusesMemfdWithoutSealSeal) {
  absl::StatusOr<SharedRegion> r =
      SharedRegion::Map(RawMemfd(4096, F_SEAL_SHRINK | F_SEAL_GROW), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("lacks seals F_SEAL_SEAL"));
}

TEST_F(SharedRegionTest, MapRefusesMemfdThatCanGrow) {
  absl::StatusOr<SharedRegion> r =
      SharedRegion::Map(RawMemfd(4096, F_SEAL_SHRINK | F_SEAL_SEAL), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("F_SEAL_GROW"));
}

TEST_F(SharedRegionTest, MapRefusesSealedMemfdOfWrongSize) {
  absl::StatusOr<SharedRegion> r = SharedRegion::Map(RawMemfd(4096, kAllSeals), 8192);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("has 4096 bytes, expected 8192"));
}

TEST_F(SharedRegionTest, MapRefusesWriteSealedMemfd) {
  absl::StatusOr<SharedRegion> r =
      SharedRegion::Map(RawMemfd(4096, kAllSeals | F_SEAL_WRITE), 4096);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("write-sealed"));
}

TEST_F(SharedRegionTest, MapRefusesBadArguments) {
  EXPECT_EQ(SharedRegion::Map(base::UniqueFd(), 4096).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SharedRegion::Map(RawMemfd(4096, kAllSeals), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Under a tight RLIMIT_NOFILE, creation fails cleanly, with a status and
// without leaking the descriptors it did get.
TEST_F(SharedRegionTest, LowFdLimitFailsCleanly) {
  const int code = RunInChild([] {
    const int open_now = CountOpenFds();
    // Room for exactly one more fd: a region fits, a ring (3 fds) does not.
    // Only fd numbers below the limit can be allocated, and every number
    // below the lowest free one is taken.
    const int lowest_free = ::dup(0);
    if (lowest_free < 0) return 9;
    ::close(lowest_free);
    struct rlimit limit;
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 10;
    limit.rlim_cur = static_cast<rlim_t>(lowest_free + 1);
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) return 11;
    {
      absl::StatusOr<SharedRegion> region = SharedRegion::Create("low_limit", 4096);
      if (!region.ok()) return 12;
      absl::StatusOr<SharedRegion> second = SharedRegion::Create("low_limit2", 4096);
      if (second.ok()) return 13;
      if (second.status().code() != absl::StatusCode::kResourceExhausted) return 14;
    }
    absl::StatusOr<Ring> ring = Ring::Create(4096);
    if (ring.ok()) return 15;
    if (ring.status().code() != absl::StatusCode::kResourceExhausted) return 16;
    if (CountOpenFds() != open_now) return 17;
    return 0;
  });
  EXPECT_EQ(code, 0);
}

}  // namespace
}  // namespace ringbuf
