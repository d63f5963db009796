// Fuzz target: the pool's wire forms (mesh/pool/pool_ref.h), what every
// kPoolRef and kPoolRelease frame a peer writes goes through:
// ParsePoolRef, CheckRefBounds (against a segment of any size),
// IsReleasePayload and ReleaseToken.
//
// Input (FuzzInput; zeros past the end):
//   u8 mode     bits 0-1: how the segment size is made from `seg`: 0 the
//               raw u64, 1 seg % 65537 (small: a real buffer is checked),
//               2 (seg % 4097) * 4096 (page multiples), 3 UINT64_MAX - (seg
//               % 65536) (near the top); bits 2-3 the same for
//               max_message_bytes from `max`; bit 4: the payload is the
//               rest cut or zero-padded to exactly 32 bytes (a reference
//               of the right size, so the field checks are reached);
//               bit 5: parse at an odd address.
//   u64 seg, u64 max
//   rest        the payload, taken as a kPoolRef and as a kPoolRelease.
//
// Properties checked (a violation aborts: a crash for libFuzzer):
//   * no crash, no sanitizer report, no read outside the input;
//   * ParsePoolRef's verdict equals a byte-by-byte reading of the format in
//     pool_ref.h's comment (32 bytes; segment u32 LE nonzero; reserved u32
//     zero; offset, length, token u64 LE), and its fields those bytes;
//     EncodePoolRef of what it accepted gives the input back;
//   * CheckRefBounds accepts exactly [offset, offset + length) within
//     [0, segment size), computed in 128 bits (no overflow for any value);
//     the resolution order of Inbox::Resolve (size, fields, bounds, then
//     max_message_bytes) gives one reason; and for a small segment the
//     accepted range is read from a real buffer of that size (ASan sees a
//     byte past it);
//   * IsReleasePayload accepts exactly 1..kMaxReleasesPerFrame whole 8-byte
//     tokens, and ReleaseToken(i) is the i-th u64 LE;
//   * every RefError has a name.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "mesh/pool/pool_ref.h"
#include "tests/fuzz/fuzz_util.h"

namespace shmesh_fuzz {
namespace {

using mesh::pool::PoolRef;
using mesh::pool::RefError;

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

uint64_t Shape(uint8_t form, uint64_t raw) {
  switch (form & 3) {
    case 0: return raw;
    case 1: return raw % 65537;
    case 2: return (raw % 4097) * 4096;
    default: return kMax - raw % 65536;
  }
}

uint64_t LittleEndian(absl::string_view b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = v << 8 | static_cast<uint8_t>(b[at + i]);
  return v;
}

// The wire format as pool_ref.h's comment states it: the oracle.
RefError ReferenceParse(absl::string_view b, PoolRef* ref) {
  if (b.size() != 32) return RefError::kBadSize;
  const uint64_t segment = LittleEndian(b, 0, 4);
  const uint64_t reserved = LittleEndian(b, 4, 4);
  if (segment == 0 || reserved != 0) return RefError::kBadFields;
  ref->segment = static_cast<uint32_t>(segment);
  ref->offset = LittleEndian(b, 8, 8);
  ref->length = LittleEndian(b, 16, 8);
  ref->token = LittleEndian(b, 24, 8);
  return RefError::kNone;
}

RefError ReferenceBounds(const PoolRef& ref, uint64_t segment_bytes) {
  const unsigned __int128 end = static_cast<unsigned __int128>(ref.offset) + ref.length;
  return end <= segment_bytes ? RefError::kNone : RefError::kOutOfBounds;
}

void CheckRef(absl::string_view payload, uint64_t segment_bytes, uint64_t max_message_bytes) {
  PoolRef got, want;
  const RefError e = mesh::pool::ParsePoolRef(payload, &got);
  const RefError w = ReferenceParse(payload, &want);
  FUZZ_CHECK(e == w, absl::StrCat("ParsePoolRef says ", mesh::pool::RefErrorName(e), ", the wire format says ",
                                  mesh::pool::RefErrorName(w)));
  if (e != RefError::kNone) return;
  FUZZ_CHECK(got.segment == want.segment && got.offset == want.offset && got.length == want.length &&
                 got.token == want.token,
             "ParsePoolRef's fields are not the bytes on the wire");
  FUZZ_CHECK(got.segment != 0, "accepted segment 0");
  char encoded[mesh::pool::kPoolRefBytes];
  mesh::pool::EncodePoolRef(got, encoded);
  FUZZ_CHECK(std::memcmp(encoded, payload.data(), sizeof encoded) == 0, "re-encoding the reference changes it");

  const RefError bounds = mesh::pool::CheckRefBounds(got, segment_bytes);
  const RefError want_bounds = ReferenceBounds(got, segment_bytes);
  FUZZ_CHECK(bounds == want_bounds,
             absl::StrCat("CheckRefBounds says ", mesh::pool::RefErrorName(bounds), " for offset ", got.offset,
                          " length ", got.length, " in ", segment_bytes, " bytes; 128-bit arithmetic says ",
                          mesh::pool::RefErrorName(want_bounds)));
  // Inbox::Resolve's order: bounds before max_message_bytes.
  RefError resolved = bounds;
  if (resolved == RefError::kNone && got.length > max_message_bytes) resolved = RefError::kTooLong;
  if (resolved != RefError::kNone) return;
  FUZZ_CHECK(got.offset <= segment_bytes && got.length <= segment_bytes - got.offset,
             "an accepted reference lies outside its segment");
  FUZZ_CHECK(got.length <= max_message_bytes, "an accepted reference is too long");
  if (segment_bytes <= 65537) {
    // A real segment of that size: read the accepted range (its first and
    // last byte, and all of it); ASan reports anything past the end.
    std::string segment(segment_bytes, '\x5a');
    const absl::string_view view(segment.data() + got.offset, got.length);
    size_t sum = 0;
    for (char c : view) sum += static_cast<uint8_t>(c);
    FUZZ_CHECK(sum == 0x5a * view.size(), "the accepted range read other bytes");
  }
}

void CheckRelease(absl::string_view payload) {
  const bool ok = mesh::pool::IsReleasePayload(payload);
  const bool want = !payload.empty() && payload.size() % 8 == 0 && payload.size() / 8 <= 512;
  FUZZ_CHECK(ok == want, absl::StrCat("IsReleasePayload says ", ok, " for ", payload.size(), " bytes"));
  if (!ok) return;
  for (size_t i = 0; i < payload.size() / 8; ++i) {
    FUZZ_CHECK(mesh::pool::ReleaseToken(payload, i) == LittleEndian(payload, 8 * i, 8),
               absl::StrCat("ReleaseToken(", i, ") is not the u64 on the wire"));
  }
}

}  // namespace
}  // namespace shmesh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmesh_fuzz;  // NOLINT(build/namespaces): a C entry point
  static const bool names = [] {
    for (int e = 0; e <= static_cast<int>(RefError::kTooLong); ++e) {
      const std::string name = mesh::pool::RefErrorName(static_cast<RefError>(e));
      FUZZ_CHECK(name != "invalid" && !name.empty(), absl::StrCat("RefError ", e, " has no name"));
    }
    return true;
  }();
  (void)names;
  FuzzInput in(data, size);
  const uint8_t mode = in.U8();
  const uint64_t segment_bytes = Shape(mode, in.U64());
  const uint64_t max_message_bytes = Shape(mode >> 2, in.U64());
  std::string payload(in.Rest());
  if (mode & 0x10) payload.resize(mesh::pool::kPoolRefBytes, '\0');
  // Copied to the heap at exactly its size (ASan sees a read past the end),
  // at an even or an odd address.
  const size_t shift = (mode & 0x20) ? 1 : 0;
  std::string buffer(shift, '\0');
  buffer += payload;
  const std::unique_ptr<char[]> exact(new char[buffer.size()]);
  std::memcpy(exact.get(), buffer.data(), buffer.size());
  const absl::string_view view(exact.get() + shift, payload.size());
  CheckRef(view, segment_bytes, max_message_bytes);
  CheckRelease(view);
  // The whole input, as is, too (a frame's payload with nothing taken).
  CheckRef(absl::string_view(reinterpret_cast<const char*>(data), size), segment_bytes, max_message_bytes);
  CheckRelease(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
