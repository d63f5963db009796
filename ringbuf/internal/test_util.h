// Helpers shared by the ringbuf tests (testonly). Test code may make
// syscalls directly; these keep the repetitive ones in one place.
#ifndef SHMESH_RINGBUF_INTERNAL_TEST_UTIL_H_
#define SHMESH_RINGBUF_INTERNAL_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"

namespace ringbuf {
namespace testing_internal {

// shmesh::testing::CountOpenFds as an int; aborts if /proc/self/fd cannot be
// read.
int CountOpenFds();

// dup(fd) with close-on-exec; aborts on failure (tests only).
base::UniqueFd DupOrDie(int fd);

// Maps `ring`'s memfd a second time and attaches a second Ring to it (own
// mapping, a dup of `ring`'s doorbell end for `end`), as a peer process
// would; the result is used from `end` only.
absl::StatusOr<Ring> AttachSecondMapping(const Ring& ring, RingEnd end = RingEnd::kConsumer,
                                         const WaitOptions& options = WaitOptions());

// Maps `ring`'s memfd a second time, raw, to read or corrupt the header and
// frames as a hostile peer would.
SharedRegion MapRawOrDie(const Ring& ring);

// Forks; the child runs `body` and _exit()s with its return value (no
// destructors, no atexit handlers run in the child). Returns the pid.
pid_t ForkChild(const std::function<int()>& body);

// Waits for `pid`; returns its exit code, or 128 + signal if it was killed,
// or -1 if waitpid failed.
int WaitChild(pid_t pid);

// ForkChild + WaitChild.
int RunInChild(const std::function<int()>& body);

// True when built with a sanitizer (tests scale their iteration counts).
constexpr bool kUnderSanitizer =
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
    true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
    true;
#else
    false;
#endif
#else
    false;
#endif

constexpr bool kUnderTsan =
#if defined(__SANITIZE_THREAD__)
    true;
#else
    false;
#endif

// 64-bit FNV-1a.
uint64_t Fnv1a(const uint8_t* data, size_t len, uint64_t hash = 0xcbf29ce484222325ULL);

}  // namespace testing_internal
}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_INTERNAL_TEST_UTIL_H_
