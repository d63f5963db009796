// UniqueFd: the one owner type for file descriptors in shmesh.
//
// A UniqueFd owns at most one descriptor and closes it when destroyed or
// reset. It is move-only: there is no copy and no "borrowed" mode; code that
// only uses a descriptor takes a plain `int` documented as borrowed.
//
// Thread contract: thread-compatible (like a std::unique_ptr). Distinct
// objects may be used from distinct threads without synchronization.
#ifndef SHMESH_BASE_UNIQUE_FD_H_
#define SHMESH_BASE_UNIQUE_FD_H_

namespace base {

class UniqueFd {
 public:
  // An empty owner (get() == -1).
  UniqueFd() = default;
  // Takes ownership of `fd`, which must be -1 or an open descriptor that
  // nothing else will close.
  explicit UniqueFd(int fd) : fd_(fd) {}

  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  ~UniqueFd() { reset(); }

  // The descriptor, still owned by this object; -1 if empty.
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing; the caller now owns the result.
  [[nodiscard]] int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  // Closes the owned descriptor (if any) and takes ownership of `fd`.
  // Resetting to the descriptor already held is a programmer bug and aborts:
  // it would close a descriptor the caller still believes is open.
  // close() is never retried on EINTR: on Linux the descriptor is gone
  // either way, and a retry could close one another thread just opened.
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

}  // namespace base

#endif  // SHMESH_BASE_UNIQUE_FD_H_
