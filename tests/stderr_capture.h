// Test-only: redirects this process's stderr (where nodes log) to a file
// while it lives; Text() reads what was written so far. On destruction
// stderr is restored and the captured text copied to it (so it stays in
// the test log). Used by hostile_frames_test and hostile_pool_test.
#ifndef SHMESH_TESTS_STDERR_CAPTURE_H_
#define SHMESH_TESTS_STDERR_CAPTURE_H_

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

namespace shmesh {
namespace testing {

class StderrCapture {
 public:
  explicit StderrCapture(const std::string& path) : path_(path) {
    std::fflush(stderr);
    saved_ = ::dup(STDERR_FILENO);
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::dup2(fd, STDERR_FILENO);
      ::close(fd);
    }
  }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;
  ~StderrCapture() {
    std::fflush(stderr);
    if (saved_ >= 0) {
      ::dup2(saved_, STDERR_FILENO);
      ::close(saved_);
    }
    std::fputs(Text().c_str(), stderr);
  }
  std::string Text() const {
    std::fflush(stderr);
    std::ifstream in(path_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  std::string path_;
  int saved_ = -1;  // the real stderr, owned
};

}  // namespace testing
}  // namespace shmesh

#endif  // SHMESH_TESTS_STDERR_CAPTURE_H_
