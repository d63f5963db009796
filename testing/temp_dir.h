// A short temporary directory for tests and benchmarks. Test-only.
//
// Unix socket paths must fit in sockaddr_un::sun_path (108 bytes with the
// NUL, so at most 107), and Bazel's TEST_TMPDIR is usually longer than
// that allows, so tests put their sockets in a directory made here,
// mkdtemp("/tmp/<prefix>XXXXXX"): keep `prefix` short.
//
// Thread contract: thread-compatible.
#ifndef SHMESH_TESTING_TEMP_DIR_H_
#define SHMESH_TESTING_TEMP_DIR_H_

#include <string>

namespace shmesh {
namespace testing {

// Makes /tmp/<prefix>XXXXXX (mode 0700) on construction and removes it and
// everything in it (std::filesystem::remove_all) on destruction. Move-only;
// a moved-from object owns nothing. If mkdtemp fails, path() is "" (and ok()
// false): tests ASSERT_TRUE(dir.ok()).
class ShortTempDir {
 public:
  explicit ShortTempDir(const std::string& prefix = "shmesh-");
  ~ShortTempDir();
  ShortTempDir(ShortTempDir&& other) noexcept;
  ShortTempDir& operator=(ShortTempDir&& other) noexcept;
  ShortTempDir(const ShortTempDir&) = delete;
  ShortTempDir& operator=(const ShortTempDir&) = delete;

  bool ok() const { return !path_.empty(); }
  // The directory, without a trailing slash.
  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  void Remove();
  std::string path_;
};

}  // namespace testing
}  // namespace shmesh

#endif  // SHMESH_TESTING_TEMP_DIR_H_
