// Reconciler: whom this node joins, announces itself to, and dials, and when.
// It turns membership news and the results of those calls into a Plan: join
// the configured seeds (until one answers), ask "stray" seeds again (after
// joining, configured seeds that are not members: nodes started together can
// otherwise form meshes that never merge), announce ourselves to members that
// do not know us or have not heard our news, and dial the link socket of
// members whose name sorts after ours. Every retry has its own Backoff.
//
// Pure decisions: it makes no calls, keeps no clock, never logs. The caller
// (the node's control thread) runs the calls of each Plan and reports each
// result through exactly one On*() call; until then that action is "in
// flight" and not planned again. Per member it keeps: knows_us (it called
// Join on us or answered ours), needs_sync (it may not have heard of a
// member we learned since we last told it), an announce Backoff and a dial
// Backoff.
//
// Protocol, step by step (one control loop iteration):
//   1. plan = Decide(now, linked, addresses);
//   2. plan.join_seeds: Join each configured seed in order until one answers:
//      Roster::Learn each member of the answer into a Roster::Change, tell
//      the reconciler of it (OnMemberRemoved for each departed, OnMemberAdded
//      for each added), then OnSeedJoined(seed, answer); if none answers, OnSeedRoundFailed;
//   3. each plan.stray_seeds: Join it, Learn/OnMemberAdded as above, then
//      OnStraySeedResult;
//   4. each plan.announce: Join the member with Roster::Live() as `known`,
//      Learn/OnMemberAdded its answer, then OnAnnounceResult;
//   5. each plan.dial: dial its link socket, then OnDialResult (and
//      OnLinkUp once the link is installed);
//   6. on a non-empty plan go to 1 at once (results make new work: an
//      answered announce makes the dial ready); else sleep until
//      plan.next_wake or until woken by news (a Join served, a link lost).
// Elsewhere: a Join served -> the Change as above, then OnJoinedUs(member);
// a member departed (Roster::Depart) -> OnMemberRemoved.
//
// Thread contract: thread-compatible. The node guards it with the same mutex
// as its Roster and never holds that mutex during the calls themselves.
#ifndef SHMESH_MESH_MEMBERSHIP_RECONCILER_H_
#define SHMESH_MESH_MEMBERSHIP_RECONCILER_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mesh/membership/backoff.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {

class Reconciler {
 public:
  struct Options {
    std::string self_name;
    // NodeConfig.seeds (grpc targets), asked in this order.
    std::vector<std::string> seeds;
    // Every retry: min, 2 min, 4 min, ... max.
    absl::Duration min_backoff = absl::Milliseconds(20);
    absl::Duration max_backoff = absl::Seconds(2);
    // Cap of the retries of a stray seed, and the pause after it answered.
    absl::Duration stray_max_backoff = absl::Seconds(5);
    // Plan::next_wake is at most this far ahead (each wake-up costs an idle
    // node CPU; news wakes the caller anyway).
    absl::Duration idle_period = absl::Seconds(10);
  };

  // A member to call: the caller finds the rest (addresses, pid) in its
  // Roster, and skips the call if the id no longer matches.
  struct Target {
    std::string name;
    uint64_t id = 0;
  };

  struct Plan {
    // Join the configured seeds in order until one answers.
    bool join_seeds = false;
    // Configured seeds to Join again (addresses).
    std::vector<std::string> stray_seeds;
    // Members to announce ourselves to (Join them).
    std::vector<Target> announce;
    // Members to dial (link handshake). Never also in `announce`.
    std::vector<Target> dial;
    // When to call Decide again if nothing happens before: the earliest
    // time a retry not planned now becomes ready, at most now + idle_period.
    absl::Time next_wake;

    bool empty() const { return !join_seeds && stray_seeds.empty() && announce.empty() && dial.empty(); }
  };

  // What the caller does after a failed call.
  struct Outcome {
    // The member's process is gone: Roster::Depart it (the reconciler has
    // already forgotten it).
    bool depart = false;
    // Consecutive failures of this kind, and whether to log this one (the
    // 1st and every 10th: ShouldLogFailure).
    int failures = 0;
    bool log = false;
    // When it is tried again (InfinitePast: at once).
    absl::Time retry_at = absl::InfinitePast();
  };

  // A member's schedule, for tests and debugging.
  struct Peer {
    uint64_t id = 0;
    bool knows_us = false;
    bool needs_sync = false;
    bool announcing = false;  // an announce is in flight
    bool dialing = false;     // a dial is in flight
    int refusals = 0;         // consecutive refused (ABORTED) dials
    Backoff announce;
    Backoff dial;
  };

  // REQUIRES: 0 < min_backoff <= max_backoff, min_backoff <= stray_max_backoff.
  explicit Reconciler(Options options);

  // Whether the caller's link to `name` is up. Called during Decide only.
  using LinkedFn = absl::FunctionRef<bool(const std::string& name)>;

  // Plans what to do at `now`. `member_addresses`: the grpc addresses of the
  // live members and our own (Roster::Addresses() plus ours); a configured
  // seed at one of them is not stray. Clears needs_sync of each member it
  // plans an announce to (news learned during the call sets it again), and
  // marks every planned action in flight until its result is reported.
  Plan Decide(absl::Time now, LinkedFn linked, const std::set<std::string>& member_addresses);

  // --- Membership news (from the Roster's results) ---
  // `m` was added to the roster (Roster::Join/Learn returned it): it is
  // announced to and dialed at once, and every other member needs_sync (it
  // may not know of `m`). Replaces any schedule under m's name.
  void OnMemberAdded(const mesh::v1::Member& m, absl::Time now);
  // The member `name`/`id` left the roster (Roster::Depart, a Change's
  // `departed`): its schedule goes, unless `name` is held by another id
  // now. Idempotent; a result reported for it later is ignored.
  void OnMemberRemoved(const std::string& name, uint64_t id);
  // Every schedule goes (Roster::Clear, Node::Stop).
  void Clear() { peers_.clear(); }
  // The member called Join on us (Roster::Join succeeded): it knows us.
  void OnJoinedUs(const std::string& name, uint64_t id);

  // --- Results of planned actions ---
  // A seed at `seed` answered `answer` (after the caller learned it): the
  // seed round is over for good; the answering seed's own member (the entry
  // of `answer` with grpc_address == seed) knows us if it is the one we hold.
  void OnSeedJoined(const std::string& seed, const std::vector<mesh::v1::Member>& answer);
  // No seed answered: the round is tried again after the seed Backoff.
  Outcome OnSeedRoundFailed(absl::Time now);
  // A stray seed's answer. Success resets its backoff and asks it again only
  // after stray_max_backoff (it should be a member by then); failure backs
  // off up to stray_max_backoff.
  Outcome OnStraySeedResult(const std::string& seed, bool ok, absl::Time now);
  // Our Join on the member `name`/`id` returned. ok: it knows us, and the
  // dial (if ours to make) is ready at once. Failure with `peer_alive`
  // false: depart it (Outcome::depart). Other failure: needs_sync again,
  // announce backoff. Results for a removed or replaced member, or for an
  // announce not in flight, are ignored.
  Outcome OnAnnounceResult(const std::string& name, uint64_t id, bool ok, bool peer_alive, absl::Time now);
  // Our dial of `name`/`id` returned `status`. OK: dial backoff reset.
  // !peer_alive: depart it. ABORTED (the peer refused us, typically as it
  // does not know us yet or any more): knows_us = false and announce again
  // at once; the first refusal in a row makes the dial ready right after
  // that announce, later ones back the dial off (see reconciler.cc). Other
  // errors: dial backoff. Ignored as OnAnnounceResult is.
  Outcome OnDialResult(const std::string& name, uint64_t id, const absl::Status& status, bool peer_alive,
                       absl::Time now);
  // The link to `name` came up (dialed or accepted): failures forgotten.
  void OnLinkUp(const std::string& name);
  // The link to `name` went down while it stays a member: dial again soon.
  void OnLinkDown(const std::string& name);

  // --- Queries ---
  bool seeds_joined() const { return seeds_joined_; }
  const Backoff& seed_backoff() const { return seed_backoff_; }
  // The member's schedule, or null. Valid until the next non-const call.
  const Peer* Find(const std::string& name) const;
  // The stray-seed Backoff of `seed`, or null if it was never stray.
  const Backoff* FindStraySeed(const std::string& seed) const;
  size_t size() const { return peers_.size(); }

 private:
  Peer* FindPeer(const std::string& name, uint64_t id);
  Outcome Failed(const Backoff& b) const;

  const Options options_;
  bool seeds_joined_;
  bool seed_round_in_flight_ = false;
  Backoff seed_backoff_;
  struct Stray {
    Backoff backoff;
    bool in_flight = false;
  };
  std::map<std::string, Stray> stray_seeds_;
  std::map<std::string, Peer> peers_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_MEMBERSHIP_RECONCILER_H_
