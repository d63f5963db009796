// The frame envelope: the small versioned header at the start of every frame
// a shmesh link carries in its rings. It says what kind of frame follows
// (a plain message, a topic frame, a request or response, a reference to a
// pool block, or pool releases), on which channel, with which flags and, for requests and
// responses only, with which correlation id, so one ring can multiplex them.
// The sender of a plain message prepends the constant 8-byte kMessagePrefix
// (no work per message); the receiver runs ParseFrame on every frame and
// drops (and counts, per FrameError) anything it does not understand: an
// unknown version or kind is never delivered as a message.
//
// Wire layout (little-endian, at the start of each ring frame; a frame is not
// necessarily 8-aligned, so it is always read with memcpy). Every frame has
// the 8-byte base; the 8-byte correlation follows it only for the kinds that
// pair frames (kRequest, kResponse): WireHeaderBytes(kind) is 8 or 16.
//
//   kMessage, kTopic, kPoolRef, kPoolRelease (8 bytes):
//
//   byte  0         1         2    3    4 ........ 7
//       +---------+---------+---------+-------------+
//       | version |  kind   |  flags  |   channel   |
//       |  u8 =1  |   u8    |   u16   |     u32     |
//       +---------+---------+---------+-------------+
//       | payload (frame length - 8 bytes, may be empty) ...
//
//   kRequest, kResponse (16 bytes):
//
//   byte  0         1         2    3    4 ........ 7    8 ................ 15
//       +---------+---------+---------+-------------+----------------------+
//       | version |  kind   |  flags  |   channel   |     correlation      |
//       |  u8 =1  |   u8    |   u16   |     u32     |         u64          |
//       +---------+---------+---------+-------------+----------------------+
//       | payload (frame length - 16 bytes, may be empty) ...
//
//   version      kEnvelopeVersion (1); any other value is invalid.
//   kind         a FrameKind; 0 and 7..255 are invalid. Decides the header
//                length, so it is checked before anything after byte 7 is
//                read.
//   flags        kFrameFlagDeclare on kTopic (see below); any other set
//                bit, or a bit the kind does not define, is invalid.
//   channel      topic id (kTopic; kPoolRef of a publication), service id
//                (kRequest); must be 0 for kMessage; 0 for a kPoolRef that
//                carries a plain message; unused by kResponse and
//                kPoolRelease.
//   correlation  request/response pairing id; on the wire only for kRequest
//                and kResponse (any value). Other kinds have none: their
//                payload starts at byte 8, and FrameHeader::correlation
//                reads as 0.
//
// A valid kMessage header therefore has exactly one encoding, the 8 bytes of
// kMessagePrefix, which is what lets the receiver check a plain message with
// one 8-byte compare.
//
// FrameHeader is the in-memory form of the longest header (16 bytes). On a
// little-endian host its first 8 bytes are the base on the wire and all 16
// the header of a request or response (checked below), but code never
// reinterprets frame bytes as a FrameHeader: use EncodeFrameHeader and
// ParseFrame.
//
// Untrusted input: ParseFrame reads each header byte exactly once (one copy
// of the 8 base bytes into a local, and for a request or response one more
// copy of the 8 correlation bytes) and validates the copies, so the returned
// header is the one that was checked even if a hostile peer rewrites the
// shared memory meanwhile. The payload is a view into the caller's bytes and
// carries the caller's contract for them (ring spans: copy before trusting).
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

// Bytes of the base header every frame starts with (version, kind, flags,
// channel).
inline constexpr size_t kFrameBaseBytes = 8;
// Bytes of the correlation id that follows the base for kRequest and
// kResponse only.
inline constexpr size_t kCorrelationBytes = 8;
// The longest header: room enough for any EncodeFrameHeader output.
inline constexpr size_t kMaxFrameHeaderBytes = kFrameBaseBytes + kCorrelationBytes;

// What a frame carries. The payloads of kPoolRef and kPoolRelease are laid
// out and checked by mesh/pool/pool_ref.h.
enum class FrameKind : uint8_t {
  kMessage = 1,      // a plain Node::Send payload; channel 0; no correlation
  kTopic = 2,        // a publication on topic id `channel` (or its declaration); no correlation
  kRequest = 3,      // a request to service id `channel`, call id `correlation`
  kResponse = 4,     // the response to call `correlation`: status code, then body or error
  kPoolRef = 5,      // a message whose payload is a block of the sender's pool: a plain
                     // message (channel 0) or a publication on topic id `channel`
  kPoolRelease = 6,  // the receiver is done with pool blocks of the peer it writes to
};
inline constexpr uint8_t kMinFrameKind = 1;
inline constexpr uint8_t kMaxFrameKind = 6;

// True if `kind` is one of the FrameKind values above.
constexpr bool IsKnownFrameKind(uint8_t kind) {
  return static_cast<uint8_t>(kind - kMinFrameKind) <= kMaxFrameKind - kMinFrameKind;
}

// True if frames of `kind` carry a correlation id on the wire (kRequest and
// kResponse). False for every other value, known or not.
constexpr bool HasCorrelation(uint8_t kind) {
  return kind == static_cast<uint8_t>(FrameKind::kRequest) ||
         kind == static_cast<uint8_t>(FrameKind::kResponse);
}
constexpr bool HasCorrelation(FrameKind kind) { return HasCorrelation(static_cast<uint8_t>(kind)); }

// Bytes of the wire header of a frame of `kind`: kFrameBaseBytes +
// kCorrelationBytes (16) for kRequest and kResponse, kFrameBaseBytes (8) for
// the other kinds (and for a value outside FrameKind, whose frame is invalid
// anyway).
constexpr size_t WireHeaderBytes(uint8_t kind) {
  return HasCorrelation(kind) ? kFrameBaseBytes + kCorrelationBytes : kFrameBaseBytes;
}
constexpr size_t WireHeaderBytes(FrameKind kind) {
  return WireHeaderBytes(static_cast<uint8_t>(kind));
}
static_assert(WireHeaderBytes(FrameKind::kMessage) == 8, "a plain message has no correlation");
static_assert(WireHeaderBytes(FrameKind::kTopic) == 8, "a topic frame has no correlation");
static_assert(WireHeaderBytes(FrameKind::kRequest) == 16, "a request carries its correlation");
static_assert(WireHeaderBytes(FrameKind::kResponse) == 16, "a response carries its correlation");
static_assert(WireHeaderBytes(FrameKind::kPoolRef) == 8, "a pool reference has no correlation");
static_assert(WireHeaderBytes(FrameKind::kPoolRelease) == 8, "a pool release has no correlation");
static_assert(WireHeaderBytes(uint8_t{0}) == 8 && WireHeaderBytes(uint8_t{255}) == 8,
              "unknown kinds: the base only");

// Flag bits defined by kEnvelopeVersion, and the kinds that may carry them.
// A frame with any other bit set, or a bit its kind does not define, is
// invalid (a newer sender relying on a flag we would ignore).
//
// kFrameFlagDeclare, kTopic only: this frame declares (or, with an empty
// payload, retires) topic id `channel` on this link, in this direction; its
// payload is the topic name. Sent in the ring before the id's first use,
// so a publication can never arrive before its declaration.
inline constexpr uint16_t kFrameFlagDeclare = 1;
inline constexpr uint16_t kKnownFrameFlags = kFrameFlagDeclare;

// The flag bits frames of `kind` may carry.
constexpr uint16_t AllowedFrameFlags(uint8_t kind) {
  return kind == 2 /* FrameKind::kTopic */ ? kFrameFlagDeclare : uint16_t{0};
}
static_assert(AllowedFrameFlags(static_cast<uint8_t>(FrameKind::kTopic)) == kFrameFlagDeclare,
              "kTopic carries the declare flag");

// The decoded header, in host byte order: the in-memory form of every kind's
// header (correlation is 0 for the kinds without one on the wire).
// Standard-layout and 16 bytes with no padding; on a little-endian host its
// first kFrameBaseBytes bytes are the wire base and, for a request or
// response, all 16 are its wire header.
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
static_assert(sizeof(FrameHeader) == kMaxFrameHeaderBytes, "FrameHeader must be 16 bytes");
static_assert(alignof(FrameHeader) == 8, "FrameHeader is 8-aligned in memory (never on the wire)");
static_assert(std::is_standard_layout<FrameHeader>::value, "FrameHeader must be standard-layout");
static_assert(std::is_trivially_copyable<FrameHeader>::value, "FrameHeader is copied with memcpy");
static_assert(offsetof(FrameHeader, version) == 0, "wire offset of version");
static_assert(offsetof(FrameHeader, kind) == 1, "wire offset of kind");
static_assert(offsetof(FrameHeader, flags) == 2, "wire offset of flags");
static_assert(offsetof(FrameHeader, channel) == 4, "wire offset of channel");
static_assert(offsetof(FrameHeader, correlation) == kFrameBaseBytes,
              "wire offset of correlation: right after the base");
static_assert(offsetof(FrameHeader, channel) + sizeof(uint32_t) == kFrameBaseBytes,
              "the base ends with channel");

// Why a frame is invalid. kNone means valid. Values are dense from 0 so a
// receiver can keep one counter per reason in an array of kFrameErrorCount.
enum class FrameError : uint8_t {
  kNone = 0,           // valid
  kTooShort,           // fewer than kFrameBaseBytes bytes, or a request or
                       // response with fewer than WireHeaderBytes(kind)
  kBadVersion,         // version != kEnvelopeVersion
  kUnknownKind,        // kind is not a FrameKind
  kUnknownFlags,       // a flag bit outside kKnownFrameFlags is set
  kBadMessageFields,   // kMessage with a nonzero channel
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

// Converts a value between host and wire (little-endian) order; the identity
// on little-endian hosts. Its own inverse.
inline uint16_t ToWire16(uint16_t v) { return kHostLittleEndian ? v : __builtin_bswap16(v); }
inline uint32_t ToWire32(uint32_t v) { return kHostLittleEndian ? v : __builtin_bswap32(v); }
inline uint64_t ToWire64(uint64_t v) { return kHostLittleEndian ? v : __builtin_bswap64(v); }

// The wire bytes of the kMessage header, spelled out (checked against
// EncodeFrameHeader by the tests).
inline constexpr char kMessageHeaderBytes[kFrameBaseBytes] = {
    kEnvelopeVersion, static_cast<char>(FrameKind::kMessage), 0, 0, 0, 0, 0, 0};

}  // namespace envelope_internal

// The header every plain message carries.
inline constexpr FrameHeader kMessageHeader{};

// The 8 wire bytes of kMessageHeader: the constant prefix the send path
// writes in front of every plain message (RingProducer::Write(prefix, ...)),
// and the one encoding of a valid plain message header (the receiver's fast
// path compares a frame's first kMessagePrefix.size() bytes with it).
inline constexpr absl::string_view kMessagePrefix(envelope_internal::kMessageHeaderBytes,
                                                  kFrameBaseBytes);
static_assert(kMessagePrefix.size() == WireHeaderBytes(FrameKind::kMessage),
              "the prefix is one message header");

// Writes the wire form of `header` to `out` and returns its length,
// WireHeaderBytes(header.kind) (8, or 16 for a request or response). The
// correlation of a kind without one is not written (it reads back as 0).
// Does not validate anything else (any field values encode; ParseFrame
// decides what is valid). REQUIRES: `out` has room for
// WireHeaderBytes(header.kind) bytes (kMaxFrameHeaderBytes always do; any
// alignment).
inline size_t EncodeFrameHeader(const FrameHeader& header, char out[kMaxFrameHeaderBytes]) {
  const uint16_t flags = envelope_internal::ToWire16(header.flags);
  const uint32_t channel = envelope_internal::ToWire32(header.channel);
  out[0] = static_cast<char>(header.version);
  out[1] = static_cast<char>(header.kind);
  std::memcpy(out + 2, &flags, sizeof(flags));
  std::memcpy(out + 4, &channel, sizeof(channel));
  if (!HasCorrelation(header.kind)) return kFrameBaseBytes;
  const uint64_t correlation = envelope_internal::ToWire64(header.correlation);
  std::memcpy(out + kFrameBaseBytes, &correlation, kCorrelationBytes);
  return kFrameBaseBytes + kCorrelationBytes;
}

// Splits `frame` into its header and payload and validates the header.
// Checks, in this order (the first failure is the reported reason): length
// of the base (kTooShort), version, kind, flags, then for a request or
// response the length of its 16-byte header (kTooShort), then kMessage's
// zero channel. Reads each header byte once: the 8 base bytes, then the 8
// correlation bytes only for a request or response. Cheap enough for every
// frame: no allocation, no Status; see ParsedFrame for the result.
inline ParsedFrame ParseFrame(absl::string_view frame) {
  ParsedFrame out;
  if (frame.size() < kFrameBaseBytes) {
    out.error = FrameError::kTooShort;
  } else {
    uint8_t base[kFrameBaseBytes];
    std::memcpy(base, frame.data(), kFrameBaseBytes);  // the one read of the base
    FrameHeader h;
    h.version = base[0];
    h.kind = base[1];
    std::memcpy(&h.flags, base + 2, sizeof(h.flags));
    std::memcpy(&h.channel, base + 4, sizeof(h.channel));
    h.flags = envelope_internal::ToWire16(h.flags);
    h.channel = envelope_internal::ToWire32(h.channel);
    h.correlation = 0;
    const size_t header_bytes = WireHeaderBytes(h.kind);
    if (h.version != kEnvelopeVersion) {
      out.error = FrameError::kBadVersion;
    } else if (!IsKnownFrameKind(h.kind)) {
      out.error = FrameError::kUnknownKind;
    } else if ((h.flags & ~AllowedFrameFlags(h.kind)) != 0) {
      out.error = FrameError::kUnknownFlags;
    } else if (frame.size() < header_bytes) {
      out.error = FrameError::kTooShort;  // a request or response without its correlation
    } else if (h.kind == static_cast<uint8_t>(FrameKind::kMessage) && h.channel != 0) {
      out.error = FrameError::kBadMessageFields;
    } else {
      if (header_bytes > kFrameBaseBytes) {
        // The one read of the correlation.
        std::memcpy(&h.correlation, frame.data() + kFrameBaseBytes, kCorrelationBytes);
        h.correlation = envelope_internal::ToWire64(h.correlation);
      }
      out.header = h;
      out.payload = frame.substr(header_bytes);
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
