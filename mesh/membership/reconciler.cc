#include "mesh/membership/reconciler.h"

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace mesh {

Reconciler::Reconciler(Options options)
    : options_(std::move(options)),
      seeds_joined_(options_.seeds.empty()),
      seed_backoff_(options_.min_backoff, options_.max_backoff) {
  // Programmer errors: the bounds are the node's constants.
  if (options_.stray_max_backoff < options_.min_backoff) std::abort();
}

Reconciler::Plan Reconciler::Decide(absl::Time now, LinkedFn linked, const std::set<std::string>& member_addresses) {
  Plan plan;
  absl::Time next = now + options_.idle_period;
  // Seeds, until one answered.
  if (!seeds_joined_ && !seed_round_in_flight_) {
    if (seed_backoff_.Ready(now)) {
      plan.join_seeds = true;
      seed_round_in_flight_ = true;
    } else {
      next = std::min(next, seed_backoff_.ready_at());
    }
  }
  // Configured seeds that are not (or no longer) members, once joined.
  // Nodes that start together can otherwise form separate meshes that never
  // merge: each joins the first seed that answers (n2 and n3 join each other
  // while n0 is still starting) and never hears of the others. An answer
  // merges the two member lists, and the needs_sync of every member spreads
  // the news to everyone.
  if (seeds_joined_) {
    for (const std::string& seed : options_.seeds) {
      if (member_addresses.count(seed) > 0) continue;
      Stray& s =
          stray_seeds_.try_emplace(seed, Stray{Backoff(options_.min_backoff, options_.stray_max_backoff)}).first->second;
      if (s.in_flight) continue;  // also skips a seed configured twice
      if (s.backoff.Ready(now)) {
        plan.stray_seeds.push_back(seed);
        s.in_flight = true;
      } else {
        next = std::min(next, s.backoff.ready_at());
      }
    }
  }
  // Per member: announce ourselves; else dial if our name sorts first.
  for (auto& [name, p] : peers_) {
    if (p.announcing || p.dialing) continue;  // its result will wake the caller
    const bool want_announce = !p.knows_us || p.needs_sync;
    if (want_announce && p.announce.Ready(now)) {
      plan.announce.push_back({name, p.id});
      p.announcing = true;
      // Cleared before the call: news learned while it runs sets it again.
      p.needs_sync = false;
      continue;  // dial after the answer (Decide again)
    }
    if (want_announce) next = std::min(next, p.announce.ready_at());
    const bool want_dial = p.knows_us && options_.self_name < name && !linked(name);
    if (!want_dial) continue;
    if (p.dial.Ready(now)) {
      plan.dial.push_back({name, p.id});
      p.dialing = true;
    } else {
      next = std::min(next, p.dial.ready_at());
    }
  }
  plan.next_wake = next;
  return plan;
}

void Reconciler::OnMemberAdded(const mesh::v1::Member& m, absl::Time now) {
  // Everyone else we know must hear of the newcomer from us: they may have
  // joined through a node that did not know it.
  for (auto& [name, p] : peers_) {
    if (name != m.name()) p.needs_sync = true;
  }
  Peer fresh{m.id(),
             /*knows_us=*/false,
             /*needs_sync=*/false,
             /*announcing=*/false,
             /*dialing=*/false,
             /*refusals=*/0,
             Backoff(options_.min_backoff, options_.max_backoff),
             Backoff(options_.min_backoff, options_.max_backoff)};
  // Announce and dial are ready at once (a fresh Backoff is).
  peers_.insert_or_assign(m.name(), std::move(fresh));
}

void Reconciler::OnMemberRemoved(const std::string& name, uint64_t id) {
  auto it = peers_.find(name);
  if (it != peers_.end() && it->second.id == id) peers_.erase(it);
}

void Reconciler::OnJoinedUs(const std::string& name, uint64_t id) {
  if (Peer* p = FindPeer(name, id)) p->knows_us = true;
}

void Reconciler::OnSeedJoined(const std::string& seed, const std::vector<mesh::v1::Member>& answer) {
  seeds_joined_ = true;
  seed_round_in_flight_ = false;
  seed_backoff_.Reset();
  // The seed itself answered our Join, so it knows us.
  for (const mesh::v1::Member& m : answer) {
    if (m.grpc_address() != seed) continue;
    if (Peer* p = FindPeer(m.name(), m.id())) p->knows_us = true;
  }
}

Reconciler::Outcome Reconciler::OnSeedRoundFailed(absl::Time now) {
  seed_round_in_flight_ = false;
  seed_backoff_.Schedule(now);
  return Failed(seed_backoff_);
}

Reconciler::Outcome Reconciler::OnStraySeedResult(const std::string& seed, bool ok, absl::Time now) {
  auto it = stray_seeds_.find(seed);
  if (it == stray_seeds_.end()) return Outcome{};
  Stray& s = it->second;
  s.in_flight = false;
  if (ok) {
    // It answered, so its members are merged and it should be a member now.
    // If its configured address is not the one it announces (another
    // spelling of the same target), it stays "stray": ask it at the slow
    // rate, not every min_backoff.
    s.backoff.Reset();
    s.backoff.set_ready_at(now + options_.stray_max_backoff);
    Outcome out;
    out.retry_at = s.backoff.ready_at();
    return out;
  }
  s.backoff.Schedule(now);
  return Failed(s.backoff);
}

Reconciler::Outcome Reconciler::OnAnnounceResult(const std::string& name, uint64_t id, bool ok, bool peer_alive,
                                                 absl::Time now) {
  Peer* p = FindPeer(name, id);
  // Removed or replaced meanwhile, or not planned: nothing to learn.
  if (p == nullptr || !p->announcing) return Outcome{};
  p->announcing = false;
  if (ok) {
    p->knows_us = true;
    p->announce.Reset();  // and the dial, if ours, is ready at once
    return Outcome{};
  }
  if (!peer_alive) {
    peers_.erase(name);
    Outcome out;
    out.depart = true;
    return out;
  }
  p->needs_sync = true;
  p->announce.Schedule(now);
  return Failed(p->announce);
}

Reconciler::Outcome Reconciler::OnDialResult(const std::string& name, uint64_t id, const absl::Status& status,
                                             bool peer_alive, absl::Time now) {
  Peer* p = FindPeer(name, id);
  if (p == nullptr || !p->dialing) return Outcome{};
  p->dialing = false;
  if (status.ok()) {
    p->dial.Reset();
    p->refusals = 0;
    return Outcome{};
  }
  if (!peer_alive) {
    peers_.erase(name);
    Outcome out;
    out.depart = true;
    return out;
  }
  if (status.code() == absl::StatusCode::kAborted) {
    // The peer refused us, typically because it does not know us (yet, or
    // any more): announce ourselves again at once, then dial right after.
    // A peer that keeps refusing although our announces succeed (it screens
    // us out for another reason: pid namespaces, its handshake caps) would
    // make that a busy loop of Join + handshake; from the second refusal in
    // a row the dial backs off instead.
    p->knows_us = false;
    p->announce.set_ready_at(absl::InfinitePast());
    ++p->refusals;
    if (p->refusals == 1) {
      p->dial.Reset();
    } else {
      p->dial.Schedule(now);
    }
    Outcome out;
    out.failures = p->refusals;
    out.log = ShouldLogFailure(p->refusals);
    out.retry_at = p->dial.ready_at();
    return out;
  }
  p->dial.Schedule(now);
  return Failed(p->dial);
}

void Reconciler::OnLinkUp(const std::string& name) {
  auto it = peers_.find(name);
  if (it == peers_.end()) return;
  it->second.dial.Reset();
  it->second.announce.Reset();
  it->second.refusals = 0;
}

void Reconciler::OnLinkDown(const std::string& name) {
  auto it = peers_.find(name);
  if (it == peers_.end()) return;
  it->second.dial.Reset();
}

const Reconciler::Peer* Reconciler::Find(const std::string& name) const {
  auto it = peers_.find(name);
  return it == peers_.end() ? nullptr : &it->second;
}

const Backoff* Reconciler::FindStraySeed(const std::string& seed) const {
  auto it = stray_seeds_.find(seed);
  return it == stray_seeds_.end() ? nullptr : &it->second.backoff;
}

Reconciler::Peer* Reconciler::FindPeer(const std::string& name, uint64_t id) {
  auto it = peers_.find(name);
  if (it == peers_.end() || it->second.id != id) return nullptr;
  return &it->second;
}

Reconciler::Outcome Reconciler::Failed(const Backoff& b) const {
  Outcome out;
  out.failures = b.failures();
  out.log = ShouldLogFailure(b.failures());
  out.retry_at = b.ready_at();
  return out;
}

}  // namespace mesh
