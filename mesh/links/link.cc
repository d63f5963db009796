#include "mesh/links/link.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/base/optimization.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "fdpass/socket.h"

namespace mesh {
namespace {

// 2: a ring travels as its memfd and the consumer's end of its doorbell
// socket pair (1: memfd and two eventfds).
constexpr uint32_t kLinkProtocolVersion = 2;
// How long a send waits for ring space between checks that the link is up.
constexpr absl::Duration kSendSlice = absl::Milliseconds(20);

// Adds to a counter that has a single writer at a time (callers say which
// lock or thread makes it so). A relaxed load and store instead of a
// fetch_add: no locked instruction on the hot path, and readers (Stats) need
// no ordering with other memory.
void Bump(std::atomic<uint64_t>& counter, uint64_t n) {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
// Descriptors that come with a ring: its memfd and the consumer's doorbell end.
constexpr size_t kFdsPerRing = 2;

bool UidAllowed(const LinkParams& self, uid_t uid) {
  return std::find(self.allowed_uids.begin(), self.allowed_uids.end(), uid) != self.allowed_uids.end();
}

// Sends `msg` with the descriptors of `ring` that its consumer needs
// (borrowed: sendmsg passes copies; the caller drops its copy of the
// consumer's doorbell end once the handshake succeeded).
absl::Status SendWithRing(int sock, const google::protobuf::MessageLite& msg, const ringbuf::Ring& ring,
                          absl::Time deadline) {
  std::string bytes;
  if (!msg.SerializeToString(&bytes)) return absl::InternalError("cannot serialize handshake message");
  const int fds[kFdsPerRing] = {ring.region_fd(), ring.consumer_doorbell_fd()};
  return fdpass::SendMessage(sock, bytes, absl::MakeConstSpan(fds), deadline);
}

// Maps the peer's ring from the descriptors of a handshake message, after
// checking the capacity it claims against our bound.
absl::StatusOr<ringbuf::Ring> MapPeerRing(std::vector<base::UniqueFd> fds, uint64_t capacity,
                                          const LinkParams& self, absl::string_view peer) {
  if (fds.size() != kFdsPerRing) {
    return absl::InvalidArgumentError(absl::StrCat("link handshake from '", peer, "' carried ", fds.size(),
                                                   " descriptors, expected ", kFdsPerRing));
  }
  if (capacity == 0 || capacity > self.max_peer_ring_bytes || (capacity & (capacity - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("'", peer, "' offered a ring of ", capacity,
                                                   " bytes; expected a power of two up to ",
                                                   self.max_peer_ring_bytes));
  }
  SHMESH_ASSIGN_OR_RETURN(
      ringbuf::SharedRegion region,
      ringbuf::SharedRegion::Map(std::move(fds[0]), ringbuf::RingRegionSize(capacity)));
  return ringbuf::Ring::Attach(std::move(region), std::move(fds[1]), ringbuf::RingEnd::kConsumer, self.wait);
}

}  // namespace

Link::Link(mesh::v1::Member peer, base::UniqueFd socket, ringbuf::Ring tx, ringbuf::Ring rx,
           const LinkParams& self, absl::Time handshake_start, uint32_t peer_heartbeat_interval_ms)
    : peer_(std::move(peer)),
      since_(absl::Now()),
      handshake_(since_ - handshake_start),
      // The value comes from the peer: bounded so a hostile one cannot make
      // itself unmonitorable.
      peer_heartbeat_interval_(absl::Milliseconds(std::min<uint32_t>(peer_heartbeat_interval_ms, 10000))),
      socket_(std::move(socket)),
      control_(socket_.get()),
      tx_ring_(std::move(tx)),
      rx_ring_(std::move(rx)),
      tx_max_frame_(tx_ring_.producer().MaxFrameSize()),
      initial_peer_beat_(tx_ring_.ConsumerHeartbeat()) {}

Link::~Link() { (void)MarkDown(); }

Transport::WaitHandles Link::wait_handles() const {
  return WaitHandles{socket_.get(), rx_ring_.consumer_doorbell_fd()};
}

absl::StatusOr<std::shared_ptr<Link>> Link::Dial(const LinkParams& self, const mesh::v1::Member& peer,
                                                 absl::Time deadline, std::optional<ringbuf::Ring> tx_ring) {
  const absl::Time start = absl::Now();
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd sock, fdpass::ConnectSeqpacket(peer.link_socket(), deadline));
  // The listener's credentials were recorded when it called listen(): they
  // must be those discovery announced for this peer.
  SHMESH_ASSIGN_OR_RETURN(fdpass::PeerCred cred, fdpass::GetPeerCred(sock.get()));
  if (cred.pid != peer.pid()) {
    return absl::PermissionDeniedError(absl::StrCat("link socket ", peer.link_socket(), " is served by pid ", cred.pid,
                                                    ", but '", peer.name(), "' announced pid ", peer.pid(),
                                                    "; not linking"));
  }
  if (!UidAllowed(self, cred.uid)) {
    return absl::PermissionDeniedError(absl::StrCat("'", peer.name(), "' (pid ", cred.pid, ") runs as uid ", cred.uid,
                                                    ", which is not in allowed_peer_uids; not linking"));
  }
  if (!tx_ring.has_value()) {
    SHMESH_ASSIGN_OR_RETURN(tx_ring, ringbuf::Ring::Create(self.ring_capacity_bytes, self.wait));
  }
  ringbuf::Ring tx = std::move(*tx_ring);
  mesh::v1::LinkHello hello;
  hello.set_version(kLinkProtocolVersion);
  hello.set_name(self.name);
  hello.set_id(self.id);
  hello.set_to_name(peer.name());
  hello.set_to_id(peer.id());
  hello.set_ring_capacity_bytes(self.ring_capacity_bytes);
  hello.set_heartbeat_interval_ms(static_cast<uint32_t>(absl::ToInt64Milliseconds(self.heartbeat_interval)));
  if (absl::Status sent = SendWithRing(sock.get(), hello, tx, deadline); !sent.ok()) {
    // An acceptor that refuses us at once (say, it does not know our pid
    // yet) may have answered and closed before our hello went out: its
    // reason is then waiting for us.
    auto early = fdpass::ReceiveMessage(sock.get(), absl::InfinitePast());
    mesh::v1::LinkReply reply;
    if (early.ok() && reply.ParseFromString(early->bytes) && reply.has_reject_reason()) {
      return absl::AbortedError(absl::StrCat("'", peer.name(), "' refused the link: ", absl::CHexEscape(reply.reject_reason())));
    }
    return sent;
  }

  auto msg = fdpass::ReceiveMessage(sock.get(), deadline);
  if (!msg.ok()) {
    return absl::Status(msg.status().code(), absl::StrCat("no link reply from '", peer.name(), "': ",
                                                          msg.status().message()));
  }
  mesh::v1::LinkReply reply;
  if (!reply.ParseFromString(msg->bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("'", peer.name(), "' sent a malformed LinkReply"));
  }
  if (reply.has_reject_reason()) {
    return absl::AbortedError(absl::StrCat("'", peer.name(), "' refused the link: ", absl::CHexEscape(reply.reject_reason())));
  }
  if (!reply.has_welcome() || reply.welcome().name() != peer.name() || reply.welcome().id() != peer.id()) {
    return absl::InvalidArgumentError(absl::StrCat("'", peer.name(), "' answered with the wrong identity"));
  }
  SHMESH_ASSIGN_OR_RETURN(
      ringbuf::Ring rx, MapPeerRing(std::move(msg->fds), reply.welcome().ring_capacity_bytes(), self, peer.name()));
  tx.DropConsumerDoorbell();  // the peer has its copy
  return std::shared_ptr<Link>(new Link(peer, std::move(sock), std::move(tx), std::move(rx), self, start,
                                        reply.welcome().heartbeat_interval_ms()));
}

namespace {

// Best effort: tells the dialer why (it logs our reason). A failure to send
// changes nothing: the connection closes either way. Never waits.
void SendReject(int conn, const absl::Status& why) {
  mesh::v1::LinkReply reply;
  reply.set_reject_reason(std::string(why.message()));
  std::string bytes;
  if (reply.SerializeToString(&bytes)) (void)fdpass::SendMessage(conn, bytes, {}, absl::InfinitePast());
}

}  // namespace

absl::Status Link::Screen(const LinkParams& self, const fdpass::PeerCred& cred) {
  if (!UidAllowed(self, cred.uid)) {
    return absl::PermissionDeniedError(
        absl::StrCat("pid ", cred.pid, " runs as uid ", cred.uid, ", which is not in allowed_peer_uids"));
  }
  return absl::OkStatus();
}

void Link::Refuse(int conn, const absl::Status& why) {
  SendReject(conn, why);
  DrainRefused(conn);
}

void Link::DrainRefused(int conn) {
  // Closing a socket with a message unread resets the connection, and the
  // dialer's next receive would get ECONNRESET instead of our reason:
  // consume what already came (closing any descriptors it carried).
  for (int i = 0; i < 4; ++i) {
    if (!fdpass::ReceiveMessage(conn, absl::InfinitePast()).ok()) break;
  }
}

absl::StatusOr<std::shared_ptr<Link>> Link::Accept(base::UniqueFd conn, const LinkParams& self,
                                                   const MemberLookup& lookup, absl::Time deadline,
                                                   std::optional<ringbuf::Ring> tx_ring) {
  const absl::Time start = absl::Now();
  SHMESH_ASSIGN_OR_RETURN(fdpass::PeerCred cred, fdpass::GetPeerCred(conn.get()));
  if (absl::Status screened = Screen(self, cred); !screened.ok()) {
    // Give the dialer's hello a moment to arrive, so that Refuse consumes
    // it and the dialer reads our reason.
    (void)fdpass::WaitReadable(conn.get(), absl::Now() + absl::Milliseconds(100));
    Refuse(conn.get(), screened);
    return screened;
  }
  auto msg = fdpass::ReceiveMessage(conn.get(), deadline);
  if (!msg.ok()) {
    return absl::Status(msg.status().code(), absl::StrCat("no link hello from pid ", cred.pid, ": ",
                                                          msg.status().message()));
  }
  return AcceptHello(std::move(conn), cred, std::move(*msg), self, lookup, start, std::move(tx_ring));
}

absl::StatusOr<std::shared_ptr<Link>> Link::AcceptHello(base::UniqueFd conn, const fdpass::PeerCred& cred,
                                                        fdpass::ReceivedMessage msg, const LinkParams& self,
                                                        const MemberLookup& lookup, absl::Time start,
                                                        std::optional<ringbuf::Ring> tx_ring) {
  auto reject = [&](absl::Status why) {
    Refuse(conn.get(), why);
    return why;
  };
  // Our ring does not depend on the hello; one made in advance saves the
  // few syscalls of creating it here.
  absl::StatusOr<ringbuf::Ring> tx = tx_ring.has_value()
                                         ? absl::StatusOr<ringbuf::Ring>(std::move(*tx_ring))
                                         : ringbuf::Ring::Create(self.ring_capacity_bytes, self.wait);
  if (!tx.ok()) return reject(tx.status());
  mesh::v1::LinkHello hello;
  if (!hello.ParseFromString(msg.bytes)) {
    return reject(absl::InvalidArgumentError(absl::StrCat("pid ", cred.pid, " sent a malformed LinkHello")));
  }
  if (hello.version() != kLinkProtocolVersion) {
    return reject(absl::InvalidArgumentError(absl::StrCat("pid ", cred.pid, " speaks link protocol ",
                                                          hello.version(), ", we speak ", kLinkProtocolVersion)));
  }
  if (hello.to_name() != self.name || hello.to_id() != self.id) {
    return reject(absl::FailedPreconditionError(absl::StrCat(
        "hello from '", absl::CHexEscape(hello.name()), "' is for '", absl::CHexEscape(hello.to_name()), "' id ", absl::Hex(hello.to_id()),
        ", not this node (a stale announcement?)")));
  }
  auto member = lookup(hello.name(), hello.id());
  if (!member.ok()) return reject(member.status());
  if (member->pid() != cred.pid) {
    return reject(absl::PermissionDeniedError(absl::StrCat("pid ", cred.pid, " claims to be '", absl::CHexEscape(hello.name()),
                                                           "', which discovery announced as pid ", member->pid())));
  }
  auto rx = MapPeerRing(std::move(msg.fds), hello.ring_capacity_bytes(), self, hello.name());
  if (!rx.ok()) return reject(rx.status());
  mesh::v1::LinkReply reply;
  reply.mutable_welcome()->set_name(self.name);
  reply.mutable_welcome()->set_id(self.id);
  reply.mutable_welcome()->set_ring_capacity_bytes(self.ring_capacity_bytes);
  reply.mutable_welcome()->set_heartbeat_interval_ms(
      static_cast<uint32_t>(absl::ToInt64Milliseconds(self.heartbeat_interval)));
  // Never waits: the first message on a fresh connection always has room
  // (a dialer that shrank its buffer only fails its own handshake).
  SHMESH_RETURN_IF_ERROR(SendWithRing(conn.get(), reply, *tx, absl::InfinitePast()));
  tx->DropConsumerDoorbell();  // the peer has its copy
  return std::shared_ptr<Link>(new Link(*member, std::move(conn), std::move(*tx), std::move(*rx), self, start,
                                        hello.heartbeat_interval_ms()));
}

absl::Status Link::Send(absl::string_view payload, absl::Time deadline) {
  return SendFrame(absl::string_view(), payload, deadline);
}

absl::Status Link::SendBatch(absl::Span<const absl::string_view> payloads, absl::Time deadline,
                             size_t* written) {
  return SendFrames(absl::string_view(), payloads, deadline, written);
}

size_t Link::MaxPayload(size_t prefix_bytes) const {
  return prefix_bytes >= tx_max_frame_ ? 0 : tx_max_frame_ - prefix_bytes;
}

absl::Status Link::SendFrame(absl::string_view prefix, absl::string_view payload, absl::Time deadline) {
  // acquire pairs with the release in MarkDown (see link.h).
  if (down_.load(std::memory_order_acquire)) {
    return absl::UnavailableError(absl::StrCat("link to '", peer_.name(), "' is down (the peer left or died)"));
  }
  std::lock_guard<std::mutex> lock(send_mu_);
  // Fast path: with room in the ring, Write never reads the clock (the past
  // deadline is only looked at once the ring is full).
  absl::Status s = tx_ring_.producer().Write(prefix, payload, absl::InfinitePast());
  if (ABSL_PREDICT_TRUE(s.ok())) {
    // relaxed load + store, no read-modify-write: send_mu_ makes us the
    // only writer, and Stats() readers need no ordering with anything else.
    Bump(tx_messages_, 1);
    Bump(tx_bytes_, prefix.size() + payload.size());
    return s;
  }
  size_t written = 0;
  if (s.code() == absl::StatusCode::kResourceExhausted) {
    // relaxed load + store (Bump): send_mu_ makes us the only writer. One
    // full event per send that found the ring full.
    Bump(tx_full_events_, 1);
    s = WaitAndSendLocked(prefix, absl::MakeConstSpan(&payload, 1), deadline, &written);
  }
  CountSentLocked(prefix, absl::MakeConstSpan(&payload, 1), written);
  return s;
}

absl::Status Link::SendFrames(absl::string_view prefix, absl::Span<const absl::string_view> payloads,
                              absl::Time deadline, size_t* written) {
  *written = 0;
  // acquire pairs with the release in MarkDown (see link.h).
  if (down_.load(std::memory_order_acquire)) {
    return absl::UnavailableError(absl::StrCat("link to '", peer_.name(), "' is down (the peer left or died)"));
  }
  std::lock_guard<std::mutex> lock(send_mu_);
  // Fast path: with room in the ring, WriteBatch never reads the clock (the
  // past deadline is only looked at once the ring is full).
  absl::Status s = tx_ring_.producer().WriteBatch(prefix, payloads, absl::InfinitePast(), written);
  if (s.code() == absl::StatusCode::kResourceExhausted) {
    // relaxed load + store (Bump): send_mu_ makes us the only writer. One
    // full event per send that found the ring full.
    Bump(tx_full_events_, 1);
    size_t more = 0;
    s = WaitAndSendLocked(prefix, payloads.subspan(*written), deadline, &more);
    *written += more;
  }
  CountSentLocked(prefix, payloads, *written);
  return s;
}

absl::Status Link::SendInPlace(size_t max_len, absl::Time deadline,
                               absl::FunctionRef<size_t(absl::Span<uint8_t>)> fill) {
  // acquire pairs with the release in MarkDown (see link.h).
  if (down_.load(std::memory_order_acquire)) {
    return absl::UnavailableError(absl::StrCat("link to '", peer_.name(), "' is down (the peer left or died)"));
  }
  std::lock_guard<std::mutex> lock(send_mu_);
  ringbuf::RingProducer& producer = tx_ring_.producer();
  absl::StatusOr<absl::Span<uint8_t>> room = producer.Reserve(max_len, absl::InfinitePast());
  if (!room.ok() && room.status().code() == absl::StatusCode::kResourceExhausted) {
    // relaxed load + store (Bump): send_mu_ makes us the only writer.
    Bump(tx_full_events_, 1);
    bool waited = false;
    for (;;) {
      const absl::Time now = absl::Now();
      if (now >= deadline) {
        const std::string what = absl::StrCat("ring to '", peer_.name(), "' is full");
        return waited ? absl::DeadlineExceededError(absl::StrCat(what, " until the deadline"))
                      : absl::ResourceExhaustedError(what);
      }
      room = producer.Reserve(max_len, std::min(deadline, now + kSendSlice));
      waited = true;
      if (room.ok() || room.status().code() != absl::StatusCode::kResourceExhausted) break;
      // acquire pairs with the release in MarkDown (see link.h).
      if (down_.load(std::memory_order_acquire)) {
        return absl::UnavailableError(absl::StrCat("link to '", peer_.name(), "' went down while waiting for room"));
      }
    }
  }
  if (!room.ok()) return room.status();
  const size_t len = std::min(fill(*room), room->size());
  if (len == 0) return absl::OkStatus();  // abandoned: the next Reserve replaces it
  SHMESH_RETURN_IF_ERROR(producer.Commit(len));
  // relaxed load + store: send_mu_ makes us the only writer.
  Bump(tx_messages_, 1);
  Bump(tx_bytes_, len);
  return absl::OkStatus();
}

absl::Status Link::WaitAndSendLocked(absl::string_view prefix, absl::Span<const absl::string_view> payloads,
                                     absl::Time deadline, size_t* written) {
  *written = 0;
  bool waited = false;
  for (;;) {
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      const std::string what = absl::StrCat("ring to '", peer_.name(), "' is full");
      return waited ? absl::DeadlineExceededError(absl::StrCat(what, " until the deadline"))
                    : absl::ResourceExhaustedError(what);
    }
    // Wait in slices so a send blocked on a full ring notices the link
    // going down (the peer died) and stops waiting.
    size_t n = 0;
    absl::Status s = tx_ring_.producer().WriteBatch(prefix, payloads.subspan(*written),
                                                    std::min(deadline, now + kSendSlice), &n);
    *written += n;
    waited = true;
    if (s.code() != absl::StatusCode::kResourceExhausted) return s;
    // acquire pairs with the release in MarkDown (see link.h).
    if (down_.load(std::memory_order_acquire)) {
      return absl::UnavailableError(absl::StrCat("link to '", peer_.name(), "' went down while waiting for room"));
    }
  }
}

void Link::CountSentLocked(absl::string_view prefix, absl::Span<const absl::string_view> payloads, size_t n) {
  if (n > 0) {
    uint64_t bytes = n * prefix.size();
    for (size_t i = 0; i < n; ++i) bytes += payloads[i].size();
    // relaxed load + store, no read-modify-write: send_mu_ makes us the
    // only writer; Stats() readers need no ordering with anything else.
    Bump(tx_messages_, n);
    Bump(tx_bytes_, bytes);
  }
}

absl::Status Link::SendControl(const mesh::v1::LinkControl& msg, absl::Span<const int> fds) {
  return control_.Send(msg, fds);
}

absl::StatusOr<std::optional<ControlMessage>> Link::ReadControl() {
  absl::StatusOr<std::optional<links::ReceivedControl>> read = control_.Read();
  if (!read.ok()) return read.status();
  if (!read->has_value()) return std::nullopt;
  return ControlMessage{std::move((*read)->message), std::move((*read)->fds)};
}

absl::StatusOr<size_t> Link::Drain(size_t max_frames, absl::FunctionRef<bool(absl::string_view)> fn) {
  if (!consumer_role_.TakeToDrain()) return 0;  // lent: its borrower takes its frames
  absl::StatusOr<size_t> drained = DrainOwned(max_frames, fn);
  consumer_role_.Release();
  return drained;
}

absl::StatusOr<size_t> Link::DrainOwned(size_t max_frames, absl::FunctionRef<bool(absl::string_view)> fn) {
  uint64_t bytes = 0;
  // One head store (and at most one doorbell) for the whole batch.
  absl::StatusOr<size_t> drained =
      rx_ring_.consumer().DrainWhile(max_frames, [&](absl::Span<const uint8_t> frame) {
        if (!fn(absl::string_view(reinterpret_cast<const char*>(frame.data()), frame.size()))) return false;
        bytes += frame.size();
        return true;
      });
  if (!drained.ok()) return drained.status();
  size_t n = *drained;
  if (n > 0) {
    // Only the consumer role's owner writes these (see Bump).
    Bump(rx_messages_, n);
    Bump(rx_bytes_, bytes);
  }
  return n;
}

bool Link::PrepareToSleep() {
  // Lent: its borrower arms the doorbell when it gives the role back.
  if (!consumer_role_.TakeToSleep()) return true;
  const bool sleep = rx_ring_.consumer().PrepareToSleep();
  consumer_role_.ReleaseAfterSleep(sleep);
  return sleep;
}

bool Link::BorrowConsumer() {
  const ConsumerRole::Borrowed borrowed = consumer_role_.Borrow();
  if (borrowed == ConsumerRole::Borrowed::kNo) return false;
  // A sleeping receive thread armed the doorbell: we poll now, so the
  // peer's next write need not ring (a syscall on its side, and a wake-up
  // here that would compete with us for a CPU). ReturnConsumer arms again.
  if (borrowed == ConsumerRole::Borrowed::kYesReceiverAsleep) rx_ring_.consumer().CancelSleep();
  return true;
}

absl::StatusOr<size_t> Link::DrainBorrowed(size_t max_frames, absl::FunctionRef<bool(absl::string_view)> fn) {
  return DrainOwned(max_frames, fn);
}

bool Link::ReturnConsumer() {
  return consumer_role_.Return([this] { return rx_ring_.consumer().PrepareToSleep(); });
}

bool Link::ConsumerLent() const { return consumer_role_.lent(); }
absl::Status Link::ClearDoorbell() { return rx_ring_.consumer().DrainDoorbell(); }

bool Link::MarkDown() {
  // release pairs with the acquire in Send (see link.h); acquire so that
  // the caller that lost the race sees what the winner did before. A
  // read-modify-write, so exactly one caller gets true; off the hot path.
  return !down_.exchange(true, std::memory_order_acq_rel);
}

bool Link::down() const { return down_.load(std::memory_order_acquire); }

void Link::BeatHeartbeat() { rx_ring_.BeatConsumerHeartbeat(); }

bool Link::CheckPeerLiveness(absl::Time now, absl::Duration unresponsive_after) {
  if (!liveness_.has_value()) {
    liveness_.emplace(unresponsive_after, peer_heartbeat_interval_, initial_peer_beat_, since_);
  }
  switch (liveness_->Observe(tx_ring_.ConsumerHeartbeat(), now)) {
    case health::LivenessTracker::Change::kNone:
      return false;
    case health::LivenessTracker::Change::kBecameResponsive:
      // relaxed: see unresponsive_since_ns_ (this thread is its only writer).
      unresponsive_since_ns_.store(0, std::memory_order_relaxed);
      return true;
    case health::LivenessTracker::Change::kBecameUnresponsive:
      // relaxed: see unresponsive_since_ns_. Never 0: 0 means "responsive".
      unresponsive_since_ns_.store(std::max<int64_t>(1, absl::ToUnixNanos(liveness_->unresponsive_since())),
                                   std::memory_order_relaxed);
      return true;
  }
  return false;  // not reached: the switch covers every Change
}

absl::Time Link::unresponsive_since() const {
  // relaxed: see unresponsive_since_ns_.
  const int64_t ns = unresponsive_since_ns_.load(std::memory_order_relaxed);
  return ns == 0 ? absl::InfiniteFuture() : absl::FromUnixNanos(ns);
}

LinkStats Link::Stats() const {
  LinkStats s;
  // relaxed: independent counters read for reporting; a snapshot need not be
  // consistent across them.
  s.tx_messages = tx_messages_.load(std::memory_order_relaxed);
  s.tx_bytes = tx_bytes_.load(std::memory_order_relaxed);
  s.tx_full_events = tx_full_events_.load(std::memory_order_relaxed);
  s.rx_messages = rx_messages_.load(std::memory_order_relaxed);
  s.rx_bytes = rx_bytes_.load(std::memory_order_relaxed);
  s.tx_ring_bytes = tx_ring_.capacity();
  s.rx_ring_bytes = rx_ring_.capacity();
  s.tx_queued_bytes = tx_ring_.QueuedBytes();
  s.rx_queued_bytes = rx_ring_.QueuedBytes();
  const links::ControlChannelStats control = control_.Stats();
  s.control_received = control.received_messages;
  s.control_ignored = control.ignored_messages;
  return s;
}

}  // namespace mesh
