#include "tests/fuzz/fuzz_util.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fdpass/socket.h"
#include "testing/fd_count.h"

namespace shmesh_fuzz {

uint8_t FuzzInput::U8() {
  if (empty()) return 0;
  return data_[pos_++];
}

uint16_t FuzzInput::U16() { return static_cast<uint16_t>(U8() | (U8() << 8)); }

uint32_t FuzzInput::U32() { return U16() | (uint32_t{U16()} << 16); }

uint64_t FuzzInput::U64() { return U32() | (uint64_t{U32()} << 32); }

absl::string_view FuzzInput::Bytes(size_t n) {
  const size_t take = n < remaining() ? n : remaining();
  absl::string_view out(reinterpret_cast<const char*>(data_ + pos_), take);
  pos_ += take;
  return out;
}

void FuzzFail(const char* file, int line, const std::string& what) {
  std::fprintf(stderr, "fuzz property violated at %s:%d: %s\n", file, line, what.c_str());
  std::fflush(stderr);
  std::abort();
}

bool Verbose() {
  static const bool verbose = std::getenv("SHMESH_FUZZ_VERBOSE") != nullptr;
  return verbose;
}

bool Strict() {
  static const bool strict = std::getenv("SHMESH_FUZZ_STRICT") != nullptr;
  return strict;
}

size_t OpenFds() {
  const size_t n = shmesh::testing::CountOpenFds();
  FUZZ_CHECK(n != std::numeric_limits<size_t>::max(), "cannot read /proc/self/fd");
  return n;
}

base::UniqueFd DupOrDie(int fd) {
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  FUZZ_CHECK(copy >= 0, absl::StrCat("fcntl(F_DUPFD_CLOEXEC, ", fd, "): ", std::strerror(errno)));
  return base::UniqueFd(copy);
}

absl::Status SendRaw(int sock, absl::string_view bytes, absl::Span<const int> fds) {
  constexpr size_t kMaxFds = 64;
  if (fds.size() > kMaxFds) return absl::InvalidArgumentError("SendRaw: too many fds");
  iovec iov;
  iov.iov_base = const_cast<char*>(bytes.data());
  iov.iov_len = bytes.size();
  alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
  std::memset(control, 0, sizeof(control));
  msghdr m = {};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (!fds.empty()) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return absl::ErrnoToStatus(errno, "SendRaw: sendmsg");
  return absl::OkStatus();
}

void RingDoorbell(int fd, uint64_t n) {
  char bytes[256];
  std::memset(bytes, 'r', sizeof(bytes));
  const size_t len = n == 0 ? 1 : (n < sizeof(bytes) ? n : sizeof(bytes));
  ssize_t r;
  do {
    r = ::send(fd, bytes, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (r < 0 && errno == EINTR);
}

size_t FillDoorbell(int fd) {
  static const std::string chunk(64 * 1024, 'f');
  size_t total = 0;
  for (size_t len = chunk.size(); len > 0;) {
    const ssize_t r = ::send(fd, chunk.data(), len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r > 0) {
      total += static_cast<size_t>(r);
    } else if (r < 0 && errno == EINTR) {
      continue;
    } else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      len /= 2;  // 0 after a one-byte send failed: full
    } else {
      break;  // the other end is gone, or this is not a socket
    }
  }
  return total;
}

void ClearNonblock(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
}

}  // namespace shmesh_fuzz
