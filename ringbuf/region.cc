#include "ringbuf/region.h"

#include <fcntl.h>  // F_SEAL_* constants only; no syscalls here.

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "ringbuf/internal/os.h"

namespace ringbuf {
namespace {

constexpr int kRequiredSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
constexpr int kForbiddenSeals = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
// memfd names are limited to 249 bytes by the kernel.
constexpr size_t kMaxNameLength = 240;

std::string SealNames(int seals) {
  std::vector<std::string> names;
  if (seals & F_SEAL_SEAL) names.push_back("F_SEAL_SEAL");
  if (seals & F_SEAL_SHRINK) names.push_back("F_SEAL_SHRINK");
  if (seals & F_SEAL_GROW) names.push_back("F_SEAL_GROW");
  if (seals & F_SEAL_WRITE) names.push_back("F_SEAL_WRITE");
  if (seals & F_SEAL_FUTURE_WRITE) names.push_back("F_SEAL_FUTURE_WRITE");
  if (names.empty()) return "none";
  return absl::StrJoin(names, "|");
}

}  // namespace

absl::StatusOr<SharedRegion> SharedRegion::Create(std::string_view debug_name, size_t size) {
  if (size == 0) return absl::InvalidArgumentError("SharedRegion::Create: size is 0");
  std::string name(debug_name.substr(0, kMaxNameLength));
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd fd, os_internal::MemfdCreate(name));
  SHMESH_RETURN_IF_ERROR(os_internal::Ftruncate(fd.get(), size));
  SHMESH_RETURN_IF_ERROR(os_internal::AddSeals(fd.get(), kRequiredSeals));
  SHMESH_ASSIGN_OR_RETURN(uint8_t * data, os_internal::MapShared(fd.get(), size));
  return SharedRegion(std::move(fd), data, size);
}

absl::StatusOr<SharedRegion> SharedRegion::Map(base::UniqueFd fd, size_t expected_size) {
  if (!fd.valid()) return absl::InvalidArgumentError("SharedRegion::Map: no fd given");
  if (expected_size == 0) {
    return absl::InvalidArgumentError("SharedRegion::Map: expected_size is 0");
  }
  const int raw = fd.get();
  absl::StatusOr<int> seals = os_internal::GetSeals(raw);
  if (!seals.ok()) {
    if (absl::IsInvalidArgument(seals.status())) {
      return absl::InvalidArgumentError(
          absl::StrCat("SharedRegion::Map: fd ", raw,
                       " is not a memfd (F_GET_SEALS failed: ", seals.status().message(), ")"));
    }
    return seals.status();
  }
  if ((*seals & kRequiredSeals) != kRequiredSeals) {
    return absl::FailedPreconditionError(absl::StrCat(
        "SharedRegion::Map: memfd ", raw, " lacks seals ", SealNames(kRequiredSeals & ~*seals),
        " (has ", SealNames(*seals), "); its size could change and a mapping could SIGBUS"));
  }
  if ((*seals & kForbiddenSeals) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("SharedRegion::Map: memfd ", raw, " is write-sealed (",
                     SealNames(*seals & kForbiddenSeals), "); a ring needs a writable mapping"));
  }
  SHMESH_ASSIGN_OR_RETURN(os_internal::FileInfo info, os_internal::Fstat(raw));
  if (!info.regular) {
    return absl::InvalidArgumentError(
        absl::StrCat("SharedRegion::Map: fd ", raw, " is not a regular file"));
  }
  if (info.size != expected_size) {
    return absl::InvalidArgumentError(absl::StrCat("SharedRegion::Map: memfd ", raw, " has ",
                                                   info.size, " bytes, expected ", expected_size));
  }
  SHMESH_ASSIGN_OR_RETURN(uint8_t * data, os_internal::MapShared(raw, expected_size));
  return SharedRegion(std::move(fd), data, expected_size);
}

SharedRegion::SharedRegion(SharedRegion&& other) noexcept
    : fd_(std::move(other.fd_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

SharedRegion& SharedRegion::operator=(SharedRegion&& other) noexcept {
  if (this != &other) {
    Reset();
    fd_ = std::move(other.fd_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SharedRegion::~SharedRegion() { Reset(); }

void SharedRegion::Reset() {
  if (data_ != nullptr) os_internal::Unmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
  fd_.reset();
}

}  // namespace ringbuf
