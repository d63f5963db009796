// SharedRegion: a sealed memfd and its shared read-write mapping.
//
// This is the memory that a ring lives in. One process creates it (Create),
// passes the fd to a peer over a Unix socket, and the peer maps it (Map)
// after checking that the fd really is a memfd whose size can never change:
// a memfd sealed with F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, of exactly
// the expected size. Because the size is frozen, touching the mapping can
// never raise SIGBUS, whatever the peer does afterwards. F_SEAL_WRITE is not
// used (both sides write) and is refused if present (it would make a shared
// writable mapping impossible).
//
// Ownership: a SharedRegion owns its memfd (a base::UniqueFd) and its
// mapping; both are released by the destructor (munmap, then close). It is
// move-only. fd() and data() are borrowed views valid while the object lives.
//
// Thread contract: thread-compatible. The *contents* of data() are shared
// with other processes and are not protected by anything in this class.
#ifndef SHMESH_RINGBUF_REGION_H_
#define SHMESH_RINGBUF_REGION_H_

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"
#include "base/unique_fd.h"

namespace ringbuf {

class SharedRegion {
 public:
  // Creates a memfd named `debug_name` (shown in /proc/PID/maps; longer
  // names are truncated) of `size` bytes, zero-filled, close-on-exec,
  // sealed against shrinking, growing and further sealing, and maps it.
  // Errors: INVALID_ARGUMENT for size 0; the mapped errno of the failing
  // syscall (e.g. RESOURCE_EXHAUSTED for EMFILE) otherwise.
  // With `populate`, every page is allocated and mapped now (MAP_POPULATE:
  // the memory becomes resident at once, and writing it later takes no page
  // faults), for memory that will be written soon anyway.
  static absl::StatusOr<SharedRegion> Create(std::string_view debug_name, size_t size, bool populate = false);

  // The receiving side: takes ownership of `fd` (closed on every error
  // path) and maps it after verifying that it is a memfd (F_GET_SEALS works)
  // with seals F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, without
  // F_SEAL_WRITE / F_SEAL_FUTURE_WRITE, a regular file, and of exactly
  // `expected_size` bytes.
  // Errors: INVALID_ARGUMENT if the fd is not a memfd, not a regular file,
  // or has the wrong size (or expected_size is 0); FAILED_PRECONDITION if
  // the seals are wrong. The message names what was wrong.
  static absl::StatusOr<SharedRegion> Map(base::UniqueFd fd, size_t expected_size);

  // The same checks as Map, then a read-only shared mapping (PROT_READ),
  // after which `fd` is closed: the region owns only its mapping (fd()
  // returns -1). For memory another process writes and this one only
  // reads (pool segments). Writing to data() of such a region faults.
  static absl::StatusOr<SharedRegion> MapReadOnly(base::UniqueFd fd, size_t expected_size);

  // One writer, many readers that must not write (a broadcast ring): like
  // Create, and then sealed with F_SEAL_FUTURE_WRITE as well, so that this
  // mapping is the only one that can ever write. A process that receives
  // the fd can map it only read-only, and cannot mprotect that mapping
  // writable (the kernel refuses it for such a memfd).
  static absl::StatusOr<SharedRegion> CreateWriterOnly(std::string_view debug_name, size_t size);
  // The reading side of CreateWriterOnly: the checks of Map, except that
  // the memfd must carry F_SEAL_FUTURE_WRITE (and not F_SEAL_WRITE), then
  // a read-only mapping; `fd` is closed (fd() returns -1). A memfd without
  // F_SEAL_FUTURE_WRITE is refused (FAILED_PRECONDITION): another reader
  // could write it.
  static absl::StatusOr<SharedRegion> MapWriterOnly(base::UniqueFd fd, size_t expected_size);

  SharedRegion(SharedRegion&& other) noexcept;
  SharedRegion& operator=(SharedRegion&& other) noexcept;
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;
  ~SharedRegion();

  // The memfd, still owned by this object (borrowed; dup it to pass it on);
  // -1 for a region from MapReadOnly.
  int fd() const { return fd_.get(); }
  // The start of the mapping (page-aligned) and its length in bytes.
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  SharedRegion(base::UniqueFd fd, uint8_t* data, size_t size)
      : fd_(std::move(fd)), data_(data), size_(size) {}
  void Reset();

  base::UniqueFd fd_;
  uint8_t* data_ = nullptr;  // owned mapping of size_ bytes, or nullptr
  size_t size_ = 0;
};

}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_REGION_H_
