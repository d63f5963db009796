// Roster: the members this node knows, as pure data and rules. It decides
// who may join under which name (one live incarnation per name; a dead
// holder is replaced), ignores stale announcements (tombstoned ids, dead
// pids, departed states), and remembers recently departed members so the
// topology can report them DOWN for a while.
//
// Incarnations: a node restarted under the same name has a new random id.
// The roster holds at most one member per name. A different id for a known
// name replaces the holder only when the holder is gone: not linked
// (`linked(name)`, asked of the caller) and its pid not alive
// (Options::process_alive).
//
// Tombstones: the ids of departed members. An announcement of a tombstoned id
// is ignored (a third node may still gossip a member we saw leave or die),
// except that the member itself may Join again (Join erases its tombstone),
// unless it said it left (MarkLeft: the Goodbye on its own link). A node
// that left never comes back under the same id (a restarted node has a new
// one), so a Join it sent before it left, answered after, must not bring it
// back as a member nobody can reach.
// Bounded: the most recent Options::max_tombstones ids are kept (default
// 4096, the oldest forgotten first). A forgotten id can be learned again only
// while its process is alive, which for a departed member means a pid reused
// by chance, the same risk node.cc always took for dead holders.
//
// Departed members: Depart() keeps the member (state DOWN, `since` = when it
// departed) for Options::departed_ttl (default 60 s), at most
// Options::max_departed of them (default 64, the oldest dropped first), one
// per name: a new incarnation of the name replaces its DOWN entry.
//
// Self: the roster never holds this node itself; Members() and friends list
// the others only.
//
// Thread contract: thread-compatible. The node guards its Roster with one
// mutex (its `membership_mu_`) and calls every method under it; `process_alive` and the
// `linked` callbacks run under that lock and must not take it. Nothing here
// blocks, logs, or calls the network.
#ifndef SHMESH_MESH_MEMBERSHIP_ROSTER_H_
#define SHMESH_MESH_MEMBERSHIP_ROSTER_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {

class Roster {
 public:
  struct Options {
    // This node.
    std::string self_name;
    uint64_t self_id = 0;
    pid_t self_pid = 0;  // for the ALREADY_EXISTS message about our own name
    // NodeConfig.allowed_peer_uids: a member of another uid is refused.
    std::vector<uint32_t> allowed_uids;
    // Whether a process with this pid runs (mesh/base/os.h ProcessAlive).
    // REQUIRES: set. Called under the caller's lock; must not block.
    std::function<bool(pid_t)> process_alive;
    // How long and how many departed members are reported DOWN.
    absl::Duration departed_ttl = absl::Seconds(60);
    size_t max_departed = 64;
    // How many tombstoned ids are kept (the most recent).
    size_t max_tombstones = 4096;
  };

  // Whether this node has a live link to the named member (links are not
  // the roster's: the caller answers). Called under the caller's lock.
  using LinkedFn = absl::FunctionRef<bool(const std::string& name)>;

  // What a Join or Learn changed, in order. `departed` are dead holders
  // of a name that a newcomer's announcement made us drop (state DOWN).
  struct Change {
    std::vector<mesh::v1::Member> added;
    std::vector<mesh::v1::Member> departed;
    bool empty() const { return added.empty() && departed.empty(); }
  };

  // A live member.
  struct Entry {
    mesh::v1::Member member;  // state JOINING as stored; see Members()
    absl::Time since;         // added, or last linked (MarkLinked)
  };

  explicit Roster(Options options);

  // Checks a member announced by a peer: INVALID_ARGUMENT "member '<name>':
  // <what>" for a malformed name (1-64 of [A-Za-z0-9_.-]), id 0, pid <= 0,
  // empty grpc_address, or link_socket not an absolute path of at most 107
  // bytes; PERMISSION_DENIED if its uid is not allowed.
  absl::Status CheckMember(const mesh::v1::Member& m) const;

  // Discovery.Join served: `m` announces itself, with the `known` members of
  // its own roster. Rules, in order:
  //   - CheckMember(m) fails: that error, nothing changes;
  //   - m has our name: OK with nothing added if it is us (same id), else
  //     ALREADY_EXISTS "name '<name>' is taken by a live node (pid <our
  //     pid>); pick another name";
  //   - another incarnation holds m's name and is linked or its pid alive:
  //     ALREADY_EXISTS naming the holder's pid; a dead holder is departed;
  //   - m's id said it left (MarkLeft): FAILED_PRECONDITION "member '<name>'
  //     (id <id>) said goodbye and left the mesh; ...";
  //   - m's tombstone (if any) is erased, m is learned (Learn), then every
  //     valid member of `known` (invalid ones are skipped silently).
  // Returns what changed: tell the reconciler of each member departed
  // (Reconciler::OnMemberRemoved) and added (OnMemberAdded, m first if it
  // was new), then that m knows us (OnJoinedUs).
  absl::StatusOr<Change> Join(const mesh::v1::Member& m, const std::vector<mesh::v1::Member>& known,
                              LinkedFn linked, absl::Time now);

  // Learns of `m` from gossip (a Join answer, a `known` list). Ignored when:
  // m fails CheckMember, is this node (by name), is announced DOWN, its id is
  // tombstoned, it is already known with the same id, another incarnation
  // holds the name and is linked or alive, or m's own pid is not alive (a
  // stale announcement of a dead node). A dead holder of the name is
  // departed first (even if m is then ignored). Returns whether m was added
  // (state JOINING, since `now`; replaces a DOWN entry of the same name).
  // Appends what changed to `*change` if not null.
  bool Learn(const mesh::v1::Member& m, absl::Time now, LinkedFn linked, Change* change = nullptr);

  // The member `name` with id `id` left, died, or lost its link: removed,
  // its id tombstoned, and kept as DOWN since `now`. Returns false (nothing
  // changes) if no live member has that name and id.
  bool Depart(const std::string& name, uint64_t id, absl::Time now);

  // The member with id `id` said goodbye on its own link (an authenticated
  // word: only the peer holds its end): the id is tombstoned for good, and
  // Join refuses it from now on (even once Depart has run). Bounded with the
  // tombstones. A gRPC Leave does not call this: anyone who can reach our
  // socket can send one, and a member wrongly reported gone must be able to
  // Join again.
  void MarkLeft(uint64_t id);
  bool HasLeft(uint64_t id) const;

  // A link to `name` came up at `now`: its `since` becomes `now`. Returns
  // false if `name` is not a live member.
  bool MarkLinked(const std::string& name, absl::Time now);

  // Drops departed entries older than departed_ttl. Returns when the next one
  // expires (InfiniteFuture if none), for the caller's timer.
  absl::Time ExpireDeparted(absl::Time now);

  // Forgets every member, departed one and tombstone (Node::Stop).
  void Clear();

  // --- Queries ---
  // The live member `name`, or null. Valid until the next non-const call.
  const Entry* Find(const std::string& name) const;
  // Whether a live member runs with this pid (LinkAcceptor's screening).
  bool IsMemberPid(pid_t pid) const;
  // The live member `name` with id `id` (LinkAcceptor's lookup); NOT_FOUND
  // "'<name>' (id <hex>) has not joined through discovery; join first" (the
  // name C-escaped: it comes from an untrusted hello).
  absl::StatusOr<mesh::v1::Member> Lookup(const std::string& name, uint64_t id) const;
  // Live members in name order, with state UP (linked) or JOINING and
  // `since`: for Join answers and the `known` list of our own Joins. Never
  // lists departed members (a joiner would learn them again).
  std::vector<mesh::v1::Member> Live(LinkedFn linked) const;
  // Live() followed by the departed members not expired at `now`, in name
  // order, with state DOWN and `since` = when they departed: for the
  // topology and WatchMembers. This node itself is not listed.
  std::vector<mesh::v1::Member> Members(absl::Time now, LinkedFn linked) const;
  // The grpc addresses of the live members.
  std::set<std::string> Addresses() const;
  // Whether `id` is tombstoned.
  bool IsTombstoned(uint64_t id) const { return tombstones_.count(id) > 0; }
  size_t tombstone_count() const { return tombstones_.size(); }
  // Departed entries held (expired ones included until ExpireDeparted).
  size_t departed_count() const { return departed_.size(); }
  // Bumped on every change: member added or departed, link marked, departed
  // entry expired, Clear.
  uint64_t generation() const { return generation_; }
  // Live members.
  size_t size() const { return members_.size(); }

 private:
  // Depart(), recording the departed member in `*change` if not null.
  void DepartInto(const std::string& name, uint64_t id, absl::Time now, Change* change);
  // `left`: MarkLeft's mark, kept by later Tombstone calls for the same id.
  void Tombstone(uint64_t id, bool left = false);
  void Untombstone(uint64_t id);
  bool IsAlive(pid_t pid) const;

  const Options options_;
  std::map<std::string, Entry> members_;
  // Departed members by name (member.state DOWN, since = departure time).
  std::map<std::string, Entry> departed_;
  // Tombstoned id -> its insertion sequence number; `tombstone_order_`
  // holds (id, seq) oldest first, with stale pairs (erased or re-inserted
  // ids) skipped when met and compacted when they pile up.
  struct Tomb {
    uint64_t seq = 0;
    bool left = false;  // MarkLeft: Join refuses the id
  };
  absl::flat_hash_map<uint64_t, Tomb> tombstones_;
  std::deque<std::pair<uint64_t, uint64_t>> tombstone_order_;
  uint64_t tombstone_seq_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace mesh

#endif  // SHMESH_MESH_MEMBERSHIP_ROSTER_H_
