// Fuzz target: mesh::links::ControlChannel, the link socket's control
// channel after the handshake, against a hostile peer.
//
// Input (FuzzInput; zeros past the end):
//   u8 head     bits 0-4: n = value % 21 descriptors attached (over our cap
//               of 8 and over fdpass's 16); bit 5: both ends let Ping carry
//               descriptors (ControlChannelOptions::testing_fds_on_ping, so
//               delivery is covered); bit 6: the peer hangs up after
//               sending; bit 7: pad the message past fdpass's 64 KiB (the
//               kernel truncates it: MSG_TRUNC).
//   u8 mode     bits 0-2: the first descriptor kind (FdKind; the i-th is
//               (first + i) % kFdKindCount); bit 3: grow the message past
//               4096 bytes with an unknown field 100 (still parseable, so
//               only the size check can refuse it); bit 4: the send side:
//               parse the rest as a LinkControl and hand it to
//               ControlChannel::Send instead of writing it raw.
//   rest        the message bytes.
// The peer's end writes the message with one raw sendmsg (any bytes, any
// number of descriptors, also an empty message, which reads as EOF); the
// channel on the other end reads it. No thread, no waiting: every call is
// non-blocking.
//
// Properties checked (a violation aborts: a crash for libFuzzer):
//   * no crash, no sanitizer report, no descriptor leak (same /proc/self/fd
//     count after each input);
//   * Read accepts a message if and only if it is well-formed: at most
//     4096 bytes and 8 descriptors, parseable, not empty, and descriptors
//     only on a kind that may carry them (checked here independently of
//     ValidateLinkControl: Goodbye, Pong, Interest and PoolRetire never,
//     PoolSegment at most one, Ping only with bit 5). A known kind comes back equal to what was sent, with exactly the
//     descriptors sent, each open and close-on-exec; an unknown kind is
//     counted as ignored and never returned. Errors are only UNAVAILABLE
//     (EOF), DATA_LOSS (truncation) and INVALID_ARGUMENT;
//   * after the message: EOF (bit 6) reads as UNAVAILABLE, else nothing is
//     left to read; a Ping can be answered with a Pong that arrives intact;
//   * Send accepts exactly the well-formed messages with a body, and what
//     it sends reads back equal, with its descriptors.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "google/protobuf/stubs/logging.h"
#include "mesh/links/control_channel.h"
#include "mesh/v1/mesh.pb.h"
#include "tests/fuzz/fuzz_util.h"

namespace shmesh_fuzz {
namespace {

using base::UniqueFd;
using mesh::links::ControlChannel;
using mesh::links::ControlChannelOptions;
using mesh::links::kMaxControlFds;
using mesh::links::kMaxControlMessageBytes;
using mesh::links::ReceivedControl;
using mesh::v1::LinkControl;

constexpr uint8_t kHeadFdCountMask = 0x1f;
constexpr uint8_t kHeadFdsOnPing = 1 << 5;
constexpr uint8_t kHeadHangUp = 1 << 6;
constexpr uint8_t kHeadTruncate = 1 << 7;
constexpr uint8_t kModeFdKindMask = 0x07;
constexpr uint8_t kModeOversize = 1 << 3;
constexpr uint8_t kModeSendSide = 1 << 4;

// The descriptors a message can carry.
enum FdKind : uint8_t { kMemfd, kPipeRead, kEventfd, kDevNull, kSocket, kFdKindCount };

// Made on first use for one input, owned here.
class FdFactory {
 public:
  int Get(FdKind kind) {
    if (fds_[kind].valid()) return fds_[kind].get();
    int fd = -1;
    switch (kind) {
      case kMemfd:
        fd = ::memfd_create("control-fuzz", MFD_CLOEXEC);
        FUZZ_CHECK(fd >= 0, absl::StrCat("memfd_create: ", std::strerror(errno)));
        FUZZ_CHECK(::pwrite(fd, "seg", 3, 0) == 3, "pwrite memfd");
        break;
      case kPipeRead: {
        int p[2];
        FUZZ_CHECK(::pipe2(p, O_CLOEXEC) == 0, absl::StrCat("pipe2: ", std::strerror(errno)));
        pipe_write_.reset(p[1]);
        fd = p[0];
        break;
      }
      case kEventfd:
        fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        FUZZ_CHECK(fd >= 0, absl::StrCat("eventfd: ", std::strerror(errno)));
        break;
      case kDevNull:
        fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
        FUZZ_CHECK(fd >= 0, absl::StrCat("open /dev/null: ", std::strerror(errno)));
        break;
      case kSocket: {
        absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = fdpass::SeqpacketPair();
        FUZZ_CHECK(pair.ok(), pair.status().ToString());
        socket_other_ = std::move(pair->second);
        fd = pair->first.release();
        break;
      }
      case kFdKindCount:
        FuzzFail(__FILE__, __LINE__, "bad FdKind");
    }
    fds_[kind].reset(fd);
    return fd;
  }

 private:
  UniqueFd fds_[kFdKindCount];
  UniqueFd pipe_write_, socket_other_;
};

bool CodeIn(const absl::Status& s, std::initializer_list<absl::StatusCode> codes) {
  for (absl::StatusCode c : codes) {
    if (s.code() == c) return true;
  }
  return false;
}

// The wire rules, written out again here so that the target does not trust
// ValidateLinkControl: may a message with `bytes` and `n` descriptors be
// accepted? Sets *known when it parses to a known kind.
bool WellFormed(const std::string& bytes, size_t n, bool fds_on_ping, LinkControl* parsed,
                bool* known) {
  *known = false;
  if (bytes.size() > kMaxControlMessageBytes || n > kMaxControlFds) return false;
  if (bytes.empty()) return false;  // EOF (n == 0) or an empty body
  if (!parsed->ParseFromString(bytes)) return false;
  switch (parsed->body_case()) {
    case LinkControl::kGoodbye:
    case LinkControl::kPong:
      *known = true;
      return n == 0;
    case LinkControl::kPing:
      *known = true;
      return n == 0 || fds_on_ping;
    case LinkControl::kInterest:
      // Subscriptions and services (mesh/topic.h, mesh/rpc.h): never with
      // descriptors. Its contents are the node's to judge, not the
      // channel's: any parseable Interest passes here.
      *known = true;
      return n == 0;
    case LinkControl::kPoolSegment:
      // A pool segment (mesh/pool/README.md): its memfd, at most one. The
      // channel lets 0 through (the node's inbox refuses it and fails the
      // link); what the descriptor is, is also the inbox's to judge.
      *known = true;
      return n <= 1;
    case LinkControl::kPoolRetire:
      *known = true;
      return n == 0;
    case LinkControl::kSharedRing:
      // A shared ring (mesh/dataplane/shared_rings.h): its ring, cursor
      // page and doorbell end, at most three. Fewer pass here (the node's
      // SharedRings refuses them and fails the link), as for PoolSegment.
      *known = true;
      return n <= 3;
    case LinkControl::kSharedRingEnd:
      *known = true;
      return n == 0;
    case LinkControl::BODY_NOT_SET:
      // Unknown kind (what it parsed into is all unknown fields): ignored,
      // with its descriptors. Nothing at all is an empty body.
      return parsed->ByteSizeLong() > 0;
  }
  return false;
}

void CheckReceivedFds(const ReceivedControl& got, size_t n) {
  FUZZ_CHECK(got.fds.size() == n,
             absl::StrCat("Read returned ", got.fds.size(), " descriptors; ", n, " were sent"));
  for (const UniqueFd& fd : got.fds) {
    const int flags = ::fcntl(fd.get(), F_GETFD);
    FUZZ_CHECK(flags >= 0 && (flags & FD_CLOEXEC), "received descriptor closed or not close-on-exec");
  }
}

// A Ping that arrived is answered; the Pong must reach the peer intact.
void AnswerPing(ControlChannel& reader, int peer, const LinkControl& ping, bool peer_gone) {
  LinkControl pong;
  pong.mutable_pong()->set_token(ping.ping().token());
  absl::Status sent = reader.Send(pong);
  if (peer_gone) {
    FUZZ_CHECK(absl::IsUnavailable(sent), absl::StrCat("Send to a gone peer: ", sent.ToString()));
    return;
  }
  FUZZ_CHECK(sent.ok(), absl::StrCat("Send(Pong): ", sent.ToString()));
  absl::StatusOr<fdpass::ReceivedMessage> raw = fdpass::ReceiveMessage(peer, absl::InfinitePast());
  FUZZ_CHECK(raw.ok() && raw->fds.empty() && raw->bytes == pong.SerializeAsString(),
             "the Pong did not arrive intact");
}

void RunReadSide(FuzzInput& in, uint8_t head, uint8_t mode, FdFactory& factory) {
  const size_t n = (head & kHeadFdCountMask) % 21;
  const bool fds_on_ping = head & kHeadFdsOnPing;
  const bool hang_up = head & kHeadHangUp;
  std::string bytes(in.Rest());
  if (mode & kModeOversize) {
    // Field 100, length-delimited (tag 0xa2 0x06), a 2-byte length (so
    // 128..16383 bytes): stays parseable and ends just over the limit.
    const size_t fill = bytes.size() + 4 + 128 <= kMaxControlMessageBytes + 1
                            ? kMaxControlMessageBytes + 1 - bytes.size() - 4
                            : 200;
    bytes += std::string("\xa2\x06", 2);
    bytes += static_cast<char>(0x80 | (fill & 0x7f));
    bytes += static_cast<char>((fill >> 7) & 0x7f);
    bytes += std::string(fill, 'p');
  }
  if (head & kHeadTruncate) bytes.resize(fdpass::kMaxMessageBytes + 1, '\0');

  std::vector<int> fds;
  for (size_t i = 0; i < n; ++i) {
    fds.push_back(factory.Get(static_cast<FdKind>(((mode & kModeFdKindMask) + i) % kFdKindCount)));
  }
  absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = fdpass::SeqpacketPair();
  FUZZ_CHECK(pair.ok(), pair.status().ToString());
  UniqueFd peer = std::move(pair->first);
  const ControlChannelOptions options{fds_on_ping};
  ControlChannel reader(pair->second.get(), options);

  absl::Status wrote = SendRaw(peer.get(), bytes, fds);
  FUZZ_CHECK(wrote.ok(), absl::StrCat("SendRaw: ", wrote.ToString()));
  if (hang_up) peer.reset();

  LinkControl parsed;
  bool known = false;
  const bool good = !(head & kHeadTruncate) && WellFormed(bytes, n, fds_on_ping, &parsed, &known);
  absl::StatusOr<std::optional<ReceivedControl>> got = reader.Read();
  if (Verbose()) {
    std::fprintf(stderr, "control_channel: %zu bytes, %zu fds -> %s\n", bytes.size(), n,
                 !got.ok() ? got.status().ToString().c_str() : got->has_value() ? "message" : "nothing");
  }
  if (!got.ok()) {
    FUZZ_CHECK(CodeIn(got.status(), {absl::StatusCode::kUnavailable, absl::StatusCode::kDataLoss,
                                     absl::StatusCode::kInvalidArgument}),
               absl::StrCat("Read failed with an undocumented code: ", got.status().ToString()));
    // A well-formed message fails only through the EOF behind an ignored one.
    FUZZ_CHECK(!good || (!known && hang_up && absl::IsUnavailable(got.status())),
               absl::StrCat("Read refused a well-formed message: ", got.status().ToString()));
    if (bytes.empty() && n == 0) {
      FUZZ_CHECK(absl::IsUnavailable(got.status()), "an empty message (EOF) did not read as UNAVAILABLE");
    }
    FUZZ_CHECK(reader.Stats().received_messages == 0, "a failed Read counted a message");
    return;
  }
  FUZZ_CHECK(good, "Read accepted a malformed message (size, descriptors or bytes)");
  if (!known) {
    FUZZ_CHECK(!got->has_value(), "Read returned a message of an unknown kind");
    FUZZ_CHECK(reader.Stats().ignored_messages == 1, "an unknown kind was not counted");
    FUZZ_CHECK(!hang_up, "Read missed the EOF behind an ignored message");
    return;
  }
  FUZZ_CHECK(got->has_value(), "Read lost a well-formed message");
  const ReceivedControl& msg = **got;
  FUZZ_CHECK(msg.message.SerializeAsString() == parsed.SerializeAsString(),
             "Read returned another message than was sent");
  CheckReceivedFds(msg, n);
  FUZZ_CHECK(msg.fds.empty() || msg.message.has_ping() || (msg.message.has_pool_segment() && msg.fds.size() == 1) ||
                 (msg.message.has_shared_ring() && msg.fds.size() <= 3),
             "descriptors accepted on a kind that carries none, or more than its kind carries");

  absl::StatusOr<std::optional<ReceivedControl>> next = reader.Read();
  if (hang_up) {
    FUZZ_CHECK(absl::IsUnavailable(next.status()),
               absl::StrCat("EOF after the message read as ", next.status().ToString()));
  } else {
    FUZZ_CHECK(next.ok() && !next->has_value(), "something more to read after one message");
  }
  if (msg.message.has_ping()) AnswerPing(reader, peer.get(), msg.message, hang_up);
}

void RunSendSide(FuzzInput& in, uint8_t head, uint8_t mode, FdFactory& factory) {
  const size_t n = (head & kHeadFdCountMask) % 21;
  const bool fds_on_ping = head & kHeadFdsOnPing;
  LinkControl msg;
  if (!msg.ParseFromString(std::string(in.Rest()))) return;
  if (mode & kModeOversize) msg.mutable_goodbye()->set_reason(std::string(kMaxControlMessageBytes, 'r'));
  std::vector<int> fds;
  for (size_t i = 0; i < n; ++i) {
    fds.push_back(factory.Get(static_cast<FdKind>(((mode & kModeFdKindMask) + i) % kFdKindCount)));
  }
  absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = fdpass::SeqpacketPair();
  FUZZ_CHECK(pair.ok(), pair.status().ToString());
  const ControlChannelOptions options{fds_on_ping};
  ControlChannel sender(pair->first.get(), options);
  ControlChannel reader(pair->second.get(), options);

  const std::string bytes = msg.SerializeAsString();
  LinkControl parsed;
  bool known = false;
  const bool good = WellFormed(bytes, n, fds_on_ping, &parsed, &known) && known;
  absl::Status sent = sender.Send(msg, fds);
  if (Verbose()) {
    std::fprintf(stderr, "control_channel: Send of %zu bytes, %zu fds -> %s\n", bytes.size(), n,
                 sent.ToString().c_str());
  }
  if (!sent.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(sent), absl::StrCat("Send failed with ", sent.ToString()));
    FUZZ_CHECK(!good, absl::StrCat("Send refused a well-formed message: ", sent.ToString()));
    FUZZ_CHECK(sender.Stats().sent_messages == 0, "a refused Send counted a message");
    return;
  }
  FUZZ_CHECK(good, "Send sent a malformed message");
  absl::StatusOr<std::optional<ReceivedControl>> got = reader.Read();
  FUZZ_CHECK(got.ok() && got->has_value(),
             absl::StrCat("what Send sent did not read back: ",
                          got.ok() ? "nothing" : got.status().ToString()));
  FUZZ_CHECK((*got)->message.SerializeAsString() == bytes, "Send's message read back changed");
  CheckReceivedFds(**got, n);
}

}  // namespace
}  // namespace shmesh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmesh_fuzz;  // NOLINT(build/namespaces): a C entry point
  static const bool quiet = [] {
    // Invalid UTF-8 never reaches a string field (LinkControl's text is
    // bytes), but keep protobuf's log off the fuzzer's output regardless.
    google::protobuf::SetLogHandler(nullptr);
    return true;
  }();
  (void)quiet;
  const size_t fds_before = OpenFds();
  {
    FuzzInput in(data, size);
    const uint8_t head = in.U8();
    const uint8_t mode = in.U8();
    FdFactory factory;
    if (mode & kModeSendSide) {
      RunSendSide(in, head, mode, factory);
    } else {
      RunReadSide(in, head, mode, factory);
    }
  }
  const size_t fds_after = OpenFds();
  FUZZ_CHECK(fds_after == fds_before,
             absl::StrCat("descriptor leak: ", fds_before, " open before, ", fds_after, " after"));
  return 0;
}
