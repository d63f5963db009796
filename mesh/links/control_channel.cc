#include "mesh/links/control_channel.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "fdpass/socket.h"

namespace mesh {
namespace links {
namespace {

using mesh::v1::LinkControl;

static_assert(kMaxControlMessageBytes <= fdpass::kMaxMessageBytes,
              "fdpass must be able to receive every control message whole");
static_assert(kMaxControlFds <= fdpass::kMaxFdsPerMessage,
              "fdpass must be able to receive every control message's fds");

// How many descriptors a known kind may carry: PoolSegment its segment's
// memfd (exactly one: mesh/pool checks the count), SharedRing its ring,
// cursor page and doorbell end (exactly three: mesh/dataplane/shared_rings
// checks), the others none.
size_t MaxFdsOf(LinkControl::BodyCase body,
                const ControlChannelOptions& options) {
  switch (body) {
    case LinkControl::kPing:
      return options.testing_fds_on_ping ? kMaxControlFds : 0;
    case LinkControl::kPoolSegment:
      return 1;
    case LinkControl::kSharedRing:
      return 3;
    case LinkControl::kSharedRingEnd:
    case LinkControl::kGoodbye:
    case LinkControl::kPong:
    case LinkControl::kInterest:
    case LinkControl::kPoolRetire:
    case LinkControl::BODY_NOT_SET:
      return 0;
  }
  return 0;  // Not reached: BodyCase is closed in this build.
}

const char* KindName(LinkControl::BodyCase body) {
  switch (body) {
    case LinkControl::kGoodbye:
      return "Goodbye";
    case LinkControl::kPing:
      return "Ping";
    case LinkControl::kPong:
      return "Pong";
    case LinkControl::kInterest:
      return "Interest";
    case LinkControl::kPoolSegment:
      return "PoolSegment";
    case LinkControl::kPoolRetire:
      return "PoolRetire";
    case LinkControl::kSharedRing:
      return "SharedRing";
    case LinkControl::kSharedRingEnd:
      return "SharedRingEnd";
    case LinkControl::BODY_NOT_SET:
      return "unknown";
  }
  return "unknown";
}

}  // namespace

absl::Status ValidateLinkControl(const LinkControl& msg, size_t num_fds,
                                 const ControlChannelOptions& options) {
  if (num_fds > kMaxControlFds) {
    return absl::InvalidArgumentError(
        absl::StrCat("control message carries ", num_fds,
                     " descriptors; the limit is ", kMaxControlFds));
  }
  const LinkControl::BodyCase body = msg.body_case();
  if (body == LinkControl::BODY_NOT_SET) {
    // A body case this build does not know parses into unknown fields, so
    // the message is not empty. Truly empty is nobody's message.
    if (msg.ByteSizeLong() == 0) {
      return absl::InvalidArgumentError("control message has no body");
    }
    return absl::OkStatus();  // A newer peer's kind: the receiver ignores it.
  }
  const size_t allowed = MaxFdsOf(body, options);
  if (num_fds > allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat("control message ", KindName(body), " carries ", num_fds,
                     " descriptors; it may carry ", allowed));
  }
  return absl::OkStatus();
}

ControlChannel::ControlChannel(int socket, ControlChannelOptions options)
    : socket_(socket), options_(options) {}

absl::Status ControlChannel::Send(const LinkControl& msg,
                                  absl::Span<const int> fds) {
  if (msg.body_case() == LinkControl::BODY_NOT_SET) {
    return absl::InvalidArgumentError(
        "cannot send a control message with no body set");
  }
  SHMESH_RETURN_IF_ERROR(ValidateLinkControl(msg, fds.size(), options_));
  const size_t size = msg.ByteSizeLong();
  if (size > kMaxControlMessageBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "control message ", KindName(msg.body_case()), " is ", size,
        " bytes serialized; the limit is ", kMaxControlMessageBytes));
  }
  std::string bytes;
  if (!msg.SerializeToString(&bytes)) {
    return absl::InternalError("cannot serialize a control message");
  }
  // A past deadline: fdpass tries once (MSG_DONTWAIT | MSG_NOSIGNAL) and
  // reports a full buffer as DEADLINE_EXCEEDED instead of waiting.
  absl::Status sent =
      fdpass::SendMessage(socket_, bytes, fds, absl::InfinitePast());
  if (absl::IsDeadlineExceeded(sent)) {
    // relaxed: a plain event count (see the header).
    send_full_.fetch_add(1, std::memory_order_relaxed);
    return absl::ResourceExhaustedError(absl::StrCat(
        "link socket ", socket_,
        " send buffer is full (the peer is not reading its control "
        "messages); ",
        KindName(msg.body_case()), " not sent"));
  }
  SHMESH_RETURN_IF_ERROR(sent);
  // relaxed: plain event counts (see the header).
  sent_messages_.fetch_add(1, std::memory_order_relaxed);
  sent_fds_.fetch_add(fds.size(), std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<ReceivedControl>> ControlChannel::Read() {
  for (size_t taken = 0; taken < kMaxMessagesPerRead; ++taken) {
    // A past deadline: one MSG_DONTWAIT recvmsg; nothing queued reads as
    // DEADLINE_EXCEEDED. fdpass owns every descriptor before it looks at
    // anything, and closes them all on its errors (truncation, too many).
    absl::StatusOr<fdpass::ReceivedMessage> raw =
        fdpass::ReceiveMessage(socket_, absl::InfinitePast());
    if (absl::IsDeadlineExceeded(raw.status())) return std::nullopt;
    if (absl::IsOutOfRange(raw.status())) {
      return absl::UnavailableError(
          absl::StrCat("peer closed the link socket (fd ", socket_, ")"));
    }
    if (!raw.ok()) return raw.status();
    // From here on, returning drops `raw`, which closes its descriptors.
    if (raw->bytes.size() > kMaxControlMessageBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "control message of ", raw->bytes.size(), " bytes on link socket ",
          socket_, " exceeds the ", kMaxControlMessageBytes,
          "-byte limit; closed its ", raw->fds.size(), " descriptors"));
    }
    ReceivedControl out;
    if (!out.message.ParseFromString(raw->bytes)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unparseable control message (", raw->bytes.size(),
          " bytes) on link socket ", socket_, "; closed its ",
          raw->fds.size(), " descriptors"));
    }
    absl::Status valid = ValidateLinkControl(out.message, raw->fds.size(), options_);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(valid.message(), " (link socket ", socket_,
                       "); closed its descriptors"));
    }
    if (out.message.body_case() == LinkControl::BODY_NOT_SET) {
      // A newer peer's kind: skip it; `raw` closes its descriptors.
      // relaxed: a plain event count (see the header).
      ignored_messages_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    out.fds = std::move(raw->fds);
    // relaxed: plain event counts (see the header).
    received_messages_.fetch_add(1, std::memory_order_relaxed);
    received_fds_.fetch_add(out.fds.size(), std::memory_order_relaxed);
    return std::optional<ReceivedControl>(std::move(out));
  }
  return std::nullopt;  // Budget spent on ignored messages; more may wait.
}

ControlChannelStats ControlChannel::Stats() const {
  // relaxed: independent event counts; the snapshot promises no instant.
  ControlChannelStats s;
  s.sent_messages = sent_messages_.load(std::memory_order_relaxed);
  s.sent_fds = sent_fds_.load(std::memory_order_relaxed);
  s.send_full = send_full_.load(std::memory_order_relaxed);
  s.received_messages = received_messages_.load(std::memory_order_relaxed);
  s.received_fds = received_fds_.load(std::memory_order_relaxed);
  s.ignored_messages = ignored_messages_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace links
}  // namespace mesh
