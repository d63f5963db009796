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
static_assert(IsKnownFrameKind(1) && IsKnownFrameKind(6), "1..6 are kinds");
static_assert(!IsKnownFrameKind(7) && !IsKnownFrameKind(255), "7..255 are invalid");
static_assert(kMessagePrefix.size() == kFrameBaseBytes, "prefix is one message header");
static_assert(kMessagePrefix.size() == WireHeaderBytes(FrameKind::kMessage), "prefix is one header");
static_assert(kFrameBaseBytes == 8 && kCorrelationBytes == 8 && kMaxFrameHeaderBytes == 16,
              "the documented sizes");
static_assert(WireHeaderBytes(FrameKind::kMessage) == 8 && WireHeaderBytes(FrameKind::kTopic) == 8 &&
                  WireHeaderBytes(FrameKind::kPoolRef) == 8,
              "no correlation on the wire");
static_assert(WireHeaderBytes(FrameKind::kRequest) == 16 && WireHeaderBytes(FrameKind::kResponse) == 16,
              "request and response carry their correlation");

constexpr FrameKind kAllKinds[] = {FrameKind::kMessage, FrameKind::kTopic, FrameKind::kRequest,
                                   FrameKind::kResponse, FrameKind::kPoolRef,
                                   FrameKind::kPoolRelease};

bool Correlated(FrameKind kind) { return kind == FrameKind::kRequest || kind == FrameKind::kResponse; }

// The wire bytes EncodeFrameHeader writes for `h` (checking it returns
// their count).
std::string Encode(const FrameHeader& h) {
  char out[kMaxFrameHeaderBytes];
  const size_t n = EncodeFrameHeader(h, out);
  EXPECT_EQ(n, WireHeaderBytes(h.kind));
  return std::string(out, n);
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
  size_t header_bytes;  // where the payload starts, when valid
};
Reference ReferenceParse(absl::string_view b) {
  if (b.size() < 8) return {FrameError::kTooShort, {}, 0};
  auto u = [&b](size_t i) { return static_cast<uint64_t>(static_cast<uint8_t>(b[i])); };
  FrameHeader h;
  h.version = static_cast<uint8_t>(u(0));
  h.kind = static_cast<uint8_t>(u(1));
  h.flags = static_cast<uint16_t>(u(2) | u(3) << 8);
  h.channel = static_cast<uint32_t>(u(4) | u(5) << 8 | u(6) << 16 | u(7) << 24);
  h.correlation = 0;
  if (h.version != 1) return {FrameError::kBadVersion, h, 0};
  if (h.kind < 1 || h.kind > 6) return {FrameError::kUnknownKind, h, 0};
  // Only kTopic (2) defines a flag: bit 0, declare.
  if ((h.flags & ~(h.kind == 2 ? 1 : 0)) != 0) return {FrameError::kUnknownFlags, h, 0};
  const bool correlated = h.kind == 3 || h.kind == 4;  // request, response
  if (correlated && b.size() < 16) return {FrameError::kTooShort, h, 0};
  if (h.kind == 1 && h.channel != 0) return {FrameError::kBadMessageFields, h, 0};
  if (correlated) {
    for (int i = 7; i >= 0; --i) h.correlation = h.correlation << 8 | u(8 + i);
  }
  return {FrameError::kNone, h, correlated ? size_t{16} : size_t{8}};
}

// Checks everything ParsedFrame promises for `frame`, against the reference.
void ExpectConsistent(absl::string_view frame) {
  const ParsedFrame p = ParseFrame(frame);
  const Reference r = ReferenceParse(frame);
  ASSERT_EQ(p.error, r.error) << FrameErrorName(p.error) << " vs " << FrameErrorName(r.error);
  if (p.ok()) {
    EXPECT_EQ(p.header, r.header);
    EXPECT_EQ(WireHeaderBytes(p.header.kind), r.header_bytes);
    EXPECT_EQ(p.payload.data(), frame.data() + r.header_bytes);
    EXPECT_EQ(p.payload.size(), frame.size() - r.header_bytes);
    EXPECT_EQ(Encode(p.header), frame.substr(0, r.header_bytes));
    if (!HasCorrelation(p.header.kind)) {
      EXPECT_EQ(p.header.correlation, 0u);
    }
  } else {
    EXPECT_EQ(p.header, (FrameHeader{0, 0, 0, 0, 0}));
    EXPECT_NE(p.header.frame_kind(), FrameKind::kMessage);
    EXPECT_TRUE(p.payload.empty());
  }
}

TEST(EnvelopeTest, WireHeaderBytesOfEveryKindValue) {
  for (int kind = 0; kind < 256; ++kind) {
    const bool correlated = kind == 3 || kind == 4;
    EXPECT_EQ(HasCorrelation(static_cast<uint8_t>(kind)), correlated) << "kind " << kind;
    EXPECT_EQ(WireHeaderBytes(static_cast<uint8_t>(kind)), correlated ? 16u : 8u) << "kind " << kind;
  }
  for (FrameKind kind : kAllKinds) {
    EXPECT_EQ(WireHeaderBytes(kind), WireHeaderBytes(static_cast<uint8_t>(kind)));
    EXPECT_EQ(HasCorrelation(kind), Correlated(kind));
  }
}

TEST(EnvelopeTest, MessagePrefixIsTheEncodedMessageHeader) {
  const std::string expected("\x01\x01\0\0\0\0\0\0", 8);
  EXPECT_EQ(kMessagePrefix, expected);
  EXPECT_EQ(Encode(kMessageHeader), expected);
  EXPECT_EQ(kMessageHeader, Header(FrameKind::kMessage));
}

TEST(EnvelopeTest, EncodingIsLittleEndianAtTheDocumentedOffsets) {
  // A request: the base, then the correlation.
  const FrameHeader h =
      Header(FrameKind::kRequest, 0x07060504u, 0x0f0e0d0c0b0a0908ull, 0x0302, kEnvelopeVersion);
  EXPECT_EQ(Encode(h), std::string("\x01\x03\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f",
                                   16));
  FrameHeader response = h;
  response.kind = static_cast<uint8_t>(FrameKind::kResponse);
  EXPECT_EQ(Encode(response),
            std::string("\x01\x04\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f", 16));
  // The other kinds: the base only; their correlation is not on the wire.
  for (FrameKind kind : {FrameKind::kMessage, FrameKind::kTopic, FrameKind::kPoolRef}) {
    FrameHeader base = h;
    base.kind = static_cast<uint8_t>(kind);
    std::string expected("\x01\x00\x02\x03\x04\x05\x06\x07", 8);
    expected[1] = static_cast<char>(kind);
    EXPECT_EQ(Encode(base), expected);
  }
}

TEST(EnvelopeTest, EncodeWritesExactlyItsHeaderAtAnyAlignment) {
  for (FrameKind kind : kAllKinds) {
    const size_t n = WireHeaderBytes(kind);
    const FrameHeader h = Header(kind, 9, Correlated(kind) ? 10 : 0);
    for (size_t offset = 0; offset < 8; ++offset) {
      std::string buffer(40, '\xaa');
      EXPECT_EQ(EncodeFrameHeader(h, buffer.data() + offset), n);
      EXPECT_EQ(buffer.substr(0, offset), std::string(offset, '\xaa'));
      EXPECT_EQ(buffer.substr(offset + n), std::string(40 - offset - n, '\xaa'));
      std::memset(&buffer[offset + n], 'p', 40 - offset - n);
      const ParsedFrame p = ParseFrame(absl::string_view(buffer).substr(offset));
      if (kind == FrameKind::kMessage) {
        EXPECT_EQ(p.error, FrameError::kBadMessageFields);  // channel 9
        continue;
      }
      ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
      EXPECT_EQ(p.header, h);
      EXPECT_EQ(p.payload, std::string(40 - offset - n, 'p'));
    }
  }
}

TEST(EnvelopeTest, CorrelationOfAKindWithoutOneIsNotEncoded) {
  for (FrameKind kind : {FrameKind::kMessage, FrameKind::kTopic, FrameKind::kPoolRef}) {
    const uint32_t channel = kind == FrameKind::kMessage ? 0 : 5;
    const std::string frame = Encode(Header(kind, channel, 0x1122334455667788ull)) + "payload";
    const ParsedFrame p = ParseFrame(frame);
    ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
    EXPECT_EQ(p.header, Header(kind, channel, 0));
    EXPECT_EQ(p.payload, "payload");
  }
}

TEST(EnvelopeTest, MessageRoundTrip) {
  for (const std::string& payload : {std::string(), std::string("x"), std::string(1000, 'p'),
                                    std::string("\x01\x01\0\0", 4), std::string(kMessagePrefix),
                                    std::string("\xff\xff\xff\xff\xff\xff\xff\xff\xff", 9)}) {
    const std::string frame = std::string(kMessagePrefix) + payload;
    const ParsedFrame p = ParseFrame(frame);
    ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
    EXPECT_EQ(p.header.frame_kind(), FrameKind::kMessage);
    EXPECT_EQ(p.header, kMessageHeader);
    EXPECT_EQ(p.payload, payload);
    EXPECT_EQ(p.payload.data(), frame.data() + 8);  // a view, not a copy
    ExpectConsistent(frame);
  }
}

TEST(EnvelopeTest, EveryKindRoundTrips) {
  for (FrameKind kind : kAllKinds) {
    const bool message = kind == FrameKind::kMessage;
    for (uint32_t channel : {0u, 1u, 0xffffffffu}) {
      for (uint64_t correlation : {uint64_t{0}, uint64_t{1}, ~uint64_t{0}}) {
        if (message && channel != 0) continue;
        if (!Correlated(kind) && correlation != 0) continue;
        const FrameHeader h = Header(kind, channel, correlation);
        const std::string header = Encode(h);
        EXPECT_EQ(header.size(), Correlated(kind) ? 16u : 8u);
        const std::string frame = header + "payload";
        const ParsedFrame p = ParseFrame(frame);
        ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
        EXPECT_EQ(p.header, h);
        EXPECT_EQ(p.payload, "payload");
        EXPECT_EQ(p.payload.data(), frame.data() + header.size());
        ExpectConsistent(frame);
      }
    }
  }
}

TEST(EnvelopeTest, BoundaryLengths) {
  for (FrameKind kind : kAllKinds) {
    const size_t n = WireHeaderBytes(kind);
    const std::string full = Encode(Header(kind, 0, Correlated(kind) ? 7 : 0)) + "abc";
    for (size_t len = 0; len < n; ++len) {
      const ParsedFrame p = ParseFrame(absl::string_view(full).substr(0, len));
      EXPECT_EQ(p.error, FrameError::kTooShort) << "kind " << static_cast<int>(kind) << " length " << len;
      EXPECT_TRUE(p.payload.empty());
      EXPECT_EQ(p.header.kind, 0);
      ExpectConsistent(absl::string_view(full).substr(0, len));
    }
    const ParsedFrame exact = ParseFrame(absl::string_view(full).substr(0, n));
    ASSERT_TRUE(exact.ok()) << FrameErrorName(exact.error);
    EXPECT_TRUE(exact.payload.empty());
    EXPECT_EQ(exact.payload.data(), full.data() + n);
    const ParsedFrame one = ParseFrame(absl::string_view(full).substr(0, n + 1));
    ASSERT_TRUE(one.ok());
    EXPECT_EQ(one.payload, "a");
  }
  EXPECT_EQ(ParseFrame(absl::string_view()).error, FrameError::kTooShort);
}

TEST(EnvelopeTest, RequestOrResponseWithoutItsCorrelationIsTooShort) {
  // A valid base of a correlated kind, cut anywhere in its correlation.
  for (FrameKind kind : {FrameKind::kRequest, FrameKind::kResponse}) {
    const std::string header = Encode(Header(kind, 3, 0x0102030405060708ull));
    for (size_t len = 8; len < 16; ++len) {
      const std::string frame = header.substr(0, len);
      const ParsedFrame p = ParseFrame(frame);
      EXPECT_EQ(p.error, FrameError::kTooShort) << "length " << len;
      EXPECT_TRUE(p.payload.empty());
      EXPECT_EQ(p.header, (FrameHeader{0, 0, 0, 0, 0}));
      ExpectConsistent(frame);
    }
  }
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
  // Long enough for every kind's header, and as short as a plain message.
  for (const std::string& payload : {std::string("payload and more"), std::string()}) {
    for (int kind = 0; kind < 256; ++kind) {
      std::string frame = std::string(kMessagePrefix) + payload;
      frame[1] = static_cast<char>(kind);
      const ParsedFrame p = ParseFrame(frame);
      ExpectConsistent(frame);
      if (kind >= 1 && kind <= 6 && frame.size() >= WireHeaderBytes(static_cast<uint8_t>(kind))) {
        ASSERT_TRUE(p.ok()) << "kind " << kind;
        EXPECT_EQ(p.header.kind, kind);
      } else if (kind >= 1 && kind <= 6) {
        EXPECT_EQ(p.error, FrameError::kTooShort) << "kind " << kind;
      } else {
        EXPECT_EQ(p.error, FrameError::kUnknownKind) << "kind " << kind;
        EXPECT_NE(p.header.frame_kind(), FrameKind::kMessage);
        EXPECT_TRUE(p.payload.empty());
      }
    }
  }
}

TEST(EnvelopeTest, EveryFlagBitButTopicDeclareIsUnknown) {
  for (FrameKind kind : kAllKinds) {
    for (int bit = 0; bit < 16; ++bit) {
      const std::string frame = Encode(Header(kind, 0, 0, static_cast<uint16_t>(1u << bit)));
      if (kind == FrameKind::kTopic && bit == 0) {
        const ParsedFrame p = ParseFrame(frame);
        ASSERT_TRUE(p.ok()) << FrameErrorName(p.error);
        EXPECT_EQ(p.header.flags, kFrameFlagDeclare);
      } else {
        EXPECT_EQ(ParseFrame(frame).error, FrameError::kUnknownFlags) << "kind " << int(kind) << " bit " << bit;
      }
      ExpectConsistent(frame);
    }
  }
}

TEST(EnvelopeTest, MessageWithChannelIsInvalid) {
  // Any nonzero byte in bytes 4..7 (channel) of a kMessage header.
  for (size_t i = 4; i < 8; ++i) {
    for (int value : {1, 0x80, 0xff}) {
      std::string frame = std::string(kMessagePrefix) + "payload!";
      frame[i] = static_cast<char>(value);
      const ParsedFrame p = ParseFrame(frame);
      EXPECT_EQ(p.error, FrameError::kBadMessageFields) << "byte " << i;
      EXPECT_NE(p.header.frame_kind(), FrameKind::kMessage);
      ExpectConsistent(frame);
    }
  }
}

TEST(EnvelopeTest, MessageBytesAfterTheBaseArePayload) {
  // What was the correlation of the 16-byte envelope is payload now: any
  // value there leaves a valid message.
  for (size_t i = 8; i < 16; ++i) {
    for (int value : {1, 0x80, 0xff}) {
      std::string frame = std::string(kMessagePrefix) + std::string(8, '\0');
      frame[i] = static_cast<char>(value);
      const ParsedFrame p = ParseFrame(frame);
      ASSERT_TRUE(p.ok()) << "byte " << i << ": " << FrameErrorName(p.error);
      EXPECT_EQ(p.header, kMessageHeader);
      EXPECT_EQ(p.payload, absl::string_view(frame).substr(8));
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
  // A request cut short: version, kind and flags are checked before its
  // length, and its length before anything else.
  const std::string request = Encode(Header(FrameKind::kRequest, 1, 1));
  EXPECT_EQ(ParseFrame(absl::string_view(request).substr(0, 8)).error, FrameError::kTooShort);
  EXPECT_EQ(ParseFrame(Encode(Header(FrameKind::kRequest, 1, 1, 1)).substr(0, 8)).error,
            FrameError::kUnknownFlags);
  EXPECT_EQ(ParseFrame(Encode(Header(FrameKind::kRequest, 1, 1, 0, 2)).substr(0, 8)).error,
            FrameError::kBadVersion);
  // Too short for the base wins even over a wrong version byte.
  EXPECT_EQ(ParseFrame(absl::string_view("\x09\x09", 2)).error, FrameError::kTooShort);
  EXPECT_EQ(ParseFrame(absl::string_view("\x09\x09\x09\x09\x09\x09\x09", 7)).error,
            FrameError::kTooShort);
}

TEST(EnvelopeTest, SpanOverloadMatchesStringView) {
  for (const std::string& frame : {Encode(Header(FrameKind::kResponse, 0, 77)) + "resp",
                                   std::string(kMessagePrefix) + "msg"}) {
    const auto* data = reinterpret_cast<const uint8_t*>(frame.data());
    const ParsedFrame a = ParseFrame(absl::Span<const uint8_t>(data, frame.size()));
    const ParsedFrame b = ParseFrame(absl::string_view(frame));
    ASSERT_TRUE(a.ok());
    EXPECT_EQ(a.header, b.header);
    EXPECT_EQ(a.payload, b.payload);
    EXPECT_EQ(a.payload.data(), frame.data() + WireHeaderBytes(a.header.kind));
    EXPECT_EQ(ParseFrame(absl::Span<const uint8_t>(data, 7)).error, FrameError::kTooShort);
  }
  const std::string response = Encode(Header(FrameKind::kResponse, 0, 77));
  EXPECT_EQ(ParseFrame(absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(response.data()), 15))
                .error,
            FrameError::kTooShort);
}

TEST(EnvelopeTest, EverySingleByteChangeOfAMessageFrame) {
  // A corrupted message header either fails, or is a valid frame of another
  // kind (byte 1 set to 2..5, 3 and 4 only with room for a correlation); it
  // is never a message unless unchanged. A changed byte after the header is
  // a changed payload of the same message.
  for (const std::string& payload : {std::string("m"), std::string("0123456789abcdef")}) {
    const std::string original = std::string(kMessagePrefix) + payload;
    for (size_t i = 0; i < original.size(); ++i) {
      for (int value = 0; value < 256; ++value) {
        std::string frame = original;
        if (static_cast<uint8_t>(frame[i]) == value) continue;
        frame[i] = static_cast<char>(value);
        const ParsedFrame p = ParseFrame(frame);
        ExpectConsistent(frame);
        if (i >= kMessagePrefix.size()) {
          ASSERT_TRUE(p.ok()) << "byte " << i << " = " << value;
          EXPECT_EQ(p.header, kMessageHeader);
          EXPECT_EQ(p.payload, absl::string_view(frame).substr(8));
          continue;
        }
        EXPECT_FALSE(p.ok() && p.header.frame_kind() == FrameKind::kMessage)
            << "byte " << i << " = " << value;
        if (p.ok()) {
          EXPECT_EQ(i, 1u);
          EXPECT_TRUE(value >= 2 && value <= 6);
          EXPECT_TRUE(frame.size() >= 16 || (value != 3 && value != 4));
        }
      }
    }
  }
}

TEST(EnvelopeTest, EverySingleByteChangeOfARequestHeader) {
  // In a request's 16-byte header, bytes 0..7 are checked and bytes 8..15
  // (the correlation) take any value.
  const FrameHeader h = Header(FrameKind::kRequest, 0x01020304u, 0x1112131415161718ull);
  const std::string original = Encode(h) + "req";
  for (size_t i = 0; i < 16; ++i) {
    for (int value = 0; value < 256; ++value) {
      std::string frame = original;
      if (static_cast<uint8_t>(frame[i]) == value) continue;
      frame[i] = static_cast<char>(value);
      const ParsedFrame p = ParseFrame(frame);
      ExpectConsistent(frame);
      if (i >= 8 || (i >= 4 && i < 8)) {  // correlation or channel: any value
        ASSERT_TRUE(p.ok()) << "byte " << i << " = " << value;
        EXPECT_EQ(p.header.frame_kind(), FrameKind::kRequest);
        EXPECT_NE(p.header, h);
        EXPECT_EQ(p.payload, "req");
      } else if (p.ok()) {
        EXPECT_EQ(i, 1u);  // another valid kind
        EXPECT_TRUE(value >= 1 && value <= 6) << value;
      }
    }
  }
}

TEST(EnvelopeTest, RandomBytesNeverCrashAndMatchTheReference) {
  std::mt19937_64 rng(20240611);
  std::vector<char> buffer(80);
  int valid = 0;
  int too_short = 0;
  for (int i = 0; i < 200000; ++i) {
    for (char& c : buffer) c = static_cast<char>(rng());
    const size_t offset = rng() % 8;  // unaligned starts too
    const size_t len = rng() % (buffer.size() - offset);
    char* const data = buffer.data() + offset;
    // Bias a third of the inputs towards the valid region so every reason
    // is reached, not only kBadVersion; short lengths are frequent too.
    if (i % 3 == 0 && len >= 2) {
      data[0] = 1;
      data[1] = static_cast<char>(rng() % 7);
      if (rng() % 2) std::memset(data + 2, 0, std::min<size_t>(len, 8) - 2);
    }
    const absl::string_view frame(data, i % 5 == 0 ? len % 20 : len);
    ExpectConsistent(frame);
    const ParsedFrame p = ParseFrame(frame);
    valid += p.ok();
    too_short += p.error == FrameError::kTooShort && frame.size() >= 8;
  }
  EXPECT_GT(valid, 1000);
  EXPECT_GT(too_short, 100);  // requests and responses cut in their correlation
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
