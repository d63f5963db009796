// Link: the data plane between this node and one peer.
//
// A link is two rings (ringbuf::Ring), one per direction, plus the Unix
// SOCK_SEQPACKET socket they were handed over on. Each side creates the ring
// it writes into and passes the memfd and the consumer's end of the ring's
// doorbell socket pair to the other with SCM_RIGHTS (keeping the producer's
// end to itself). The handshake, step by step:
//
//   dialer (name sorts first)             acceptor
//   1. connect(acceptor.link_socket)
//   2. SO_PEERCRED: pid == announced?     accept(); SO_PEERCRED: uid allowed?
//                                         create our ring (meanwhile)
//   3. send LinkHello + [memfd, data doorbell, space doorbell]
//                                         pid == the pid that discovery
//                                         announced for hello.name/hello.id?
//                                         4. check hello, map the sealed memfd
//                                            (seals + size checked first)
//                                         5. send LinkReply{welcome} + its fds
//                                            (or LinkReply{reject_reason})
//   6. check welcome, map the memfd
//
// The socket then stays open for the link's life as the link's control
// channel (control_channel.h): framed LinkControl messages, with
// descriptors, both ways. EOF (or an error) on it means the peer is gone,
// kill -9 included.
//
// Thread contract: Send() and SendBatch() are thread-safe (a per-link mutex
// serializes producers, since each ring has one producer). Drain(),
// PrepareToSleep() and ClearDoorbell() must be called only from the node's
// receive thread (the ring's single consumer). Stats(), MarkDown() and the
// accessors are thread-safe.
#ifndef SHMESH_MESH_LINKS_LINK_H_
#define SHMESH_MESH_LINKS_LINK_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "mesh/health/liveness.h"
#include "mesh/links/consumer_role.h"
#include "mesh/links/control_channel.h"
#include "mesh/links/transport.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/ring.h"

namespace mesh {

// What this node brings to a handshake.
struct LinkParams {
  std::string name;
  uint64_t id = 0;
  uint64_t ring_capacity_bytes = 0;
  // Largest ring (bytes) accepted from a peer: bounds what a peer can make
  // us map.
  uint64_t max_peer_ring_bytes = 0;
  std::vector<uint32_t> allowed_uids;
  ringbuf::WaitOptions wait;
  // How often this node beats the heartbeat of the rings it reads (told to
  // the peer in the handshake).
  absl::Duration heartbeat_interval;
};

// Looks up the member a LinkHello claims to be (by name and id); NOT_FOUND if
// discovery has not announced it.
using MemberLookup =
    std::function<absl::StatusOr<mesh::v1::Member>(const std::string& name,
                                                   uint64_t id)>;


class Link final : public Transport {
 public:
  // Dials `peer` (steps 1-6 above as the dialer). UNAVAILABLE if it cannot be
  // reached, PERMISSION_DENIED if the process at the socket is not the
  // announced one, ABORTED if the peer rejected us (its reason included).
  //
  // `tx`, if given, is the ring this node will write into, made in advance
  // with Ring::Create(self.ring_capacity_bytes, self.wait) and never handed
  // to anyone else (so that creating it is off the handshake's critical
  // path); otherwise Dial/Accept create it. It is consumed either way.
  static absl::StatusOr<std::shared_ptr<Link>> Dial(const LinkParams& self,
                                                    const mesh::v1::Member& peer,
                                                    absl::Time deadline,
                                                    std::optional<ringbuf::Ring> tx = std::nullopt);

  // Completes the handshake on an accepted connection (takes ownership of
  // `conn`), waiting for the hello until `deadline`. On any check failing,
  // sends LinkReply{reject_reason} (best effort) and returns the error:
  // PERMISSION_DENIED (uid or pid), NOT_FOUND (never announced),
  // INVALID_ARGUMENT / FAILED_PRECONDITION (bad hello or descriptors).
  // Screen + ReceiveMessage + AcceptHello in one blocking call; a node
  // uses the pieces (LinkAcceptor) so that no connection waits for another.
  static absl::StatusOr<std::shared_ptr<Link>> Accept(base::UniqueFd conn,
                                                      const LinkParams& self,
                                                      const MemberLookup& lookup,
                                                      absl::Time deadline,
                                                      std::optional<ringbuf::Ring> tx = std::nullopt);

  // The acceptor's first check, right after accept(): the connecting
  // process's uid (from SO_PEERCRED, `cred`) must be allowed, else
  // PERMISSION_DENIED. Looks at nothing else.
  static absl::Status Screen(const LinkParams& self, const fdpass::PeerCred& cred);

  // Refuses a connection on the acceptor's side: sends LinkReply{reason}
  // on `conn` (borrowed), and consumes what the dialer already sent so
  // that closing does not reset the connection before it reads the reason.
  // Best effort; never waits. A hello still on its way when the socket
  // closes resets the connection: LinkAcceptor keeps refused connections
  // open a little for it (see Linger there).
  static void Refuse(int conn, const absl::Status& why);
  // Consumes what the dialer sent on a refused `conn` (borrowed), closing
  // any descriptors that came with it. Never waits.
  static void DrainRefused(int conn);

  // The rest of the acceptor's side once the hello `msg` has arrived on
  // `conn` (owned from here on) from the process `cred`: checks the hello
  // against discovery (`lookup`), maps the peer's ring, answers with ours.
  // Never waits: the reply is one message on a fresh connection. Errors as
  // Accept; `start` dates the handshake (PeerInfo::handshake).
  static absl::StatusOr<std::shared_ptr<Link>> AcceptHello(base::UniqueFd conn,
                                                           const fdpass::PeerCred& cred,
                                                           fdpass::ReceivedMessage msg,
                                                           const LinkParams& self,
                                                           const MemberLookup& lookup, absl::Time start,
                                                           std::optional<ringbuf::Ring> tx = std::nullopt);

  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;
  ~Link() override;

  const mesh::v1::Member& peer() const override { return peer_; }
  absl::Time since() const override { return since_; }
  // Time Dial()/Accept() took on this side (see PeerInfo::handshake).
  absl::Duration handshake() const override { return handshake_; }
  // control: the link socket; data: the rx ring's doorbell (borrowed).
  WaitHandles wait_handles() const override;

  // Transport (transport.h). Frames are `prefix` + payload; the counters
  // count frame bytes.
  size_t MaxPayload(size_t prefix_bytes) const override;
  absl::Status SendFrame(absl::string_view prefix, absl::string_view payload, absl::Time deadline) override;
  absl::Status SendFrames(absl::string_view prefix, absl::Span<const absl::string_view> payloads,
                          absl::Time deadline, size_t* written) override;
  absl::Status SendInPlace(size_t max_len, absl::Time deadline,
                           absl::FunctionRef<size_t(absl::Span<uint8_t>)> fill) override;
  absl::Status SendControl(const mesh::v1::LinkControl& msg, absl::Span<const int> fds = {}) override;
  absl::StatusOr<std::optional<ControlMessage>> ReadControl() override;

  // Writes one message into the tx ring. If the ring is full, waits for
  // space until `deadline`, checking every few milliseconds that the link is
  // still up. Errors: RESOURCE_EXHAUSTED (full, and `deadline` had passed
  // when the wait began), DEADLINE_EXCEEDED (full until `deadline`),
  // UNAVAILABLE (the link is or went down, or the peer closed its doorbell
  // while we waited), DATA_LOSS (corrupt ring: the link is unusable and the
  // caller must take it down). A send that finds room reads no clock, takes no
  // lock but the link's send mutex, and makes no syscall unless the
  // receiver sleeps.
  // (A frame with no prefix: the raw form, for tests and the fuzzer.)
  absl::Status Send(absl::string_view payload, absl::Time deadline);
  // Writes `payloads` in order with one tail store and at most one doorbell
  // per stretch that fits (RingProducer::WriteBatch). `*written` says how
  // many went in (a prefix), also on error. Waits and errors as Send.
  absl::Status SendBatch(absl::Span<const absl::string_view> payloads, absl::Time deadline,
                         size_t* written);

  // Receive thread only. Passes up to `max_frames` waiting frames to `fn`
  // (the view is valid during the call; false refuses the frame, which
  // stays first, and stops) and returns how many it took. DATA_LOSS if the
  // peer corrupted the ring: the link is then unusable.
  absl::StatusOr<size_t> Drain(size_t max_frames,
                               absl::FunctionRef<bool(absl::string_view)> fn) override;
  // Receive thread only: announce we are about to sleep on the doorbell;
  // false if a message arrived meanwhile (then do not sleep). True at once
  // while the consumer role is lent (its borrower arms the doorbell).
  bool PrepareToSleep() override;
  // See Transport::BorrowConsumer.
  bool BorrowConsumer() override;
  absl::StatusOr<size_t> DrainBorrowed(size_t max_frames, absl::FunctionRef<bool(absl::string_view)> fn) override;
  bool ReturnConsumer() override;
  bool ConsumerLent() const override;
  // Receive thread only: consume doorbell rings. Never blocks. UNAVAILABLE
  // if the peer closed its end of the doorbell (it exited, or misbehaves):
  // the doorbell stays readable for ever, so stop watching it.
  absl::Status ClearDoorbell() override;

  // Marks the link down: Send fails with UNAVAILABLE from now on, and a
  // Send waiting for space returns soon after. Returns true for the one
  // call that took the link down (false if it was down already), so that
  // whoever noticed first can queue its retirement. Thread-safe. The link
  // never marks itself down: a Send that fails with DATA_LOSS leaves that
  // to its caller (the node's LinkFailed, which retires it).
  bool MarkDown() override;
  bool down() const override;

  LinkStats Stats() const override;

  // Liveness (see consumer_heartbeat in ringbuf/ring_layout.h). Health
  // thread only: BeatHeartbeat() tells the peer this process runs (in the
  // ring we read); CheckPeerLiveness() looks at the peer's heartbeat (in the
  // ring we write) and returns true if the peer's state changed with this
  // call: it became unresponsive (no new beat for `unresponsive_after`, or
  // for three of the peer's own beat intervals if that is longer) or
  // responsive again.
  void BeatHeartbeat() override;
  bool CheckPeerLiveness(absl::Time now, absl::Duration unresponsive_after) override;
  // Thread-safe: since when the peer has not beaten if it is unresponsive
  // now, else InfiniteFuture().
  absl::Time unresponsive_since() const override;

 private:
  Link(mesh::v1::Member peer, base::UniqueFd socket, ringbuf::Ring tx,
       ringbuf::Ring rx, const LinkParams& self, absl::Time handshake_start,
       uint32_t peer_heartbeat_interval_ms);

  const mesh::v1::Member peer_;
  const absl::Time since_;
  const absl::Duration handshake_;
  // The peer's beat interval as it told us (0: not told), capped at 10 s.
  const absl::Duration peer_heartbeat_interval_;
  base::UniqueFd socket_;
  // Framed control messages on socket_ after the handshake.
  links::ControlChannel control_;
  ringbuf::Ring tx_ring_;
  ringbuf::Ring rx_ring_;
  // Largest frame the tx ring takes.
  const size_t tx_max_frame_;

  // The rest of Send/SendBatch once the ring was found full (send_mu_
  // held): waits in slices until `deadline`, re-checking down_.
  absl::Status WaitAndSendLocked(absl::string_view prefix, absl::Span<const absl::string_view> payloads,
                                 absl::Time deadline, size_t* written);
  void CountSentLocked(absl::string_view prefix, absl::Span<const absl::string_view> payloads, size_t n);

  // Passes frames of rx_ring_ to `fn` and counts them. REQUIRES: the
  // consumer role (taken from consumer_role_ by this thread).
  absl::StatusOr<size_t> DrainOwned(size_t max_frames, absl::FunctionRef<bool(absl::string_view)> fn);

  // Who consumes rx_ring_ now (the receive thread, or a borrower), and
  // who arms its doorbell for the receive thread: consumer_role.h.
  ConsumerRole consumer_role_;

  // Serializes senders: tx_ring_.producer() has one-producer semantics.
  // rx_ring_.consumer() belongs to whoever has the consumer role.
  // A std::mutex rather than an absl::Mutex: Debian's Abseil is built with
  // its debug-mode deadlock detection, which makes every absl::Mutex
  // Lock/Unlock pair cost ~43 ns (a global graph update) against ~4 ns
  // here, and this lock is taken once per message sent.
  std::mutex send_mu_;

  // Set once by MarkDown, read by senders. relaxed would do for the flag
  // alone, but acquire/release makes the counters a sender read after seeing
  // `down_` at least as new as the MarkDown call; it is off the hot path.
  std::atomic<bool> down_{false};
  // Counters: each has one writer at a time (senders under send_mu_, or the
  // receive thread), which adds with a relaxed load + store (Bump in
  // link.cc); Stats() reads them relaxed. Relaxed is right because no other
  // memory is published through them.
  std::atomic<uint64_t> tx_messages_{0}, tx_bytes_{0}, tx_full_events_{0};
  std::atomic<uint64_t> rx_messages_{0}, rx_bytes_{0};

  // The peer's heartbeat value read when the link came up (at since_): the
  // liveness tracker's initial value.
  const uint32_t initial_peer_beat_;
  // Health thread only: the peer's liveness (the heartbeat's last value and
  // when our clock first saw it). Made by the first CheckPeerLiveness, which
  // brings unresponsive_after (REQUIRES: the same value on every call, as
  // the health monitor's constant option is), from initial_peer_beat_ and
  // since_, so the silence clock starts when the link came up.
  std::optional<health::LivenessTracker> liveness_;
  // Unix nanoseconds since which the peer has been silent while it is
  // unresponsive, 0 while it is responsive. Written by the health thread,
  // read by senders for their error messages: relaxed, as it publishes no
  // other memory and a stale value only dates an error message.
  std::atomic<int64_t> unresponsive_since_ns_{0};
};

}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_LINK_H_
