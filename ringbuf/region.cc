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

absl::StatusOr<SharedRegion> SharedRegion::Create(std::string_view debug_name, size_t size, bool populate) {
  if (size == 0) return absl::InvalidArgumentError("SharedRegion::Create: size is 0");
  std::string name(debug_name.substr(0, kMaxNameLength));
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd fd, os_internal::MemfdCreate(name));
  SHMESH_RETURN_IF_ERROR(os_internal::Ftruncate(fd.get(), size));
  SHMESH_RETURN_IF_ERROR(os_internal::AddSeals(fd.get(), kRequiredSeals));
  SHMESH_ASSIGN_OR_RETURN(uint8_t * data, os_internal::MapShared(fd.get(), size, populate));
  return SharedRegion(std::move(fd), data, size);
}

namespace {

// The checks Map and MapReadOnly share: `raw` is a memfd sealed against
// shrinking, growing and further sealing, not write-sealed (or, with
// `writer_only`, sealed with F_SEAL_FUTURE_WRITE but not F_SEAL_WRITE), a
// regular file of exactly `expected_size` bytes. `what` names the caller
// in errors.
absl::Status CheckSealedMemfd(int raw, size_t expected_size, absl::string_view what, bool writer_only = false) {
  if (expected_size == 0) return absl::InvalidArgumentError(absl::StrCat(what, ": expected_size is 0"));
  absl::StatusOr<int> seals = os_internal::GetSeals(raw);
  if (!seals.ok()) {
    if (absl::IsInvalidArgument(seals.status())) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": fd ", raw, " is not a memfd (F_GET_SEALS failed: ",
                                                     seals.status().message(), ")"));
    }
    return seals.status();
  }
  if ((*seals & kRequiredSeals) != kRequiredSeals) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": memfd ", raw, " lacks seals ", SealNames(kRequiredSeals & ~*seals), " (has ", SealNames(*seals),
        "); its size could change and a mapping could SIGBUS"));
  }
  if (writer_only) {
    if ((*seals & F_SEAL_FUTURE_WRITE) == 0 || (*seals & F_SEAL_WRITE) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, ": memfd ", raw, " has seals ", SealNames(*seals),
          "; expected F_SEAL_FUTURE_WRITE without F_SEAL_WRITE (only its creator may write it)"));
    }
  } else if ((*seals & kForbiddenSeals) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": memfd ", raw, " is write-sealed (",
                                                      SealNames(*seals & kForbiddenSeals),
                                                      "); shmesh's regions are written by their creator"));
  }
  SHMESH_ASSIGN_OR_RETURN(os_internal::FileInfo info, os_internal::Fstat(raw));
  if (!info.regular) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": fd ", raw, " is not a regular file"));
  }
  if (info.size != expected_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": memfd ", raw, " has ", info.size, " bytes, expected ", expected_size));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SharedRegion> SharedRegion::Map(base::UniqueFd fd, size_t expected_size) {
  if (!fd.valid()) return absl::InvalidArgumentError("SharedRegion::Map: no fd given");
  SHMESH_RETURN_IF_ERROR(CheckSealedMemfd(fd.get(), expected_size, "SharedRegion::Map"));
  SHMESH_ASSIGN_OR_RETURN(uint8_t * data, os_internal::MapShared(fd.get(), expected_size));
  return SharedRegion(std::move(fd), data, expected_size);
}

absl::StatusOr<SharedRegion> SharedRegion::MapReadOnly(base::UniqueFd fd, size_t expected_size) {
  if (!fd.valid()) return absl::InvalidArgumentError("SharedRegion::MapReadOnly: no fd given");
  SHMESH_RETURN_IF_ERROR(CheckSealedMemfd(fd.get(), expected_size, "SharedRegion::MapReadOnly"));
  SHMESH_ASSIGN_OR_RETURN(uint8_t * data, os_internal::MapSharedReadOnly(fd.get(), expected_size));
  // The mapping keeps the memory; the descriptor is no longer needed.
  return SharedRegion(base::UniqueFd(), data, expected_size);
}

absl::StatusOr<SharedRegion> SharedRegion::CreateWriterOnly(std::string_view debug_name, size_t size) {
  if (size == 0) return absl::InvalidArgumentError("SharedRegion::CreateWriterOnly: size is 0");
  std::string name(debug_name.substr(0, kMaxNameLength));
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd fd, os_internal::MemfdCreate(name));
  SHMESH_RETURN_IF_ERROR(os_internal::Ftruncate(fd.get(), size));
  // Map first: after F_SEAL_FUTURE_WRITE no new writable mapping is allowed.
  SHMESH_ASSIGN_OR_RETURN(uint8_t * data, os_internal::MapShared(fd.get(), size));
  SharedRegion region(std::move(fd), data, size);
  SHMESH_RETURN_IF_ERROR(os_internal::AddSeals(region.fd(), kRequiredSeals | F_SEAL_FUTURE_WRITE));
  return region;
}

absl::StatusOr<SharedRegion> SharedRegion::MapWriterOnly(base::UniqueFd fd, size_t expected_size) {
  if (!fd.valid()) return absl::InvalidArgumentError("SharedRegion::MapWriterOnly: no fd given");
  SHMESH_RETURN_IF_ERROR(CheckSealedMemfd(fd.get(), expected_size, "SharedRegion::MapWriterOnly", true));
  SHMESH_ASSIGN_OR_RETURN(uint8_t * data, os_internal::MapSharedReadOnly(fd.get(), expected_size));
  return SharedRegion(base::UniqueFd(), data, expected_size);
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
