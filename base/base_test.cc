// Tests of the OS layer: UniqueFd ownership, eventfd signal/drain, and epoll
// readiness. Every suite checks that /proc/self/fd is unchanged afterwards.
#include <dirent.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/epoll.h"
#include "base/eventfd.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace base {
namespace {

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) != -1; }

bool IsCloexec(int fd) {
  const int flags = ::fcntl(fd, F_GETFD);
  return flags != -1 && (flags & FD_CLOEXEC) != 0;
}

bool IsNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags != -1 && (flags & O_NONBLOCK) != 0;
}

// Entries of /proc/self/fd, not counting the one opendir uses.
size_t CountFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) std::abort();
  size_t n = 0;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  ::closedir(dir);
  return n - 1;
}

std::pair<UniqueFd, UniqueFd> MakePipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) std::abort();
  return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

// True if `fd` is readable now (epoll_wait with a zero timeout).
bool ReadableNow(Epoll& epoll) {
  epoll_event ev[4];
  return epoll.Wait(ev, 4, 0) > 0;
}

// Asserts that no test leaks a descriptor.
class FdLeakTest : public ::testing::Test {
 protected:
  void SetUp() override { baseline_ = CountFds(); }
  void TearDown() override { EXPECT_EQ(CountFds(), baseline_) << "descriptor leak"; }

 private:
  size_t baseline_ = 0;
};

// ---------------------------------------------------------------- UniqueFd

using UniqueFdTest = FdLeakTest;

TEST_F(UniqueFdTest, DefaultIsEmpty) {
  UniqueFd fd;
  EXPECT_FALSE(fd.valid());
  EXPECT_FALSE(fd);
  EXPECT_EQ(fd.get(), -1);
  fd.reset();  // Resetting an empty owner to empty is fine.
}

TEST_F(UniqueFdTest, ClosesOnDestruction) {
  auto [r, w] = MakePipe();
  int raw = r.get();
  {
    UniqueFd owner = std::move(r);
    EXPECT_TRUE(IsOpen(raw));
  }
  EXPECT_FALSE(IsOpen(raw));
}

TEST_F(UniqueFdTest, MoveTransfersOwnership) {
  auto [r, w] = MakePipe();
  int raw = r.get();
  UniqueFd moved(std::move(r));
  EXPECT_FALSE(r.valid());  // NOLINT(bugprone-use-after-move): tested.
  EXPECT_EQ(moved.get(), raw);

  UniqueFd assigned;
  assigned = std::move(moved);
  EXPECT_FALSE(moved.valid());  // NOLINT(bugprone-use-after-move): tested.
  EXPECT_EQ(assigned.get(), raw);
  EXPECT_TRUE(IsOpen(raw));
}

TEST_F(UniqueFdTest, MoveAssignClosesPrevious) {
  auto [r, w] = MakePipe();
  int old_raw = r.get();
  r = std::move(w);
  EXPECT_FALSE(IsOpen(old_raw));
  EXPECT_TRUE(r.valid());
}

TEST_F(UniqueFdTest, ReleaseGivesUpOwnership) {
  auto [r, w] = MakePipe();
  int raw = r.release();
  EXPECT_FALSE(r.valid());
  EXPECT_TRUE(IsOpen(raw));
  ASSERT_EQ(::close(raw), 0);
}

TEST_F(UniqueFdTest, ResetClosesOldAndTakesNew) {
  auto [r, w] = MakePipe();
  int old_raw = r.get();
  int fresh = ::dup(w.get());
  ASSERT_GE(fresh, 0);
  r.reset(fresh);
  EXPECT_FALSE(IsOpen(old_raw));
  EXPECT_EQ(r.get(), fresh);
  r.reset();
  EXPECT_FALSE(IsOpen(fresh));
  EXPECT_FALSE(r.valid());
}

TEST_F(UniqueFdTest, ResetToHeldDescriptorDies) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_DEATH(
      {
        UniqueFd fd(::dup(STDERR_FILENO));
        fd.reset(fd.get());
      },
      "already owns this fd");
}

// ----------------------------------------------------------- status macros

absl::Status FailIf(bool fail) { return fail ? absl::InternalError("boom") : absl::OkStatus(); }
absl::StatusOr<int> ValueOr(bool fail) {
  if (fail) return absl::NotFoundError("none");
  return 7;
}
absl::StatusOr<int> Chain(bool fail_first, bool fail_second) {
  SHMESH_RETURN_IF_ERROR(FailIf(fail_first));
  SHMESH_ASSIGN_OR_RETURN(int v, ValueOr(fail_second));
  return v + 1;
}

TEST(StatusMacrosTest, PropagateErrorsAndValues) {
  EXPECT_EQ(*Chain(false, false), 8);
  EXPECT_EQ(Chain(true, false).status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Chain(false, true).status().code(), absl::StatusCode::kNotFound);
}

// ------------------------------------------------------------------ eventfd

using EventFdTest = FdLeakTest;

TEST_F(EventFdTest, IsNonBlockingAndCloexec) {
  absl::StatusOr<UniqueFd> fd = MakeEventFd();
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(IsCloexec(fd->get()));
  EXPECT_TRUE(IsNonBlocking(fd->get()));
}

TEST_F(EventFdTest, SignalMakesReadableAndDrainClears) {
  absl::StatusOr<UniqueFd> fd = MakeEventFd();
  ASSERT_TRUE(fd.ok()) << fd.status();
  absl::StatusOr<Epoll> epoll = Epoll::Create();
  ASSERT_TRUE(epoll.ok()) << epoll.status();
  ASSERT_TRUE(epoll->Add(fd->get(), EPOLLIN, 42).ok());

  EXPECT_FALSE(ReadableNow(*epoll));
  // Draining an empty counter is not an error.
  EXPECT_TRUE(DrainEventFd(fd->get()).ok());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(SignalEventFd(fd->get()).ok());
  epoll_event ev[2];
  ASSERT_EQ(epoll->Wait(ev, 2, 0), 1);
  EXPECT_EQ(ev[0].data.u64, 42u);
  EXPECT_TRUE(ev[0].events & EPOLLIN);
  // One drain zeroes the counter, however many signals came before.
  EXPECT_TRUE(DrainEventFd(fd->get()).ok());
  EXPECT_FALSE(ReadableNow(*epoll));
  epoll->Remove(fd->get());
}

TEST_F(EventFdTest, SignalOnSaturatedCounterIsOk) {
  absl::StatusOr<UniqueFd> fd = MakeEventFd();
  ASSERT_TRUE(fd.ok()) << fd.status();
  // Bring the counter to its maximum, 0xfffffffffffffffe.
  const uint64_t max = UINT64_MAX - 1;
  ASSERT_EQ(::write(fd->get(), &max, sizeof(max)), static_cast<ssize_t>(sizeof(max)));
  // The write would block (EAGAIN): readable already, so OK.
  EXPECT_TRUE(SignalEventFd(fd->get()).ok());
  EXPECT_TRUE(DrainEventFd(fd->get()).ok());
}

TEST_F(EventFdTest, ErrorsOnWhatIsNotAnOpenEventfd) {
  absl::StatusOr<UniqueFd> fd = MakeEventFd();
  ASSERT_TRUE(fd.ok()) << fd.status();
  const int closed = fd->get();
  fd->reset();
  absl::Status s = SignalEventFd(closed);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("cannot signal eventfd"));
  EXPECT_FALSE(DrainEventFd(closed).ok());
}

TEST_F(EventFdTest, WakesAThreadWaitingInEpoll) {
  absl::StatusOr<UniqueFd> fd = MakeEventFd();
  ASSERT_TRUE(fd.ok()) << fd.status();
  absl::StatusOr<Epoll> epoll = Epoll::Create();
  ASSERT_TRUE(epoll.ok()) << epoll.status();
  ASSERT_TRUE(epoll->Add(fd->get(), EPOLLIN, 1).ok());
  int woken = -1;
  std::thread waiter([&] {
    epoll_event ev[1];
    woken = epoll->Wait(ev, 1, 10000);
  });
  ASSERT_TRUE(SignalEventFd(fd->get()).ok());
  waiter.join();
  EXPECT_EQ(woken, 1);
}

// -------------------------------------------------------------------- epoll

using EpollTest = FdLeakTest;

TEST_F(EpollTest, IsCloexecAndTimesOut) {
  absl::StatusOr<Epoll> epoll = Epoll::Create();
  ASSERT_TRUE(epoll.ok()) << epoll.status();
  EXPECT_TRUE(IsCloexec(epoll->fd()));
  epoll_event ev[1];
  EXPECT_EQ(epoll->Wait(ev, 1, 10), 0);
}

TEST_F(EpollTest, ReportsEachReadyDescriptorWithItsTag) {
  absl::StatusOr<Epoll> epoll = Epoll::Create();
  ASSERT_TRUE(epoll.ok()) << epoll.status();
  auto [r1, w1] = MakePipe();
  auto [r2, w2] = MakePipe();
  ASSERT_TRUE(epoll->Add(r1.get(), EPOLLIN, 1).ok());
  ASSERT_TRUE(epoll->Add(r2.get(), EPOLLIN, 2).ok());
  ASSERT_EQ(::write(w2.get(), "x", 1), 1);
  epoll_event ev[4];
  ASSERT_EQ(epoll->Wait(ev, 4, 0), 1);
  EXPECT_EQ(ev[0].data.u64, 2u);
  // A closed writer makes the reader report EPOLLHUP.
  w1.reset();
  ASSERT_EQ(epoll->Wait(ev, 4, 0), 2);
}

TEST_F(EpollTest, AddTwiceFailsAndRemoveIsIdempotent) {
  absl::StatusOr<Epoll> epoll = Epoll::Create();
  ASSERT_TRUE(epoll.ok()) << epoll.status();
  auto [r, w] = MakePipe();
  ASSERT_TRUE(epoll->Add(r.get(), EPOLLIN, 1).ok());
  EXPECT_EQ(epoll->Add(r.get(), EPOLLIN, 1).code(), absl::StatusCode::kAlreadyExists);
  epoll->Remove(r.get());
  epoll->Remove(r.get());  // not watched any more: no error
  ASSERT_EQ(::write(w.get(), "x", 1), 1);
  EXPECT_FALSE(ReadableNow(*epoll));
}

TEST_F(EpollTest, MovedEpollKeepsItsDescriptor) {
  absl::StatusOr<Epoll> epoll = Epoll::Create();
  ASSERT_TRUE(epoll.ok()) << epoll.status();
  const int raw = epoll->fd();
  Epoll moved = std::move(*epoll);
  EXPECT_EQ(moved.fd(), raw);
  EXPECT_TRUE(IsOpen(raw));
}

}  // namespace
}  // namespace base
