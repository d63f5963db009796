#include "mesh/dataplane/frame_dispatch.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mesh/pool/pool_ref.h"

namespace mesh {

FrameDispatch::FrameDispatch(Targets targets, size_t max_message_bytes, DispatchCounters* counters,
                             const Logger* log)
    : targets_(std::move(targets)), max_message_bytes_(max_message_bytes), counters_(counters), log_(log) {}

bool FrameDispatch::RouteShared(const std::shared_ptr<Transport>& link, uint32_t channel, absl::string_view topic,
                                absl::string_view payload) {
  if (Oversize(*link, payload.size(), payload.size())) return true;
  return targets_.router == nullptr || targets_.router->RouteShared(link, channel, topic, payload);
}

bool FrameDispatch::RouteSlow(const std::shared_ptr<Transport>& link, absl::string_view frame) {
  const ParsedFrame parsed = ParseFrame(frame);
  if (!parsed.ok()) {
    BumpCounter(counters_->dropped_invalid);
    NoteDrop(*link, FrameErrorName(parsed.error), frame.size());
    return true;
  }
  const FrameKind kind = parsed.header.frame_kind();
  if (kind == FrameKind::kPoolRef && targets_.inboxes != nullptr) return RoutePooled(link, parsed, frame.size());
  if (kind == FrameKind::kPoolRelease && targets_.pool != nullptr) {
    if (!pool::IsReleasePayload(parsed.payload)) {
      BumpCounter(counters_->dropped_invalid);
      NoteDrop(*link, "a pool release that is not a whole number of tokens", frame.size());
    } else {
      targets_.pool->OnRelease(link.get(), parsed.payload);
    }
    return true;
  }
  if (targets_.router == nullptr ||
      (kind != FrameKind::kTopic && kind != FrameKind::kRequest && kind != FrameKind::kResponse)) {
    // (A valid kMessage header always passes the fast check.)
    BumpCounter(counters_->dropped_unhandled);
    NoteDrop(*link, absl::StrCat("frame kind ", parsed.header.kind, " is not handled by this node"), frame.size());
    return true;
  }
  if (Oversize(*link, parsed.payload.size(), frame.size())) return true;
  Flush();  // keep a link's frames in order across kinds
  return targets_.router->RouteFrame(link, parsed.header, parsed.payload, nullptr);
}

bool FrameDispatch::RoutePooled(const std::shared_ptr<Transport>& link, const ParsedFrame& parsed,
                                size_t frame_bytes) {
  pool::Inbox* inbox = targets_.inboxes->Get(link);
  std::shared_ptr<const pool::PooledPayload> pooled;
  const pool::RefError e = inbox->Resolve(parsed.payload, max_message_bytes_, &pooled);
  if (e == pool::RefError::kUnknownSegment && !inbox->awaiting_control) {
    inbox->awaiting_control = true;
    return false;
  }
  inbox->awaiting_control = false;
  if (e != pool::RefError::kNone) {
    BumpCounter(counters_->dropped_bad_refs);
    targets_.inboxes->CountBadRef();
    NoteDrop(*link, absl::StrCat("a pool reference that does not resolve (", pool::RefErrorName(e), ")"),
             frame_bytes);
    return true;
  }
  if (parsed.header.channel != 0) {
    if (targets_.router == nullptr) {
      BumpCounter(counters_->dropped_unhandled);
      return true;
    }
    Flush();
    FrameHeader topic;
    topic.kind = static_cast<uint8_t>(FrameKind::kTopic);
    topic.channel = parsed.header.channel;
    return targets_.router->RouteFrame(link, topic, pooled->bytes(), pooled);
  }
  if (targets_.message_handler) {
    targets_.message_handler(MessageView{link->peer_name(), pooled->bytes(), {}});
  } else {
    Message m;
    m.from = link->peer_name();
    m.shared = std::move(pooled);
    queued_.push_back(std::move(m));
  }
  return true;
}

void FrameDispatch::DropOversize(const Transport& link, size_t frame_bytes) {
  BumpCounter(counters_->dropped_oversize);
  NoteDrop(link, absl::StrCat("the payload exceeds this node's max_message_bytes (", max_message_bytes_, ")"),
           frame_bytes);
}

void FrameDispatch::NoteDrop(const Transport& link, absl::string_view what, size_t bytes) {
  uint64_t left_out = 0;
  if (drop_log_.Allow(absl::Now(), &left_out)) {
    log_->Warning("dropped a frame of %d bytes from %s: %s%s", bytes, link.peer_name(), what,
                  LogLimiter::LeftOut(left_out, "dropped frames"));
  }
}

}  // namespace mesh
