// The wire forms of the two pool frame kinds (mesh/dataplane/envelope.h):
//
// kPoolRef payload: a reference to one block of the sender's pool, exactly
// kPoolRefBytes (32), little-endian:
//
//   byte 0 ..... 3   4 ..... 7   8 ......... 15   16 ........ 23   24 ........ 31
//       | segment | reserved=0 |     offset     |     length     |     token     |
//
//   segment  the sender's segment id (nonzero), handed over before on the
//            link's control channel (LinkControl.PoolSegment)
//   offset   where the payload starts in the segment
//   length   payload bytes (may be 0)
//   token    the sender's name for this reference: the receiver returns it
//            in a kPoolRelease frame once it is done with the payload, and
//            never looks inside it
//
// kPoolRelease payload: 1 to kMaxReleasesPerFrame tokens of 8 bytes each,
// blocks of the peer's pool this node no longer reads.
//
// Untrusted input: ParsePoolRef reads each byte once (one memcpy into a
// local) and checks only what it can alone (size, reserved bytes, segment
// 0); the receiver checks offset and length against the segment it mapped
// (CheckRefBounds), with no overflow. Pure functions: thread-safe.
#ifndef SHMESH_MESH_POOL_POOL_REF_H_
#define SHMESH_MESH_POOL_POOL_REF_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/strings/string_view.h"

namespace mesh {
namespace pool {

inline constexpr size_t kPoolRefBytes = 32;
inline constexpr size_t kReleaseTokenBytes = 8;
// Tokens in one kPoolRelease frame, at most (a 4 KiB frame).
inline constexpr size_t kMaxReleasesPerFrame = 512;

struct PoolRef {
  uint32_t segment = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  uint64_t token = 0;
};

// Why a reference is refused. kNone: well-formed.
enum class RefError : uint8_t {
  kNone = 0,
  kBadSize,         // the payload is not exactly kPoolRefBytes
  kBadFields,       // segment 0, or reserved bytes set
  kUnknownSegment,  // no segment of that id was handed over on this link
  kOutOfBounds,     // offset + length past the segment's end
  kTooLong,         // length over the receiver's max_message_bytes
};

namespace ref_internal {
constexpr bool kLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
inline uint32_t Wire32(uint32_t v) { return kLittleEndian ? v : __builtin_bswap32(v); }
inline uint64_t Wire64(uint64_t v) { return kLittleEndian ? v : __builtin_bswap64(v); }
}  // namespace ref_internal

// Writes the 32-byte wire form of `ref` to `out`.
inline void EncodePoolRef(const PoolRef& ref, char out[kPoolRefBytes]) {
  const uint32_t segment = ref_internal::Wire32(ref.segment);
  const uint32_t reserved = 0;
  const uint64_t offset = ref_internal::Wire64(ref.offset);
  const uint64_t length = ref_internal::Wire64(ref.length);
  const uint64_t token = ref_internal::Wire64(ref.token);
  std::memcpy(out, &segment, 4);
  std::memcpy(out + 4, &reserved, 4);
  std::memcpy(out + 8, &offset, 8);
  std::memcpy(out + 16, &length, 8);
  std::memcpy(out + 24, &token, 8);
}

// Decodes a kPoolRef payload (read once). kBadSize or kBadFields, or kNone
// with `*ref` filled.
inline RefError ParsePoolRef(absl::string_view payload, PoolRef* ref) {
  if (payload.size() != kPoolRefBytes) return RefError::kBadSize;
  char b[kPoolRefBytes];
  std::memcpy(b, payload.data(), kPoolRefBytes);  // the one read
  uint32_t segment, reserved;
  uint64_t offset, length, token;
  std::memcpy(&segment, b, 4);
  std::memcpy(&reserved, b + 4, 4);
  std::memcpy(&offset, b + 8, 8);
  std::memcpy(&length, b + 16, 8);
  std::memcpy(&token, b + 24, 8);
  if (segment == 0 || reserved != 0) return RefError::kBadFields;
  ref->segment = ref_internal::Wire32(segment);
  ref->offset = ref_internal::Wire64(offset);
  ref->length = ref_internal::Wire64(length);
  ref->token = ref_internal::Wire64(token);
  return RefError::kNone;
}

// kNone if [offset, offset + length) lies within a segment of
// `segment_bytes`, else kOutOfBounds (no overflow for any values).
inline RefError CheckRefBounds(const PoolRef& ref, uint64_t segment_bytes) {
  if (ref.offset > segment_bytes || ref.length > segment_bytes - ref.offset) return RefError::kOutOfBounds;
  return RefError::kNone;
}

// A short constant name of `error` for logs ("bad_size", ...).
inline const char* RefErrorName(RefError error) {
  switch (error) {
    case RefError::kNone: return "ok";
    case RefError::kBadSize: return "bad_size";
    case RefError::kBadFields: return "bad_fields";
    case RefError::kUnknownSegment: return "unknown_segment";
    case RefError::kOutOfBounds: return "out_of_bounds";
    case RefError::kTooLong: return "too_long";
  }
  return "invalid";
}

// The i-th token of a kPoolRelease payload (REQUIRES: i < size / 8).
inline uint64_t ReleaseToken(absl::string_view payload, size_t i) {
  uint64_t token;
  std::memcpy(&token, payload.data() + i * kReleaseTokenBytes, kReleaseTokenBytes);
  return ref_internal::Wire64(token);
}

// True if `payload` is a well-formed kPoolRelease payload: 1 to
// kMaxReleasesPerFrame whole tokens.
inline bool IsReleasePayload(absl::string_view payload) {
  return !payload.empty() && payload.size() % kReleaseTokenBytes == 0 &&
         payload.size() / kReleaseTokenBytes <= kMaxReleasesPerFrame;
}

}  // namespace pool
}  // namespace mesh

#endif  // SHMESH_MESH_POOL_POOL_REF_H_
