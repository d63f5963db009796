#include "testing/temp_dir.h"

#include <stdlib.h>

#include <filesystem>
#include <system_error>
#include <utility>
#include <vector>

namespace shmesh {
namespace testing {

ShortTempDir::ShortTempDir(const std::string& prefix) {
  const std::string templ = "/tmp/" + prefix + "XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) != nullptr) path_ = buf.data();
}

ShortTempDir::~ShortTempDir() { Remove(); }

ShortTempDir::ShortTempDir(ShortTempDir&& other) noexcept
    : path_(std::exchange(other.path_, std::string())) {}

ShortTempDir& ShortTempDir::operator=(ShortTempDir&& other) noexcept {
  if (this != &other) {
    Remove();
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

void ShortTempDir::Remove() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
  path_.clear();
}

}  // namespace testing
}  // namespace shmesh
