// Fuzz target: mesh::ParseFrame, the check every frame a peer writes into a
// link's ring goes through before anything is delivered. The input is the
// frame itself (any bytes, any length), parsed once as is and once at an odd
// address (frames in a ring need not be 8-aligned).
//
// Properties checked (a violation aborts: a crash for libFuzzer):
//   * no crash, no sanitizer report, no read outside the input;
//   * the verdict equals that of an independent byte-by-byte reading of the
//     documented wire format (envelope.h), reason included;
//   * valid => at least WireHeaderBytes(kind) bytes (8; 16 for a request or
//     response), version kEnvelopeVersion, a known kind, no flags but
//     kFrameFlagDeclare on kTopic (a topic id declaration), kMessage
//     only with channel 0, correlation 0 for every kind without one on the
//     wire; the payload is exactly the input's tail after that header (a
//     view, same address); and EncodeFrameHeader(header) gives back the
//     input's header bytes and says how many;
//   * invalid => a reason in range with a name, an all-zero header (never
//     kMessage) and an empty payload;
//   * the string_view and Span overloads agree;
//   * the receiver's fast path (the first 8 bytes equal kMessagePrefix)
//     accepts exactly the frames ParseFrame says are valid kMessages;
//   * kMessagePrefix followed by the input always parses as a kMessage whose
//     payload is the input.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mesh/dataplane/envelope.h"
#include "tests/fuzz/fuzz_util.h"

namespace shmesh_fuzz {
namespace {

using mesh::FrameError;
using mesh::FrameHeader;
using mesh::FrameKind;
using mesh::ParsedFrame;

// The wire format as the header comment of envelope.h states it, one byte at
// a time: the oracle for ParseFrame.
// Sets *header_bytes to where the payload starts (valid frames only).
FrameError ReferenceParse(absl::string_view b, FrameHeader* h, size_t* header_bytes) {
  if (b.size() < 8) return FrameError::kTooShort;
  auto u = [&b](size_t i) { return static_cast<uint64_t>(static_cast<uint8_t>(b[i])); };
  h->version = static_cast<uint8_t>(u(0));
  h->kind = static_cast<uint8_t>(u(1));
  h->flags = static_cast<uint16_t>(u(2) | u(3) << 8);
  h->channel = static_cast<uint32_t>(u(4) | u(5) << 8 | u(6) << 16 | u(7) << 24);
  h->correlation = 0;
  if (h->version != 1) return FrameError::kBadVersion;
  if (h->kind < 1 || h->kind > 6) return FrameError::kUnknownKind;
  // Only kTopic (2) defines a flag: bit 0, declare.
  if ((h->flags & ~(h->kind == 2 ? 1 : 0)) != 0) return FrameError::kUnknownFlags;
  const bool correlated = h->kind == 3 || h->kind == 4;  // request, response
  if (correlated && b.size() < 16) return FrameError::kTooShort;
  if (h->kind == 1 && h->channel != 0) return FrameError::kBadMessageFields;
  if (correlated) {
    for (int i = 15; i >= 8; --i) h->correlation = h->correlation << 8 | u(i);
  }
  *header_bytes = correlated ? 16 : 8;
  return FrameError::kNone;
}

void CheckOne(absl::string_view frame) {
  const ParsedFrame p = mesh::ParseFrame(frame);
  FrameHeader expected;
  size_t header_bytes = 0;
  const FrameError reason = ReferenceParse(frame, &expected, &header_bytes);
  FUZZ_CHECK(p.error == reason, absl::StrCat("ParseFrame says ", mesh::FrameErrorName(p.error),
                                             ", the wire format says ",
                                             mesh::FrameErrorName(reason)));
  const auto* bytes = reinterpret_cast<const uint8_t*>(frame.data());
  const ParsedFrame q = mesh::ParseFrame(absl::Span<const uint8_t>(bytes, frame.size()));
  FUZZ_CHECK(q.error == p.error && q.header == p.header && q.payload.data() == p.payload.data() &&
                 q.payload.size() == p.payload.size(),
             "the Span overload disagrees");
  if (p.ok()) {
    FUZZ_CHECK(header_bytes == mesh::WireHeaderBytes(p.header.kind),
               "WireHeaderBytes disagrees with the wire format");
    FUZZ_CHECK(frame.size() >= header_bytes, "a valid frame shorter than its header");
    FUZZ_CHECK(p.header == expected, "the header is not the one on the wire");
    FUZZ_CHECK(p.header.version == mesh::kEnvelopeVersion, "valid with another version");
    FUZZ_CHECK(mesh::IsKnownFrameKind(p.header.kind), absl::StrCat("valid kind ", p.header.kind));
    // The one flag: declare, on a topic frame only.
    FUZZ_CHECK(p.header.flags == 0 || (p.header.flags == mesh::kFrameFlagDeclare &&
                                       p.header.frame_kind() == FrameKind::kTopic),
               "valid with a flag its kind does not define");
    FUZZ_CHECK((p.header.flags & ~mesh::AllowedFrameFlags(p.header.kind)) == 0, "AllowedFrameFlags disagrees");
    FUZZ_CHECK(p.header.frame_kind() != FrameKind::kMessage || p.header.channel == 0,
               "a message with a channel");
    FUZZ_CHECK(mesh::HasCorrelation(p.header.kind) || p.header.correlation == 0,
               "a correlation on a kind without one");
    FUZZ_CHECK(p.payload.data() == frame.data() + header_bytes &&
                   p.payload.size() == frame.size() - header_bytes,
               "the payload is not exactly the tail of the frame");
    char encoded[mesh::kMaxFrameHeaderBytes];
    const size_t n = mesh::EncodeFrameHeader(p.header, encoded);
    FUZZ_CHECK(n == header_bytes, "EncodeFrameHeader writes another length");
    FUZZ_CHECK(std::memcmp(encoded, frame.data(), n) == 0,
               "re-encoding the header changes its bytes");
  } else {
    FUZZ_CHECK(static_cast<size_t>(p.error) < mesh::kFrameErrorCount, "reason out of range");
    FUZZ_CHECK(mesh::FrameErrorName(p.error) != "invalid" && mesh::FrameErrorName(p.error) != "ok",
               "a reason without a name");
    FUZZ_CHECK(p.header == (FrameHeader{0, 0, 0, 0, 0}), "an invalid frame with a header");
    FUZZ_CHECK(p.header.frame_kind() != FrameKind::kMessage, "an invalid frame as a message");
    FUZZ_CHECK(p.payload.empty(), "an invalid frame with a payload");
    FUZZ_CHECK(!mesh::FrameErrorToStatus(p.error).ok(), "an invalid frame with an OK status");
  }
}

}  // namespace
}  // namespace shmesh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmesh_fuzz;  // NOLINT(build/namespaces): a C entry point
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  CheckOne(input);
  // The receiver's fast path: a frame is a valid plain message exactly when
  // its first 8 bytes are kMessagePrefix (mesh/dataplane/receiver.cc), and
  // its payload is what follows them.
  {
    const mesh::ParsedFrame p = mesh::ParseFrame(input);
    const bool fast = input.size() >= mesh::kMessagePrefix.size() &&
                      std::memcmp(input.data(), mesh::kMessagePrefix.data(), mesh::kMessagePrefix.size()) == 0;
    FUZZ_CHECK(fast == (p.ok() && p.header.frame_kind() == FrameKind::kMessage),
               "the 8-byte prefix check and ParseFrame disagree on a plain message");
    FUZZ_CHECK(!fast || p.payload.data() == input.data() + mesh::kMessagePrefix.size(),
               "the fast path's payload is not ParseFrame's");
  }
  // The same bytes at an odd address (ring frames need not be aligned).
  std::string odd(size + 1, '\0');
  std::memcpy(&odd[1], data, size);
  CheckOne(absl::string_view(odd).substr(1));
  // Any payload behind the message prefix is a message with that payload.
  const std::string framed = std::string(mesh::kMessagePrefix) + std::string(input);
  const mesh::ParsedFrame m = mesh::ParseFrame(framed);
  FUZZ_CHECK(m.ok() && m.header == mesh::kMessageHeader && m.payload == input,
             "kMessagePrefix + payload does not parse as that message");
  CheckOne(framed);
  return 0;
}
