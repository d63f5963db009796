#include "mesh/dataplane/envelope.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mesh {
namespace {

using ::testing::HasSubstr;

static_assert(!IsKnownFrameKind(0), "kind 0 is invalid");
static_assert(IsKnownFrameKind(1) && IsKnownFrameKind(5), "1..5 are kinds");
static_assert(!IsKnownFrameKind(6) && !IsKnownFrameKind(255), "6..255 are invalid");
static_assert(kMessagePrefix.size() == kFrameHeaderBytes, "prefix is one header");

constexpr FrameKind kAllKinds[] = {FrameKind::kMessage, FrameKind::kTopic, FrameKind::kRequest,
                                   FrameKind::kResponse, FrameKind::kPoolRef};

std::string Encode(const FrameHeader& h) {
  std::string out(kFrameHeaderBytes, '\0');
  EncodeFrameHeader(h, out.data());
  return out;
}

FrameHeader Header(FrameKind kind, uint32_t channel = 0, uint64_t correlation = 0,
                   uint16_t flags = 0, uint8_t version = kEnvelopeVersion) {
  FrameHeader h;
  h.version = version;
  h.kind = static_cast<uint8_t>(kind);
  h.flags = flags;
  h.channel = channel;
  h.correlation = correlation;
  return h;
}

// An independent, byte-by-byte statement of the wire format and its rules,
// to check ParseFrame against.
struct Reference {
  FrameError error;
  FrameHeader header;
};
Reference ReferenceParse(absl::string_view b) {
  if (b.size() < 16) return {FrameError::kTooShort, {}};
  auto u = [&b](size_t i) { return static_cast<uint64_t>(static_cast<uint8_t>(b[i])); };
  FrameHeader h;
  h.version = static_cast<uint8_t>(u(0));
  h.kind = static_cast<uint8_t>(u(1));
  h.flags = static_cast<uint16_t>(u(2) | u(3) << 8);
  h.channel = static_cast<uint32_t>(u(4) | u(5) << 8 | u(6) << 16 | u(7) << 24);
  h.correlation = 0;
  for (int i = 7; i >= 0; --i) h.correlation = h.correlation << 8 | u(8 + i);
  if (h.version != 1) return {FrameError::kBadVersion, h};
  if (h.kind < 1 || h.kind > 5) return {FrameError::kUnknownKind, h};
  if (h.flags != 0) return {FrameError::kUnknownFlags, h};
  if (h.kind == 1 && (h.channel != 0 || h.correlation != 0)) {
    return {FrameError::kBadMessageFields, h};
  }
  return {FrameError::kNone, h};
}

// Checks everything ParsedFrame promises for `frame`, against the reference.
void ExpectConsistent(absl::string_view frame) {
  const ParsedFrame p = ParseFrame(frame);
  const Reference r = ReferenceParse(frame);
  ASSERT_EQ(p.error, r.error) << FrameErrorName(p.error) << " vs " << FrameErrorName(r.error);
  if (p.ok()) {
    EXPECT_EQ(p.header, r.header);
    EXPECT_EQ(p.payload.data(), frame.data() + kFrameHeaderBytes);
    EXPECT_EQ(p.payload.size(), frame.size() - kFrameHeaderBytes);
    EXPECT_EQ(Encode(p.header), frame.substr(0, kFrameHeaderBytes));
  } else {
    EXPECT_EQ(p.header, (FrameHeader{0, 0, 0, 0, 0}));
    EXPECT_NE(p.header.frame_kind(), FrameKind::kMessage);
    EXPECT_TRUE(p.payload.empty());
  }
}

TEST(EnvelopeTest, MessagePrefixIsTheEncodedMessageHeader) {
  const std::string expected("\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
  EXPECT_EQ(kMessagePrefix, expected);
  EXPECT_EQ(Encode(kMessageHeader), expected);
  EXPECT_EQ(kMessageHeader, Header(FrameKind::kMessage));
}

TEST(EnvelopeTest, EncodingIsLittleEndianAtTheDocumentedOffsets) {
  const FrameHeader h =
      Header(FrameKind::kRequest, 0x07060504u, 0x0f0e0d0c0b0a0908ull, 0x0302, kEnvelopeVersion);
  const std::string bytes = Encode(h);
  const std::string expected("\x01\x03\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
                             16);
  EXPECT_EQ(bytes, expected);
}

TEST(EnvelopeTest, EncodeWritesExactlySixteenBytesAtAnyAlignment) {
  for (size_t offset = 0; offset < 8; ++offset) {
    std::string buffer(40, '\xaa');
    EncodeFrameHeader(Header(FrameKind::kTopic, 9, 10), buffer.data() + offset);
    EXPECT_EQ(buffer.substr(0, offset), std::string(offset, '\xaa'));
    EXPECT_EQ(buffer.substr(offset + 16), std::string(40 - offset - 16, '\xaa'));
    const ParsedFrame p = ParseFrame(absl::string_view(buffer).substr(offset));
    ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
    EXPECT_EQ(p.header, Header(FrameKind::kTopic, 9, 10));
    EXPECT_EQ(p.payload.size(), 40 - offset - 16);
  }
}

TEST(EnvelopeTest, MessageRoundTrip) {
  for (const std::string& payload : {std::string(), std::string("x"), std::string(1000, 'p'),
                                    std::string("\x01\x01\0\0", 4)}) {
    const std::string frame = std::string(kMessagePrefix) + payload;
    const ParsedFrame p = ParseFrame(frame);
    ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
    EXPECT_EQ(p.header.frame_kind(), FrameKind::kMessage);
    EXPECT_EQ(p.header, kMessageHeader);
    EXPECT_EQ(p.payload, payload);
    EXPECT_EQ(p.payload.data(), frame.data() + 16);  // a view, not a copy
  }
}

TEST(EnvelopeTest, EveryKindRoundTrips) {
  for (FrameKind kind : kAllKinds) {
    const bool message = kind == FrameKind::kMessage;
    for (uint32_t channel : {0u, 1u, 0xffffffffu}) {
      for (uint64_t correlation : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}}) {
        if (message && (channel != 0 || correlation != 0)) continue;
        const FrameHeader h = Header(kind, channel, correlation);
        const std::string frame = Encode(h) + "payload";
        const ParsedFrame p = ParseFrame(frame);
        ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
        EXPECT_EQ(p.header, h);
        EXPECT_EQ(p.payload, "payload");
        ExpectConsistent(frame);
      }
    }
  }
}

TEST(EnvelopeTest, BoundaryLengths) {
  const std::string full = std::string(kMessagePrefix) + "abc";
  for (size_t len = 0; len < kFrameHeaderBytes; ++len) {
    const ParsedFrame p = ParseFrame(absl::string_view(full).substr(0, len));
    EXPECT_EQ(p.error, FrameError::kTooShort) << "length " << len;
    EXPECT_TRUE(p.payload.empty());
    EXPECT_EQ(p.header.kind, 0);
  }
  const ParsedFrame exact = ParseFrame(absl::string_view(full).substr(0, 16));
  ASSERT_TRUE(exact.ok());
  EXPECT_TRUE(exact.payload.empty());
  const ParsedFrame one = ParseFrame(absl::string_view(full).substr(0, 17));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one.payload, "a");
  EXPECT_EQ(ParseFrame(absl::string_view()).error, FrameError::kTooShort);
}

TEST(EnvelopeTest, BadVersion) {
  for (int version : {0, 2, 3, 0x7f, 0x80, 0xff}) {
    const std::string frame =
        Encode(Header(FrameKind::kMessage, 0, 0, 0, static_cast<uint8_t>(version))) + "x";
    const ParsedFrame p = ParseFrame(frame);
    EXPECT_EQ(p.error, FrameError::kBadVersion) << "version " << version;
    EXPECT_TRUE(p.payload.empty());
    ExpectConsistent(frame);
  }
}

TEST(EnvelopeTest, UnknownKindIsNeverAMessage) {
  for (int kind = 0; kind < 256; ++kind) {
    std::string frame = std::string(kMessagePrefix) + "payload";
    frame[1] = static_cast<char>(kind);
    const ParsedFrame p = ParseFrame(frame);
    ExpectConsistent(frame);
    if (kind >= 1 && kind <= 5) {
      ASSERT_TRUE(p.ok()) << "kind " << kind;
      EXPECT_EQ(p.header.kind, kind);
    } else {
      EXPECT_EQ(p.error, FrameError::kUnknownKind) << "kind " << kind;
      EXPECT_NE(p.header.frame_kind(), FrameKind::kMessage);
      EXPECT_TRUE(p.payload.empty());
    }
  }
}

TEST(EnvelopeTest, EveryFlagBitIsUnknown) {
  for (FrameKind kind : kAllKinds) {
    for (int bit = 0; bit < 16; ++bit) {
      const std::string frame = Encode(Header(kind, 0, 0, static_cast<uint16_t>(1u << bit)));
      EXPECT_EQ(ParseFrame(frame).error, FrameError::kUnknownFlags) << "bit " << bit;
      ExpectConsistent(frame);
    }
  }
}

TEST(EnvelopeTest, MessageWithChannelOrCorrelationIsInvalid) {
  // Any nonzero byte in bytes 4..15 of a kMessage header.
  for (size_t i = 4; i < 16; ++i) {
    for (int value : {1, 0x80, 0xff}) {
      std::string frame(kMessagePrefix);
      frame[i] = static_cast<char>(value);
      const ParsedFrame p = ParseFrame(frame);
      EXPECT_EQ(p.error, FrameError::kBadMessageFields) << "byte " << i;
      EXPECT_NE(p.header.frame_kind(), FrameKind::kMessage);
      ExpectConsistent(frame);
    }
  }
}

TEST(EnvelopeTest, ReasonsAreReportedInDocumentedOrder) {
  // Bad version wins over everything after it, and so on down the list.
  EXPECT_EQ(ParseFrame(Encode(Header(FrameKind{0}, 1, 1, 1, 2))).error, FrameError::kBadVersion);
  EXPECT_EQ(ParseFrame(Encode(Header(FrameKind{9}, 1, 1, 1))).error, FrameError::kUnknownKind);
  EXPECT_EQ(ParseFrame(Encode(Header(FrameKind::kMessage, 1, 1, 1))).error,
            FrameError::kUnknownFlags);
  EXPECT_EQ(ParseFrame(Encode(Header(FrameKind::kMessage, 1, 1))).error,
            FrameError::kBadMessageFields);
  // Too short wins even over a wrong version byte.
  EXPECT_EQ(ParseFrame(absl::string_view("\x09\x09", 2)).error, FrameError::kTooShort);
}

TEST(EnvelopeTest, SpanOverloadMatchesStringView) {
  const std::string frame = Encode(Header(FrameKind::kResponse, 0, 77)) + "resp";
  const auto* data = reinterpret_cast<const uint8_t*>(frame.data());
  const ParsedFrame a = ParseFrame(absl::Span<const uint8_t>(data, frame.size()));
  const ParsedFrame b = ParseFrame(absl::string_view(frame));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.header, b.header);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.payload.data(), frame.data() + 16);
  EXPECT_EQ(ParseFrame(absl::Span<const uint8_t>(data, 15)).error, FrameError::kTooShort);
}

TEST(EnvelopeTest, EverySingleByteChangeOfAMessageHeader) {
  // A corrupted message header either fails, or is a valid frame of another
  // kind (byte 1 set to 2..5); it is never a message unless unchanged.
  for (size_t i = 0; i < 16; ++i) {
    for (int value = 0; value < 256; ++value) {
      std::string frame = std::string(kMessagePrefix) + "m";
      if (static_cast<uint8_t>(frame[i]) == value) continue;
      frame[i] = static_cast<char>(value);
      const ParsedFrame p = ParseFrame(frame);
      ExpectConsistent(frame);
      EXPECT_FALSE(p.ok() && p.header.frame_kind() == FrameKind::kMessage)
          << "byte " << i << " = " << value;
      if (p.ok()) {
        EXPECT_EQ(i, 1u);
        EXPECT_TRUE(value >= 2 && value <= 5);
      }
    }
  }
}

TEST(EnvelopeTest, RandomBytesNeverCrashAndMatchTheReference) {
  std::mt19937_64 rng(20240611);
  std::vector<char> buffer(80);
  int valid = 0;
  for (int i = 0; i < 200000; ++i) {
    for (char& c : buffer) c = static_cast<char>(rng());
    const size_t offset = rng() % 8;  // unaligned starts too
    const size_t len = rng() % (buffer.size() - offset);
    char* const data = buffer.data() + offset;
    // Bias a third of the inputs towards the valid region so every reason
    // is reached, not only kBadVersion.
    if (i % 3 == 0 && len >= 2) {
      data[0] = 1;
      data[1] = static_cast<char>(rng() % 7);
      if (rng() % 2) std::memset(data + 2, 0, std::min<size_t>(len, 16) - 2);
    }
    const absl::string_view frame(data, len);
    ExpectConsistent(frame);
    valid += ParseFrame(frame).ok();
  }
  EXPECT_GT(valid, 1000);
}

TEST(EnvelopeTest, ErrorNamesAndStatuses) {
  std::set<std::string> names;
  for (size_t e = 0; e < kFrameErrorCount; ++e) {
    const absl::string_view name = FrameErrorName(static_cast<FrameError>(e));
    EXPECT_FALSE(name.empty());
    EXPECT_NE(name, "invalid");
    names.insert(std::string(name));
  }
  EXPECT_EQ(names.size(), kFrameErrorCount);
  EXPECT_EQ(FrameErrorName(FrameError::kNone), "ok");
  EXPECT_EQ(FrameErrorName(static_cast<FrameError>(kFrameErrorCount)), "invalid");
  EXPECT_EQ(FrameErrorName(static_cast<FrameError>(0xff)), "invalid");

  EXPECT_TRUE(FrameErrorToStatus(FrameError::kNone).ok());
  EXPECT_EQ(FrameErrorToStatus(FrameError::kBadVersion).code(), absl::StatusCode::kUnimplemented);
  EXPECT_EQ(FrameErrorToStatus(FrameError::kUnknownKind).code(), absl::StatusCode::kUnimplemented);
  for (FrameError e : {FrameError::kTooShort, FrameError::kUnknownFlags,
                       FrameError::kBadMessageFields}) {
    const absl::Status s = FrameErrorToStatus(e);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(s.message(), HasSubstr(std::string(FrameErrorName(e))));
  }
  EXPECT_EQ(FrameErrorToStatus(static_cast<FrameError>(0xff)).code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mesh
