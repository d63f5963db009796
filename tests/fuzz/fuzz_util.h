// Helpers shared by the fuzz targets in tests/fuzz (testonly).
//
// FuzzInput turns the fuzzer's bytes into a stream of small integers and
// byte strings; past the end of the input every read returns zeros, so a
// target never has to check for truncated input and every input is valid.
// FUZZ_CHECK reports a broken property by aborting, which libFuzzer (and the
// replay driver, through the test's exit status) reports as a crash with the
// input saved. Test code may make syscalls directly (STYLE rule 6 covers the
// product); the ones the targets need to play a hostile peer are here.
//
// Thread contract: FuzzInput is thread-compatible; the free functions are
// thread-safe.
#ifndef SHMESH_TESTS_FUZZ_FUZZ_UTIL_H_
#define SHMESH_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"

namespace shmesh_fuzz {

// A cursor over one fuzz input. Integers are little-endian.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return pos_ >= size_; }
  size_t remaining() const { return empty() ? 0 : size_ - pos_; }

  uint8_t U8();
  uint16_t U16();
  uint32_t U32();
  uint64_t U64();
  // The next `n` bytes, or fewer at the end of the input (a view into it).
  absl::string_view Bytes(size_t n);
  // Everything that is left.
  absl::string_view Rest() { return Bytes(remaining()); }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Prints "fuzz property violated at FILE:LINE: WHAT" and aborts.
[[noreturn]] void FuzzFail(const char* file, int line, const std::string& what);

// Aborts (a crash for the fuzzer) unless `cond` holds. `what` is evaluated
// only on failure, so it may be an expensive absl::StrCat.
#define FUZZ_CHECK(cond, what)                                        \
  do {                                                                \
    if (!(cond)) ::shmesh_fuzz::FuzzFail(__FILE__, __LINE__, (what)); \
  } while (false)

// True if SHMESH_FUZZ_VERBOSE is set: the targets then narrate each input's
// outcome on stderr (for replaying one input by hand).
bool Verbose();

// True if SHMESH_FUZZ_STRICT is set: the targets then also enforce the
// properties that known, reported library bugs break (see README.md,
// "Findings"), so that their reproducers fail again.
bool Strict();

// Open descriptors of this process; aborts if /proc/self/fd is unreadable.
size_t OpenFds();

// dup(fd) with close-on-exec; aborts on failure (a test-environment bug).
base::UniqueFd DupOrDie(int fd);

// One raw sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT) of `bytes` plus `fds`
// (borrowed; the receiver gets duplicates). Unlike fdpass::SendMessage it
// sends what a hostile peer could: any number of descriptors (up to 64),
// payloads over the protocol's limit, and an empty message. Returns the
// errno as a status; never waits.
absl::Status SendRaw(int sock, absl::string_view bytes, absl::Span<const int> fds);

// Sends n (0: 1) bytes, at most 256, from doorbell end `fd` (borrowed) with
// MSG_DONTWAIT | MSG_NOSIGNAL: a doorbell rung by the peer. Errors (a full
// buffer, a closed other end) are ignored, as a peer's would be.
void RingDoorbell(int fd, uint64_t n);

// Sends from socket `fd` (borrowed) without waiting until its buffers are
// full (EAGAIN even for one byte) or it fails: a peer that rings and never
// reads. Returns the bytes sent.
size_t FillDoorbell(int fd);

// Clears O_NONBLOCK on the open file description behind `fd` (borrowed), as
// a peer holding any copy of it can. Errors are ignored.
void ClearNonblock(int fd);

// True when built with ThreadSanitizer: the targets then skip their racing
// writer threads, whose deliberate races with the victim's plain reads are
// exactly what a hostile peer does but what TSAN must report.
constexpr bool kUnderTsan =
#if defined(__SANITIZE_THREAD__)
    true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

}  // namespace shmesh_fuzz

#endif  // SHMESH_TESTS_FUZZ_FUZZ_UTIL_H_
