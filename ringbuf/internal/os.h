// The OS layer of ringbuf: the only code in ringbuf that makes syscalls.
//
// Each wrapper makes one call (or a tight pair), retries EINTR where that is
// safe, reads errno immediately and turns it into an absl::Status with
// absl::ErrnoToStatus and a message naming the operation and the object.
// Nothing above this file reads errno. Descriptors come back as
// base::UniqueFd owners; `int fd` parameters are borrowed.
//
// Thread contract: every function is thread-safe (the kernel serializes).
#ifndef SHMESH_RINGBUF_INTERNAL_OS_H_
#define SHMESH_RINGBUF_INTERNAL_OS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"

namespace ringbuf {
namespace os_internal {

// memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING), adding MFD_NOEXEC_SEAL
// where the kernel knows it (6.3+). The caller owns the result.
absl::StatusOr<base::UniqueFd> MemfdCreate(const std::string& name);

// ftruncate(fd, size); retries EINTR.
absl::Status Ftruncate(int fd, uint64_t size);

// fcntl(F_ADD_SEALS) / fcntl(F_GET_SEALS). GetSeals fails with
// INVALID_ARGUMENT (EINVAL) on anything that is not a shmem/memfd file.
absl::Status AddSeals(int fd, int seals);
absl::StatusOr<int> GetSeals(int fd);

struct FileInfo {
  bool regular = false;  // S_ISREG(st_mode)
  uint64_t size = 0;     // st_size
};
// fstat(fd).
absl::StatusOr<FileInfo> Fstat(int fd);

// mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0). The caller
// owns the mapping and releases it with Unmap.
// `populate` adds MAP_POPULATE (fault every page in now).
absl::StatusOr<uint8_t*> MapShared(int fd, size_t size, bool populate = false);
// The same, PROT_READ only.
absl::StatusOr<uint8_t*> MapSharedReadOnly(int fd, size_t size);
// munmap(addr, size). Failure is a programmer bug (bad range); it is
// reported on stderr and otherwise ignored, since destructors call it.
void Unmap(uint8_t* addr, size_t size);

// Doorbells. A ring's doorbell is one connected AF_UNIX SOCK_STREAM socket
// pair: the producer holds one end and the consumer the other, and each
// wakes the other by sending a byte from its own end (the producer after
// publishing data, the consumer after making room). A doorbell end that
// arrived with SCM_RIGHTS shares its open file description with the peer,
// which can change its flags (O_NONBLOCK) or fill its buffers at any time,
// so these wrappers never depend on the descriptor's flags: every send and
// receive passes MSG_DONTWAIT (and MSG_NOSIGNAL), which no peer can switch
// off. Nothing here can block.

struct DoorbellPair {
  base::UniqueFd producer_end;
  base::UniqueFd consumer_end;
};
// socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK). The caller
// owns both ends.
absl::StatusOr<DoorbellPair> DoorbellPairCreate();

// Checks that `fd` (borrowed) is an AF_UNIX SOCK_STREAM socket, the only
// kind of doorbell end Attach takes. INVALID_ARGUMENT when it is something
// else (the message names what it is).
absl::Status CheckDoorbell(int fd);

// Wakes the other end: sends one byte with MSG_DONTWAIT | MSG_NOSIGNAL.
// A full buffer (EAGAIN) is success: the doorbell is already ringing and
// unread. So is an end the peer closed (EPIPE, ECONNRESET, ENOTCONN):
// nobody is left to wake, and the peer's departure is seen elsewhere.
absl::Status DoorbellRing(int fd);

// Consumes the rings waiting on our end (a bounded number of MSG_DONTWAIT
// reads, so a peer that keeps ringing cannot hold us here). OK when the end
// is drained or still has bytes after the bound (it stays readable);
// UNAVAILABLE when the other end was closed (its process exited, or it hung
// up its doorbell): the end then stays readable for ever and must not be
// slept on again.
absl::Status DoorbellDrain(int fd);

// ppoll() for POLLIN on `fd` for at most `timeout` (InfiniteDuration: no
// limit; <= 0: just check). True if readable, false on timeout or EINTR (the
// caller recomputes its deadline and calls again).
absl::StatusOr<bool> WaitReadable(int fd, absl::Duration timeout);

// 1 + the CPU the calling thread runs on (sched_getcpu; glibc reads it from
// rseq or the vDSO, no syscall), or 0 if unknown. A hint: the thread may
// migrate right after.
uint32_t CpuHint();

// dup(fd) with FD_CLOEXEC set (F_DUPFD_CLOEXEC). The caller owns the result.
absl::StatusOr<base::UniqueFd> Dup(int fd);

}  // namespace os_internal
}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_INTERNAL_OS_H_
