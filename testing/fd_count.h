// Descriptor counting for the leak checks of STYLE rule 13. Test-only.
//
// Thread contract: thread-safe (but a count taken while other threads open
// or close descriptors is only a snapshot).
#ifndef SHMESH_TESTING_FD_COUNT_H_
#define SHMESH_TESTING_FD_COUNT_H_

#include <cstddef>

namespace shmesh {
namespace testing {

// The number of open descriptors of this process: entries of /proc/self/fd,
// minus the one used to read it. If /proc/self/fd cannot be read, returns
// SIZE_MAX so that a leak check fails loudly.
size_t CountOpenFds();

}  // namespace testing
}  // namespace shmesh

#endif  // SHMESH_TESTING_FD_COUNT_H_
