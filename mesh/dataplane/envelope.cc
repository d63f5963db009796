#include "mesh/dataplane/envelope.h"

#include "absl/strings/str_cat.h"

namespace mesh {

absl::string_view FrameErrorName(FrameError error) {
  switch (error) {
    case FrameError::kNone:
      return "ok";
    case FrameError::kTooShort:
      return "too_short";
    case FrameError::kBadVersion:
      return "bad_version";
    case FrameError::kUnknownKind:
      return "unknown_kind";
    case FrameError::kUnknownFlags:
      return "unknown_flags";
    case FrameError::kBadMessageFields:
      return "bad_message_fields";
  }
  return "invalid";
}

absl::Status FrameErrorToStatus(FrameError error) {
  switch (error) {
    case FrameError::kNone:
      return absl::OkStatus();
    case FrameError::kBadVersion:
    case FrameError::kUnknownKind:
      return absl::UnimplementedError(absl::StrCat("frame envelope: ", FrameErrorName(error)));
    case FrameError::kTooShort:
    case FrameError::kUnknownFlags:
    case FrameError::kBadMessageFields:
      break;
  }
  return absl::InvalidArgumentError(absl::StrCat("frame envelope: ", FrameErrorName(error)));
}

}  // namespace mesh
