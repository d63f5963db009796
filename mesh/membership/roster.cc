#include "mesh/membership/roster.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace mesh {
namespace {

void SetSince(absl::Time t, mesh::v1::Member* m) {
  const int64_t nanos = absl::ToUnixNanos(t);
  int64_t seconds = nanos / 1000000000;
  int64_t rem = nanos % 1000000000;
  if (rem < 0) {  // Timestamp.nanos is in [0, 1e9)
    rem += 1000000000;
    --seconds;
  }
  m->mutable_since()->set_seconds(seconds);
  m->mutable_since()->set_nanos(static_cast<int32_t>(rem));
}

absl::Status NameTaken(const std::string& name, pid_t pid) {
  return absl::AlreadyExistsError(
      absl::StrCat("name '", name, "' is taken by a live node (pid ", pid, "); pick another name"));
}

}  // namespace

Roster::Roster(Options options) : options_(std::move(options)) {
  // Programmer errors: the node always injects the probe.
  if (!options_.process_alive) std::abort();
}

bool Roster::IsAlive(pid_t pid) const { return options_.process_alive(pid); }

absl::Status Roster::CheckMember(const mesh::v1::Member& m) const {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("member '", m.name(), "': ", what));
  };
  if (m.name().empty() || m.name().size() > 64) return bad("name must be 1 to 64 characters");
  for (char c : m.name()) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-')) {
      return bad("name has characters outside [A-Za-z0-9_.-]");
    }
  }
  if (m.id() == 0) return bad("id is 0");
  if (m.pid() <= 0) return bad("pid must be positive");
  if (m.grpc_address().empty()) return bad("grpc_address is empty");
  if (m.link_socket().empty() || m.link_socket()[0] != '/' || m.link_socket().size() > 107) {
    return bad("link_socket must be an absolute path of at most 107 bytes");
  }
  const auto& uids = options_.allowed_uids;
  if (std::find(uids.begin(), uids.end(), m.uid()) == uids.end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("member '", m.name(), "' runs as uid ", m.uid(), ", which is not in allowed_peer_uids"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Roster::Change> Roster::Join(const mesh::v1::Member& m, const std::vector<mesh::v1::Member>& known,
                                            LinkedFn linked, absl::Time now) {
  absl::Status valid = CheckMember(m);
  if (!valid.ok()) return valid;
  Change change;
  if (m.name() == options_.self_name) {
    if (m.id() == options_.self_id) return change;
    return NameTaken(m.name(), options_.self_pid);
  }
  auto it = members_.find(m.name());
  if (it != members_.end() && it->second.member.id() != m.id()) {
    const mesh::v1::Member& old = it->second.member;
    if (linked(m.name()) || IsAlive(old.pid())) return NameTaken(m.name(), old.pid());
    // The old holder of the name is dead: forget it, welcome the new one.
    DepartInto(m.name(), old.id(), now, &change);
  }
  if (HasLeft(m.id())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "member '", m.name(), "' (id ", absl::Hex(m.id()),
        ") said goodbye and left the mesh; a node that left joins again only as a new incarnation (restart it)"));
  }
  // The member itself may come back under an id we buried (it lost its
  // link, say, but lives): its own word outranks gossip.
  Untombstone(m.id());
  Learn(m, now, linked, &change);
  for (const mesh::v1::Member& k : known) Learn(k, now, linked, &change);
  return change;
}

bool Roster::Learn(const mesh::v1::Member& m, absl::Time now, LinkedFn linked, Change* change) {
  if (!CheckMember(m).ok()) return false;
  if (m.name() == options_.self_name || m.state() == mesh::v1::DOWN || IsTombstoned(m.id())) return false;
  auto it = members_.find(m.name());
  if (it != members_.end()) {
    if (it->second.member.id() == m.id()) return false;
    // A different incarnation: only replace a holder that is gone.
    if (linked(m.name()) || IsAlive(it->second.member.pid())) return false;
    DepartInto(m.name(), it->second.member.id(), now, change);
  }
  if (!IsAlive(m.pid())) return false;  // a stale announcement of a dead node
  Entry e;
  e.member = m;
  e.member.set_state(mesh::v1::JOINING);
  e.member.clear_since();
  e.since = now;
  departed_.erase(m.name());
  if (change != nullptr) change->added.push_back(e.member);
  members_.emplace(m.name(), std::move(e));
  ++generation_;
  return true;
}

void Roster::DepartInto(const std::string& name, uint64_t id, absl::Time now, Change* change) {
  if (!Depart(name, id, now) || change == nullptr) return;
  change->departed.push_back(departed_.at(name).member);
}

bool Roster::Depart(const std::string& name, uint64_t id, absl::Time now) {
  auto it = members_.find(name);
  if (it == members_.end() || it->second.member.id() != id) return false;
  Entry gone = std::move(it->second);
  members_.erase(it);
  Tombstone(id);
  gone.member.set_state(mesh::v1::DOWN);
  gone.since = now;
  departed_[name] = std::move(gone);
  if (departed_.size() > options_.max_departed) {
    auto oldest = departed_.begin();
    for (auto d = departed_.begin(); d != departed_.end(); ++d) {
      if (d->second.since < oldest->second.since) oldest = d;
    }
    departed_.erase(oldest);
  }
  ++generation_;
  return true;
}

bool Roster::MarkLinked(const std::string& name, absl::Time now) {
  auto it = members_.find(name);
  if (it == members_.end()) return false;
  it->second.since = now;
  ++generation_;
  return true;
}

absl::Time Roster::ExpireDeparted(absl::Time now) {
  absl::Time next = absl::InfiniteFuture();
  bool changed = false;
  for (auto it = departed_.begin(); it != departed_.end();) {
    const absl::Time expires = it->second.since + options_.departed_ttl;
    if (now >= expires) {
      it = departed_.erase(it);
      changed = true;
    } else {
      next = std::min(next, expires);
      ++it;
    }
  }
  if (changed) ++generation_;
  return next;
}

void Roster::Clear() {
  members_.clear();
  departed_.clear();
  tombstones_.clear();
  tombstone_order_.clear();
  ++generation_;
}

void Roster::MarkLeft(uint64_t id) { Tombstone(id, /*left=*/true); }

bool Roster::HasLeft(uint64_t id) const {
  auto t = tombstones_.find(id);
  return t != tombstones_.end() && t->second.left;
}

void Roster::Tombstone(uint64_t id, bool left) {
  if (options_.max_tombstones == 0) return;
  const uint64_t seq = ++tombstone_seq_;
  Tomb& tomb = tombstones_[id];
  tomb.seq = seq;
  tomb.left = tomb.left || left;
  tombstone_order_.emplace_back(id, seq);
  // Forget the oldest beyond the cap; pairs whose id was erased or
  // tombstoned again since are stale and simply dropped.
  while (tombstones_.size() > options_.max_tombstones) {
    const auto [old_id, old_seq] = tombstone_order_.front();
    tombstone_order_.pop_front();
    auto t = tombstones_.find(old_id);
    if (t != tombstones_.end() && t->second.seq == old_seq) tombstones_.erase(t);
  }
  // Stale pairs only pile up when ids are erased (Join) without eviction:
  // compact then, so the queue stays within twice the cap.
  if (tombstone_order_.size() > 2 * options_.max_tombstones) {
    std::deque<std::pair<uint64_t, uint64_t>> live;
    for (const auto& [tid, tseq] : tombstone_order_) {
      auto t = tombstones_.find(tid);
      if (t != tombstones_.end() && t->second.seq == tseq) live.emplace_back(tid, tseq);
    }
    tombstone_order_.swap(live);
  }
}

void Roster::Untombstone(uint64_t id) { tombstones_.erase(id); }

const Roster::Entry* Roster::Find(const std::string& name) const {
  auto it = members_.find(name);
  return it == members_.end() ? nullptr : &it->second;
}

bool Roster::IsMemberPid(pid_t pid) const {
  for (const auto& [n, e] : members_) {
    if (e.member.pid() == pid) return true;
  }
  return false;
}

absl::StatusOr<mesh::v1::Member> Roster::Lookup(const std::string& name, uint64_t id) const {
  auto it = members_.find(name);
  if (it == members_.end() || it->second.member.id() != id) {
    return absl::NotFoundError(absl::StrCat("'", absl::CHexEscape(name), "' (id ", absl::Hex(id),
                                            ") has not joined through discovery; join first"));
  }
  return it->second.member;
}

std::vector<mesh::v1::Member> Roster::Live(LinkedFn linked) const {
  std::vector<mesh::v1::Member> out;
  out.reserve(members_.size());
  for (const auto& [n, e] : members_) {
    mesh::v1::Member m = e.member;
    m.set_state(linked(n) ? mesh::v1::UP : mesh::v1::JOINING);
    SetSince(e.since, &m);
    out.push_back(std::move(m));
  }
  return out;
}

std::vector<mesh::v1::Member> Roster::Members(absl::Time now, LinkedFn linked) const {
  std::vector<mesh::v1::Member> out = Live(linked);
  for (const auto& [n, e] : departed_) {
    if (now >= e.since + options_.departed_ttl) continue;  // expired
    mesh::v1::Member m = e.member;
    m.set_state(mesh::v1::DOWN);
    SetSince(e.since, &m);
    out.push_back(std::move(m));
  }
  return out;
}

std::set<std::string> Roster::Addresses() const {
  std::set<std::string> out;
  for (const auto& [n, e] : members_) out.insert(e.member.grpc_address());
  return out;
}

}  // namespace mesh
