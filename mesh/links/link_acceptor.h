// LinkAcceptor: the accepting side of link setup, run by the node's link
// thread. It keeps every connection on the node's link socket from waiting
// on any other:
//
//   1. accept() the queued connections, 64 per wake-up (never blocks; the
//      other events of the loop get their turn). Out of descriptors
//      (EMFILE): stop watching the listening socket for kAcceptBackoff, so
//      that the level-triggered epoll does not spin, while the handshakes in
//      progress go on.
//   2. Screen it at once by SO_PEERCRED: the uid must be allowed
//      (Link::Screen) and the pid must belong to a member that discovery
//      announced (a process that never joined cannot hold a slot), and that
//      pid may hold at most `max_pending_per_pid` handshakes in progress,
//      all pids together `max_pending`. A refused connection gets a
//      LinkReply with the reason at once (the dialer re-announces itself
//      and tries again; this is also how a dialer that raced ahead of our
//      discovery finds out) and lingers until the hello it sent has come
//      and gone, at most `refused_linger` and `max_lingering` connections,
//      so that closing does not reset the connection before the dialer
//      reads the reason. A lingering connection holds no handshake slot.
//   3. The connection waits in the accept thread's epoll set for its hello,
//      until its own deadline (`handshake_timeout` after accept). A hello
//      completes the handshake there and then (Link::AcceptHello: no wait);
//      a connection that stays silent is closed at its deadline. So
//      connections that never speak cost their sender its slots and delay
//      nobody else.
//   4. Every refusal and failure is logged as a WARNING, at most one line
//      per second (a LogLimiter), the next line counting those left out.
//
// Ownership: the listening socket and the epoll set are borrowed from the
// node, which outlives this object; each pending connection is owned here
// until its handshake ends (then by its Link, or closed).
// Thread contract: thread-compatible; the node's accept thread makes every
// call. The hooks are called on that thread, with no lock of ours held.
#ifndef SHMESH_MESH_LINKS_LINK_ACCEPTOR_H_
#define SHMESH_MESH_LINKS_LINK_ACCEPTOR_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>

#include "absl/time/time.h"
#include "base/epoll.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "mesh/base/log.h"
#include "mesh/links/link.h"
#include "ringbuf/ring.h"

namespace mesh {

class LinkAcceptor {
 public:
  struct Hooks {
    // This node's side of a handshake, as it is now.
    std::function<LinkParams()> params;
    // True if `pid` is the pid of a member that discovery announced.
    std::function<bool(pid_t)> is_member_pid;
    // The member a hello claims to be (see MemberLookup).
    MemberLookup lookup;
    // A ring made in advance for the next handshake, or nullopt.
    std::function<std::optional<ringbuf::Ring>()> take_spare_ring;
    // Called after every handshake that took the spare ring, to make the
    // next one.
    std::function<void()> replenish_spare_ring;
    // Takes each link that came up.
    std::function<void(std::shared_ptr<Link>)> install;
  };
  struct Limits {
    absl::Duration handshake_timeout = absl::Seconds(2);
    size_t max_pending = 64;
    size_t max_pending_per_pid = 4;
    absl::Duration refused_linger = absl::Milliseconds(100);
    size_t max_lingering = 64;
  };
  // How long the listening socket is left alone after accept() ran out of
  // descriptors.
  static constexpr absl::Duration kAcceptBackoff = absl::Milliseconds(100);
  // Connections accepted per readiness event of the listening socket.
  static constexpr int kAcceptBatch = 64;

  // `listen_fd` (non-blocking) and `epoll` are borrowed; the listening
  // socket is watched under `listen_tag`, pending connections under tags
  // from `first_pending_tag` up (the caller routes events accordingly:
  // see OnEvent).
  LinkAcceptor(int listen_fd, base::Epoll* epoll, uint64_t listen_tag, uint64_t first_pending_tag,
               const Logger* log, Hooks hooks, Limits limits);
  // Closes every pending connection.
  ~LinkAcceptor();
  LinkAcceptor(const LinkAcceptor&) = delete;
  LinkAcceptor& operator=(const LinkAcceptor&) = delete;

  // Starts watching the listening socket. Errors are base::Epoll::Add's.
  absl::Status Start();

  // An epoll event with `tag`: the listening socket (accepts everything
  // queued) or a pending connection (its hello, or its hang-up). Tags of
  // neither are ignored.
  void OnEvent(uint64_t tag);

  // Closes the pending connections whose deadline is before `now`, and
  // watches the listening socket again once a back-off is over.
  void OnTimer(absl::Time now);

  // When OnTimer next has something to do (InfiniteFuture: nothing).
  absl::Time NextTimer() const;

  size_t pending() const { return pending_.size(); }

 private:
  struct Pending {
    base::UniqueFd conn;
    fdpass::PeerCred cred;
    absl::Time accepted;
    absl::Time deadline;
  };

  void AcceptAll();
  // Screens a fresh connection; on success it becomes pending.
  void Admit(base::UniqueFd conn, absl::Time now);
  // Refuses `conn` with `why` (logged, rate-limited), then lets it linger
  // (or closes it at once when too many linger already).
  void RefuseAndLinger(base::UniqueFd conn, const absl::Status& why, absl::Time now);
  void OnPendingEvent(uint64_t tag);
  // Forgets `it` (closing its connection) and returns the next entry.
  std::map<uint64_t, Pending>::iterator Drop(std::map<uint64_t, Pending>::iterator it);
  // A refusal or failed handshake: one WARNING per second at most.
  // Logs a refusal, at most one line per second (counting those left out):
  // a WARNING, except a lone `startup_race` refusal (a process we have not
  // heard of yet, with no other refusal since the last line) at DEBUG.
  void Refused(const std::string& why, bool startup_race = false);

  const int listen_fd_;
  base::Epoll* const epoll_;
  const uint64_t listen_tag_;
  const uint64_t first_pending_tag_;
  const Logger* const log_;
  const Hooks hooks_;
  const Limits limits_;

  uint64_t next_tag_;
  std::map<uint64_t, Pending> pending_;     // by epoll tag
  std::map<pid_t, size_t> pending_per_pid_;
  // Refused connections waiting for their hello to arrive (then drained
  // and closed) or for their deadline, by epoll tag.
  struct Lingering {
    base::UniqueFd conn;
    absl::Time deadline;
  };
  std::map<uint64_t, Lingering> lingering_;
  // While accept() is backed off: when to watch the listening socket again.
  std::optional<absl::Time> listen_paused_until_;
  LogLimiter refusals_{absl::Seconds(1)};
  LogLimiter exhausted_{absl::Seconds(1)};
};

}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_LINK_ACCEPTOR_H_
