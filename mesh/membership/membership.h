// Membership: the node's view of who is in the mesh, and the control thread
// ("mesh-control") that keeps it converging. It owns the Roster (who is a
// member), the Reconciler (whom to join, announce to and dial, and when) and
// the PeerClient (gRPC calls to other nodes), under one mutex that is never
// held across a call to another node or to a hook that blocks.
//
// The control thread runs the Reconciler's plans one call at a time: seed
// joins and announces (blocking gRPC Joins with a 1 s deadline) and dials
// (the `dial` hook: the link handshake). Nothing else waits for it: links
// are retired by whoever finds them dead (Depart), and peer events run on
// the node's events thread.
//
// Link admission and retirement are atomic with the roster, so that a
// peer's "up" is always ordered before its "down": Admit() runs the node's
// install step under the mutex after checking the member, and Depart() runs
// the node's removal step under it.
//
// Thread contract: thread-safe. Hooks: `linked` and the Admit/Depart
// callbacks run under the mutex and must not block or call back in;
// `dial` and `on_change` run with no lock held.
#ifndef SHMESH_MESH_MEMBERSHIP_MEMBERSHIP_H_
#define SHMESH_MESH_MEMBERSHIP_MEMBERSHIP_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "mesh/base/log.h"
#include "mesh/membership/peer_client.h"
#include "mesh/membership/reconciler.h"
#include "mesh/membership/roster.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {

class Membership {
 public:
  struct Options {
    std::string self_name;
    uint64_t self_id = 0;
    std::vector<std::string> seeds;
    std::vector<uint32_t> allowed_uids;
  };
  struct Hooks {
    // This node as a Member (its grpc address is known once serving).
    std::function<mesh::v1::Member()> self;
    // Whether a link to the named peer is installed. Under the mutex.
    std::function<bool(const std::string& name)> linked;
    // Dials `member`'s link socket and installs the link (through Admit);
    // returns the handshake's status. No lock held.
    std::function<absl::Status(const mesh::v1::Member& member, absl::Time deadline)> dial;
    // Membership or links changed (watch streams). No lock held.
    std::function<void()> on_change;
  };

  // Makes the control thread's wake-up eventfd. `log` is borrowed.
  static absl::StatusOr<std::unique_ptr<Membership>> Create(Options options, Hooks hooks, const Logger* log);
  ~Membership();

  // One synchronous round over the seeds: OK if one answered (or there are
  // none), ALREADY_EXISTS if a seed says our name is held by a live node
  // (not a race: Start() fails), UNAVAILABLE if none answered (the control
  // thread retries). Each seed gets `timeout` to answer (Start() gives the
  // first round more than the control thread's 1 s: a loaded machine's
  // first connection can take that long, and a seed that says "taken" must
  // fail Start(), not be found out later).
  absl::Status JoinSeeds(absl::Duration timeout = absl::Seconds(1));
  // Starts / stops the control thread. Stop() also tells every live member
  // we leave (Leave, async, at most `leave_timeout`) and forgets them all.
  void Start();
  void Stop(absl::Duration leave_timeout);
  // Makes the control thread look again (news arrived).
  void Wake();

  // --- Discovery (the gRPC services' backend) ---
  // This node first, then every live member (a Join answer).
  absl::StatusOr<std::vector<mesh::v1::Member>> HandleJoin(const mesh::v1::Member& member,
                                                           const std::vector<mesh::v1::Member>& known);
  // Whether `name`/`id` is a live member (HandleLeave: the node drains its
  // link first if it has one, else departs it at once).
  bool IsMember(const std::string& name, uint64_t id) const;
  // This node, the live members (UP/JOINING) and the recently departed
  // ones (DOWN), with `since`.
  std::vector<mesh::v1::Member> Members() const;

  // --- Link setup and retirement ---
  bool IsMemberPid(pid_t pid) const;
  absl::StatusOr<mesh::v1::Member> Lookup(const std::string& name, uint64_t id) const;
  // If `name`/`id` is a live member, runs `install` under the mutex (it
  // installs the link and posts peer-up; false: redundant) and marks the
  // member linked. False if not a member or not installed.
  bool Admit(const std::string& name, uint64_t id, absl::FunctionRef<bool()> install);
  // Runs `remove` under the mutex (removes the link, posts peer-down), then
  // departs the member `name`/`id` (kept DOWN for a while; its name free).
  void Depart(const std::string& name, uint64_t id, absl::FunctionRef<void()> remove);
  // The member with id `id` said Goodbye on its link: it never joins again
  // under that id (Roster::MarkLeft), so a Join it sent before leaving and
  // served after cannot bring it back.
  void MarkLeft(uint64_t id);

  // Runs `fn` under the mutex, ordered with Admit and Depart (the node
  // posts a link's unresponsive events so: never after its down).
  void RunExclusive(absl::FunctionRef<void()> fn);

  // Bumped on every membership or link change (the watch streams).
  uint64_t generation() const;
  // The gRPC client to other nodes (thread-safe; shared with the node's
  // whole-mesh topology gathering).
  membership::PeerClient& peer_client() { return peer_client_; }

 private:
  Membership(Options options, Hooks hooks, const Logger* log, base::UniqueFd wake);
  void Loop();
  absl::Time Reconcile();
  mesh::v1::JoinRequest MakeJoinRequest();
  void Announce(const Reconciler::Target& target);
  void Dial(const Reconciler::Target& target);
  void LearnLocked(const std::vector<mesh::v1::Member>& members, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplyLocked(const Roster::Change& change, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DepartLocked(const std::string& name, uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BumpLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool stopping() const;

  const Options options_;
  const Hooks hooks_;
  const Logger* const log_;
  const base::UniqueFd wake_;
  membership::PeerClient peer_client_;
  std::thread thread_;
  // release in Stop pairs with acquire in stopping().
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex mu_;
  Roster roster_ ABSL_GUARDED_BY(mu_);
  Reconciler reconciler_ ABSL_GUARDED_BY(mu_);
  // Bumped under mu_ (release) on every change; read without it (acquire)
  // by generation(): a reader that sees a new value sees the change.
  std::atomic<uint64_t> generation_{0};
};

}  // namespace mesh

#endif  // SHMESH_MESH_MEMBERSHIP_MEMBERSHIP_H_
