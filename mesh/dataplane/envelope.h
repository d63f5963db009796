// The frame envelope: the small versioned header at the start of every frame
// a shmesh link carries in its rings. It says what kind of frame follows
// (a plain message today; topics, request/response and pool references
// later), on which channel, with which correlation id, and with which flags,
// so one ring can multiplex them. The sender of a plain message prepends the
// constant kMessagePrefix (no work per message); the receiver runs
// ParseFrame on every frame and drops (and counts, per FrameError) anything
// it does not understand: an unknown version or kind is never delivered as a
// message.
//
// Wire layout (16 bytes, little-endian, at the start of each ring frame; a
// frame is not necessarily 8-aligned, so it is always read with memcpy):
//
//   byte  0         1         2    3    4 ........ 7    8 ................ 15
//       +---------+---------+---------+-------------+----------------------+
//       | version |  kind   |  flags  |   channel   |     correlation      |
//       |  u8 =1  |   u8    |   u16   |     u32     |         u64          |
//       +---------+---------+---------+-------------+----------------------+
//       | payload (frame length - 16 bytes, may be empty) ...
//
//   version      kEnvelopeVersion (1); any other value is invalid.
//   kind         a FrameKind; 0 and 6..255 are invalid.
//   flags        none defined yet: any set bit is invalid.
//   channel      topic or service id; 0 for kMessage.
//   correlation  request/response pairing id; 0 for kMessage.
//
// FrameHeader mirrors this layout exactly on a little-endian host (checked
// below), but code never reinterprets frame bytes as a FrameHeader: use
// EncodeFrameHeader and ParseFrame.
//
// Untrusted input: ParseFrame reads the 16 header bytes exactly once (one
// copy into a local) and validates the copy, so the returned header is the
// one that was checked even if a hostile peer rewrites the shared memory
// meanwhile. The payload is a view into the caller's bytes and carries the
// caller's contract for them (ring spans: copy before trusting).
//
// Thread contract: everything here is a pure function of its arguments or a
// constant: thread-safe.
#ifndef SHMESH_MESH_DATAPLANE_ENVELOPE_H_
#define SHMESH_MESH_DATAPLANE_ENVELOPE_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mesh {

// The envelope version this build writes and accepts.
inline constexpr uint8_t kEnvelopeVersion = 1;

// Bytes of the header at the start of every frame.
inline constexpr size_t kFrameHeaderBytes = 16;

// What a frame carries. Only kMessage is produced today; the others are
// reserved for the features named and parse as valid (so a receiver can
// count them as "unsupported kind" rather than "corrupt"), but nothing
// sends them yet and a receiver must not deliver them as messages.
enum class FrameKind : uint8_t {
  kMessage = 1,   // a plain Node::Send payload; channel and correlation 0
  kTopic = 2,     // reserved: a publication on topic `channel`
  kRequest = 3,   // reserved: a request to service `channel`, id `correlation`
  kResponse = 4,  // reserved: the response to request `correlation`
  kPoolRef = 5,   // reserved: a reference to a buffer in a shared pool
};
inline constexpr uint8_t kMinFrameKind = 1;
inline constexpr uint8_t kMaxFrameKind = 5;

// True if `kind` is one of the FrameKind values above.
constexpr bool IsKnownFrameKind(uint8_t kind) {
  return static_cast<uint8_t>(kind - kMinFrameKind) <= kMaxFrameKind - kMinFrameKind;
}

// Flag bits defined by kEnvelopeVersion: none. A frame with any other bit
// set is invalid (a newer sender relying on a flag we would ignore).
inline constexpr uint16_t kKnownFrameFlags = 0;

// The decoded header, in host byte order. Standard-layout and 16 bytes with
// no padding; on a little-endian host its bytes are the wire bytes.
struct FrameHeader {
  uint8_t version = kEnvelopeVersion;
  uint8_t kind = static_cast<uint8_t>(FrameKind::kMessage);
  uint16_t flags = 0;
  uint32_t channel = 0;
  uint64_t correlation = 0;

  FrameKind frame_kind() const { return static_cast<FrameKind>(kind); }
  friend bool operator==(const FrameHeader& a, const FrameHeader& b) {
    return a.version == b.version && a.kind == b.kind && a.flags == b.flags &&
           a.channel == b.channel && a.correlation == b.correlation;
  }
  friend bool operator!=(const FrameHeader& a, const FrameHeader& b) { return !(a == b); }
};
static_assert(sizeof(FrameHeader) == kFrameHeaderBytes, "FrameHeader must be 16 bytes");
static_assert(alignof(FrameHeader) == 8, "FrameHeader is 8-aligned in memory (never on the wire)");
static_assert(std::is_standard_layout<FrameHeader>::value, "FrameHeader must be standard-layout");
static_assert(std::is_trivially_copyable<FrameHeader>::value, "FrameHeader is copied with memcpy");
static_assert(offsetof(FrameHeader, version) == 0, "wire offset of version");
static_assert(offsetof(FrameHeader, kind) == 1, "wire offset of kind");
static_assert(offsetof(FrameHeader, flags) == 2, "wire offset of flags");
static_assert(offsetof(FrameHeader, channel) == 4, "wire offset of channel");
static_assert(offsetof(FrameHeader, correlation) == 8, "wire offset of correlation");

// Why a frame is invalid. kNone means valid. Values are dense from 0 so a
// receiver can keep one counter per reason in an array of kFrameErrorCount.
enum class FrameError : uint8_t {
  kNone = 0,           // valid
  kTooShort,           // fewer than kFrameHeaderBytes bytes
  kBadVersion,         // version != kEnvelopeVersion
  kUnknownKind,        // kind is not a FrameKind
  kUnknownFlags,       // a flag bit outside kKnownFrameFlags is set
  kBadMessageFields,   // kMessage with a nonzero channel or correlation
};
inline constexpr size_t kFrameErrorCount = 6;

// A short constant name of `error` for logs and counters ("too_short", ...;
// "ok" for kNone, "invalid" for a value outside the enum). Never allocates.
absl::string_view FrameErrorName(FrameError error);

// OK for kNone; otherwise the canonical code that fits, with the name in the
// message: UNIMPLEMENTED for a version or kind this build does not speak
// (a newer peer), INVALID_ARGUMENT for a malformed frame. Allocates: for the
// slow path (logging, tests), not per frame.
absl::Status FrameErrorToStatus(FrameError error);

// The result of ParseFrame. When ok(): `header` is the validated header and
// `payload` the bytes after it (a view into the parsed frame). Otherwise
// `error` says why, `header` is all zeros (kind 0: never a valid kind) and
// `payload` is empty.
struct ParsedFrame {
  FrameError error = FrameError::kNone;
  FrameHeader header;
  absl::string_view payload;

  bool ok() const { return error == FrameError::kNone; }
};

namespace envelope_internal {

constexpr bool kHostLittleEndian = __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__;
static_assert(kHostLittleEndian || __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__,
              "mixed-endian hosts are not supported");

// Converts the multi-byte fields between host and wire (little-endian) order;
// the identity on little-endian hosts. Its own inverse.
inline FrameHeader SwapToWire(FrameHeader h) {
  if (!kHostLittleEndian) {
    h.flags = __builtin_bswap16(h.flags);
    h.channel = __builtin_bswap32(h.channel);
    h.correlation = __builtin_bswap64(h.correlation);
  }
  return h;
}

// The wire bytes of the kMessage header, spelled out (checked against
// EncodeFrameHeader by the tests).
inline constexpr char kMessageHeaderBytes[kFrameHeaderBytes] = {
    kEnvelopeVersion, static_cast<char>(FrameKind::kMessage), 0, 0, 0, 0, 0, 0,
    0,                0,                                      0, 0, 0, 0, 0, 0};

}  // namespace envelope_internal

// The header every plain message carries.
inline constexpr FrameHeader kMessageHeader{};

// The 16 wire bytes of kMessageHeader: the constant prefix the send path
// writes in front of every plain message (RingProducer::Write(prefix, ...)).
inline constexpr absl::string_view kMessagePrefix(envelope_internal::kMessageHeaderBytes,
                                                  kFrameHeaderBytes);

// Writes the wire form of `header` to out[0..15]. Does not validate it (any
// field values encode; ParseFrame decides what is valid). REQUIRES: `out`
// has room for kFrameHeaderBytes bytes (any alignment).
inline void EncodeFrameHeader(const FrameHeader& header, char out[kFrameHeaderBytes]) {
  const FrameHeader wire = envelope_internal::SwapToWire(header);
  std::memcpy(out, &wire, kFrameHeaderBytes);
}

// Splits `frame` into its header and payload and validates the header.
// Checks, in this order (the first failure is the reported reason): length,
// version, kind, flags, then kMessage's zero channel and correlation. Reads
// the header bytes once. Cheap enough for every frame: no allocation, no
// Status; see ParsedFrame for the result.
inline ParsedFrame ParseFrame(absl::string_view frame) {
  ParsedFrame out;
  if (frame.size() < kFrameHeaderBytes) {
    out.error = FrameError::kTooShort;
  } else {
    FrameHeader h;
    std::memcpy(&h, frame.data(), kFrameHeaderBytes);  // the one read
    h = envelope_internal::SwapToWire(h);
    if (h.version != kEnvelopeVersion) {
      out.error = FrameError::kBadVersion;
    } else if (!IsKnownFrameKind(h.kind)) {
      out.error = FrameError::kUnknownKind;
    } else if ((h.flags & ~kKnownFrameFlags) != 0) {
      out.error = FrameError::kUnknownFlags;
    } else if (h.kind == static_cast<uint8_t>(FrameKind::kMessage) &&
               (h.channel != 0 || h.correlation != 0)) {
      out.error = FrameError::kBadMessageFields;
    } else {
      out.header = h;
      out.payload = frame.substr(kFrameHeaderBytes);
      return out;
    }
  }
  out.header = FrameHeader{0, 0, 0, 0, 0};
  return out;
}

// The same for a ring frame (RingConsumer::Peek/Drain spans).
inline ParsedFrame ParseFrame(absl::Span<const uint8_t> frame) {
  return ParseFrame(absl::string_view(reinterpret_cast<const char*>(frame.data()), frame.size()));
}

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_ENVELOPE_H_
