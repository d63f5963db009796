// LinkSetup: how links come up. It owns the node's link socket (which also
// locks the node's name in its run directory), the accept thread
// ("mesh-accept") that accepts and completes handshakes (LinkAcceptor), the
// dialing side (Dial, called by the control thread), and the spare ring: a
// ring made in advance for the next handshake, so that creating a ring is
// off the handshake's critical path.
//
// Thread contract: Listen/Start/Stop from the node's lifecycle (one
// thread); Dial() and ReplenishSpareRing() from any thread. The hooks run
// on the accept thread (accepted links) or the dialing thread.
#ifndef SHMESH_MESH_LINKS_LINK_SETUP_H_
#define SHMESH_MESH_LINKS_LINK_SETUP_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/epoll.h"
#include "base/unique_fd.h"
#include "mesh/base/log.h"
#include "mesh/links/link.h"
#include "mesh/links/link_acceptor.h"
#include "ringbuf/ring.h"

namespace mesh {

class LinkSetup {
 public:
  struct Hooks {
    // This node's side of a handshake, as it is now.
    std::function<LinkParams()> params;
    // True if `pid` is a member's (screening of accepted connections).
    std::function<bool(pid_t)> is_member_pid;
    // The member a hello claims to be.
    MemberLookup lookup;
    // Takes each accepted link (accept thread).
    std::function<void(std::shared_ptr<Link>)> install;
  };

  // Binds the link socket at `path`: ALREADY_EXISTS while a live node of
  // this name listens there (a stale file of a killed one is replaced).
  // Makes the accept thread's epoll set and wake-up eventfd.
  static absl::StatusOr<std::unique_ptr<LinkSetup>> Listen(std::string path, Hooks hooks,
                                                           absl::Duration handshake_timeout, const Logger* log);
  // Stops the thread, closes the handshakes in progress and the socket, and
  // removes the socket file.
  ~LinkSetup();

  const std::string& path() const { return path_; }

  // Starts the accept thread. Stop() joins it (idempotent).
  void Start();
  void Stop();

  // Dials `peer`'s link socket (Link::Dial) with the spare ring, then makes
  // the next spare ring. Errors as Link::Dial.
  absl::StatusOr<std::shared_ptr<Link>> Dial(const mesh::v1::Member& peer, absl::Time deadline);
  // Makes the spare ring if there is none.
  void ReplenishSpareRing();

 private:
  LinkSetup(std::string path, Hooks hooks, const Logger* log, base::UniqueFd listen, base::UniqueFd wake,
            base::Epoll epoll);
  void Loop();
  std::optional<ringbuf::Ring> TakeSpareRing();

  const std::string path_;
  const Hooks hooks_;
  const Logger* const log_;
  base::UniqueFd listen_;
  const base::UniqueFd wake_;
  base::Epoll epoll_;
  // Used by the accept thread only once started; destroyed after it is
  // joined.
  std::unique_ptr<LinkAcceptor> acceptor_;
  std::thread thread_;
  // release in Stop pairs with acquire in Loop.
  std::atomic<bool> stopping_{false};

  absl::Mutex spare_mu_;
  std::optional<ringbuf::Ring> spare_ring_ ABSL_GUARDED_BY(spare_mu_);
};

}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_LINK_SETUP_H_
