#include "mesh/links/link_acceptor.h"

#include <sys/epoll.h>

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/epoll.h"

namespace mesh {

LinkAcceptor::LinkAcceptor(int listen_fd, base::Epoll* epoll, uint64_t listen_tag, uint64_t first_pending_tag,
                           const Logger* log, Hooks hooks, Limits limits)
    : listen_fd_(listen_fd),
      epoll_(epoll),
      listen_tag_(listen_tag),
      first_pending_tag_(first_pending_tag),
      log_(log),
      hooks_(std::move(hooks)),
      limits_(limits),
      next_tag_(first_pending_tag) {}

LinkAcceptor::~LinkAcceptor() {
  for (auto it = pending_.begin(); it != pending_.end();) it = Drop(it);
}

absl::Status LinkAcceptor::Start() { return epoll_->Add(listen_fd_, EPOLLIN, listen_tag_); }

void LinkAcceptor::OnEvent(uint64_t tag) {
  if (tag == listen_tag_) {
    AcceptAll();
    return;
  }
  if (auto it = lingering_.find(tag); it != lingering_.end()) {
    // The refused dialer's hello came (or it hung up): consume, and close.
    Link::DrainRefused(it->second.conn.get());
    epoll_->Remove(it->second.conn.get());
    lingering_.erase(it);
    return;
  }
  if (tag >= first_pending_tag_) OnPendingEvent(tag);
}

void LinkAcceptor::AcceptAll() {
  // At most kAcceptBatch per call: under a connection flood the listening
  // socket stays readable (epoll is level-triggered) and the thread comes
  // back, after it has served the events of the handshakes in progress.
  for (int i = 0; i < kAcceptBatch && !listen_paused_until_.has_value(); ++i) {
    absl::StatusOr<base::UniqueFd> conn = fdpass::Accept(listen_fd_, absl::InfinitePast());
    if (absl::IsDeadlineExceeded(conn.status())) return;  // nothing queued
    if (absl::IsUnavailable(conn.status())) continue;     // the dialer gave up first
    if (!conn.ok()) {
      // Out of descriptors (RESOURCE_EXHAUSTED), or worse: the connection
      // stays queued and the socket readable. Leave it alone for a while
      // (OnTimer watches it again); handshakes in progress go on.
      const absl::Time now = absl::Now();
      uint64_t left_out = 0;
      if (exhausted_.Allow(now, &left_out)) {
        log_->Warning("cannot accept link connections: %s; retrying every %s (raise RLIMIT_NOFILE or close "
                      "descriptors)%s",
                      conn.status().message(), absl::FormatDuration(kAcceptBackoff), LogLimiter::LeftOut(left_out));
      }
      epoll_->Remove(listen_fd_);
      listen_paused_until_ = now + kAcceptBackoff;
      return;
    }
    Admit(std::move(*conn), absl::Now());
  }
}

void LinkAcceptor::Admit(base::UniqueFd conn, absl::Time now) {
  absl::StatusOr<fdpass::PeerCred> cred = fdpass::GetPeerCred(conn.get());
  if (!cred.ok()) {
    Refused(absl::StrCat("a connection without credentials: ", cred.status().message()));
    return;
  }
  if (absl::Status screened = Link::Screen(hooks_.params(), *cred); !screened.ok()) {
    RefuseAndLinger(std::move(conn), screened, now);
    return;
  }
  if (!hooks_.is_member_pid(cred->pid)) {
    RefuseAndLinger(std::move(conn),
                    absl::NotFoundError(absl::StrCat("pid ", cred->pid,
                                                     " has not joined through discovery (no member runs as that "
                                                     "process); join first")),
                    now);
    return;
  }
  const auto counted = pending_per_pid_.find(cred->pid);
  const size_t from_pid = counted == pending_per_pid_.end() ? 0 : counted->second;
  if (from_pid >= limits_.max_pending_per_pid || pending_.size() >= limits_.max_pending) {
    RefuseAndLinger(std::move(conn),
                    absl::ResourceExhaustedError(absl::StrCat(
                        "pid ", cred->pid, " already has ", from_pid, " link handshake(s) in progress (",
                        pending_.size(), " in all; at most ", limits_.max_pending_per_pid, " per process and ",
                        limits_.max_pending, " in all); try again when they finish")),
                    now);
    return;
  }
  const uint64_t tag = next_tag_++;
  if (absl::Status added = epoll_->Add(conn.get(), EPOLLIN | EPOLLRDHUP, tag); !added.ok()) {
    Refused(absl::StrCat("cannot watch a connection from pid ", cred->pid, ": ", added.message()));
    return;
  }
  ++pending_per_pid_[cred->pid];
  pending_.emplace(tag, Pending{std::move(conn), *cred, now, now + limits_.handshake_timeout});
}

void LinkAcceptor::RefuseAndLinger(base::UniqueFd conn, const absl::Status& why, absl::Time now) {
  // The reason goes to the dialer at once (best effort, never waits).
  Link::Refuse(conn.get(), why);
  Refused(std::string(why.message()), absl::IsNotFound(why));
  if (lingering_.size() >= limits_.max_lingering) return;  // closed now
  const uint64_t tag = next_tag_++;
  if (!epoll_->Add(conn.get(), EPOLLIN | EPOLLRDHUP, tag).ok()) return;
  lingering_.emplace(tag, Lingering{std::move(conn), now + limits_.refused_linger});
}

void LinkAcceptor::OnPendingEvent(uint64_t tag) {
  auto it = pending_.find(tag);
  if (it == pending_.end()) return;
  absl::StatusOr<fdpass::ReceivedMessage> hello = fdpass::ReceiveMessage(it->second.conn.get(), absl::InfinitePast());
  if (absl::IsDeadlineExceeded(hello.status())) return;  // woken for nothing: keep waiting
  const fdpass::PeerCred cred = it->second.cred;
  const absl::Time accepted = it->second.accepted;
  base::UniqueFd conn = std::move(it->second.conn);
  epoll_->Remove(conn.get());
  Drop(it);
  if (!hello.ok()) {
    Refused(absl::StrCat("no link hello from pid ", cred.pid, ": ", hello.status().message()));
    return;
  }
  absl::StatusOr<std::shared_ptr<Link>> link =
      Link::AcceptHello(std::move(conn), cred, std::move(*hello), hooks_.params(), hooks_.lookup, accepted,
                        hooks_.take_spare_ring());
  hooks_.replenish_spare_ring();
  if (!link.ok()) {
    Refused(std::string(link.status().message()), absl::IsNotFound(link.status()));
    return;
  }
  hooks_.install(std::move(*link));
}

void LinkAcceptor::OnTimer(absl::Time now) {
  if (listen_paused_until_.has_value() && now >= *listen_paused_until_) {
    listen_paused_until_.reset();
    if (absl::Status added = epoll_->Add(listen_fd_, EPOLLIN, listen_tag_); !added.ok()) {
      // Still short of descriptors (epoll needs none, but be safe): retry.
      listen_paused_until_ = now + kAcceptBackoff;
    } else {
      AcceptAll();
    }
  }
  for (auto it = lingering_.begin(); it != lingering_.end();) {
    if (now < it->second.deadline) {
      ++it;
      continue;
    }
    epoll_->Remove(it->second.conn.get());
    it = lingering_.erase(it);
  }
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (now < it->second.deadline) {
      ++it;
      continue;
    }
    Refused(absl::StrCat("pid ", it->second.cred.pid, " sent no link hello within ",
                         absl::FormatDuration(limits_.handshake_timeout), "; closed its connection"));
    epoll_->Remove(it->second.conn.get());
    it = Drop(it);
  }
}

absl::Time LinkAcceptor::NextTimer() const {
  absl::Time next = listen_paused_until_.value_or(absl::InfiniteFuture());
  for (const auto& [tag, p] : pending_) next = std::min(next, p.deadline);
  for (const auto& [tag, l] : lingering_) next = std::min(next, l.deadline);
  return next;
}

std::map<uint64_t, LinkAcceptor::Pending>::iterator LinkAcceptor::Drop(
    std::map<uint64_t, Pending>::iterator it) {
  auto count = pending_per_pid_.find(it->second.cred.pid);
  if (count != pending_per_pid_.end() && --count->second == 0) pending_per_pid_.erase(count);
  return pending_.erase(it);
}

void LinkAcceptor::Refused(const std::string& why, bool startup_race) {
  uint64_t left_out = 0;
  if (!refusals_.Allow(absl::Now(), &left_out)) return;
  if (startup_race && left_out == 0) {
    // A lone refusal of a process we have not heard of: typically a dialer
    // that heard of us before we heard of it (simultaneous start); it
    // announces itself and dials again. Nothing is wrong yet.
    log_->Debug("refused a link connection: %s", why);
    return;
  }
  log_->Warning("refused a link connection: %s%s", why, LogLimiter::LeftOut(left_out, "refused"));
}

}  // namespace mesh
