#include "mesh/topology/topology.h"

#include <algorithm>
#include <map>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace mesh {
namespace topology {
namespace {

// The reporter's side of one link, before ordering: "tx" is self -> peer.
void FillLink(const std::string& self, const LinkReport& r, mesh::v1::Link* l) {
  const bool self_first = self < r.peer;
  l->set_a(self_first ? self : r.peer);
  l->set_b(self_first ? r.peer : self);
  if (self_first) {
    l->set_ring_bytes_a_to_b(r.tx_ring_bytes);
    l->set_ring_bytes_b_to_a(r.rx_ring_bytes);
    l->set_messages_a_to_b(r.tx_messages);
    l->set_bytes_a_to_b(r.tx_bytes);
    l->set_messages_b_to_a(r.rx_messages);
    l->set_bytes_b_to_a(r.rx_bytes);
    l->set_queued_bytes_a_to_b(r.tx_queued_bytes);
    l->set_queued_bytes_b_to_a(r.rx_queued_bytes);
    l->set_full_events_a_to_b(r.tx_full_events);
    l->set_b_unresponsive(r.peer_unresponsive);
  } else {
    l->set_ring_bytes_b_to_a(r.tx_ring_bytes);
    l->set_ring_bytes_a_to_b(r.rx_ring_bytes);
    l->set_messages_b_to_a(r.tx_messages);
    l->set_bytes_b_to_a(r.tx_bytes);
    l->set_messages_a_to_b(r.rx_messages);
    l->set_bytes_a_to_b(r.rx_bytes);
    l->set_queued_bytes_b_to_a(r.tx_queued_bytes);
    l->set_queued_bytes_a_to_b(r.rx_queued_bytes);
    l->set_full_events_b_to_a(r.tx_full_events);
    l->set_a_unresponsive(r.peer_unresponsive);
  }
  *l->mutable_since() = TimeToProto(r.since);
}

// A later report `l` of a link already in `m`, by `reporter`: take what the
// reporter is authoritative for (its own sends, its view of the other end).
void MergeLink(const std::string& reporter, const mesh::v1::Link& l, mesh::v1::Link* m) {
  if (reporter == l.a()) {
    m->set_b_unresponsive(l.b_unresponsive());
    m->set_messages_a_to_b(l.messages_a_to_b());
    m->set_bytes_a_to_b(l.bytes_a_to_b());
    m->set_full_events_a_to_b(l.full_events_a_to_b());
    m->set_ring_bytes_a_to_b(l.ring_bytes_a_to_b());
  } else {
    m->set_a_unresponsive(l.a_unresponsive());
    m->set_messages_b_to_a(l.messages_b_to_a());
    m->set_bytes_b_to_a(l.bytes_b_to_a());
    m->set_full_events_b_to_a(l.full_events_b_to_a());
    m->set_ring_bytes_b_to_a(l.ring_bytes_b_to_a());
  }
}

// A member incarnation, for lookups across reporters.
using MemberKey = std::pair<std::string, uint64_t>;

}  // namespace

google::protobuf::Timestamp TimeToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

mesh::v1::TopologySnapshot LocalSnapshot(const std::string& self, absl::Time now,
                                         std::vector<mesh::v1::Member> members,
                                         const std::vector<LinkReport>& links) {
  mesh::v1::TopologySnapshot snap;
  snap.set_reporter(self);
  *snap.mutable_taken() = TimeToProto(now);
  for (auto& m : members) *snap.add_members() = std::move(m);
  for (const LinkReport& r : links) FillLink(self, r, snap.add_links());
  return snap;
}

mesh::v1::TopologySnapshot MergeSnapshots(mesh::v1::TopologySnapshot local,
                                          const std::vector<mesh::v1::TopologySnapshot>& remote) {
  // Links: first report wins, later ones by an end overwrite its own part.
  std::map<std::pair<std::string, std::string>, mesh::v1::Link> merged;
  std::map<std::pair<std::string, std::string>, int> reports;
  auto merge = [&](const mesh::v1::TopologySnapshot& s) {
    for (const mesh::v1::Link& l : s.links()) {
      auto key = std::make_pair(l.a(), l.b());
      ++reports[key];
      auto [it, inserted] = merged.emplace(key, l);
      if (!inserted) MergeLink(s.reporter(), l, &it->second);
    }
  };
  merge(local);
  for (const auto& s : remote) merge(s);
  local.clear_links();
  for (auto& [key, l] : merged) {
    l.set_confirmed_by_both(reports[key] >= 2);
    *local.add_links() = std::move(l);
  }

  // Members: a local DOWN is overruled by any live reporter's UP/JOINING.
  std::map<MemberKey, mesh::v1::MemberState> seen_alive;
  for (const auto& s : remote) {
    for (const mesh::v1::Member& m : s.members()) {
      if (m.state() != mesh::v1::UP && m.state() != mesh::v1::JOINING) continue;
      mesh::v1::MemberState& best = seen_alive[MemberKey(m.name(), m.id())];
      if (best != mesh::v1::UP) best = m.state();
    }
  }
  for (mesh::v1::Member& m : *local.mutable_members()) {
    if (m.state() != mesh::v1::DOWN) continue;
    auto it = seen_alive.find(MemberKey(m.name(), m.id()));
    if (it != seen_alive.end()) m.set_state(it->second);
  }

  // Topics: each node reports its own; one entry per node (the first
  // report of a name wins), sorted by node.
  std::map<std::string, mesh::v1::NodeTopics> topics;
  for (const auto& t : local.topics()) topics.emplace(t.node(), t);
  for (const auto& s : remote) {
    for (const auto& t : s.topics()) topics.emplace(t.node(), t);
  }
  local.clear_topics();
  for (auto& [node, t] : topics) *local.add_topics() = std::move(t);
  std::map<std::string, mesh::v1::PoolUsage> pools;
  for (const auto& p : local.pools()) pools.emplace(p.node(), p);
  for (const auto& s : remote) {
    for (const auto& p : s.pools()) pools.emplace(p.node(), p);
  }
  local.clear_pools();
  for (auto& [node, p] : pools) *local.add_pools() = std::move(p);
  return local;
}

bool SameShape(const mesh::v1::TopologySnapshot& a, const mesh::v1::TopologySnapshot& b) {
  using MemberShape = std::tuple<std::string, uint64_t, int>;
  using LinkShape = std::tuple<std::string, std::string, bool, bool, bool>;
  auto members = [](const mesh::v1::TopologySnapshot& s) {
    std::vector<MemberShape> out;
    for (const auto& m : s.members()) out.emplace_back(m.name(), m.id(), m.state());
    std::sort(out.begin(), out.end());
    return out;
  };
  auto links = [](const mesh::v1::TopologySnapshot& s) {
    std::vector<LinkShape> out;
    for (const auto& l : s.links()) {
      out.emplace_back(l.a(), l.b(), l.confirmed_by_both(), l.a_unresponsive(), l.b_unresponsive());
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  // Who publishes, subscribes to and serves what (not the counters).
  auto topics = [](const mesh::v1::TopologySnapshot& s) {
    std::vector<std::string> out;
    for (const auto& t : s.topics()) {
      for (const auto& p : t.published()) out.push_back(absl::StrCat(t.node(), " pub ", p.topic(), " ", p.peers()));
      for (const auto& p : t.subscribed()) out.push_back(absl::StrCat(t.node(), " sub ", p.topic()));
      for (const auto& p : t.served()) out.push_back(absl::StrCat(t.node(), " srv ", p.service()));
    }
    std::sort(out.begin(), out.end());
    return out;
  };
  return a.members_size() == b.members_size() && a.links_size() == b.links_size() && members(a) == members(b) &&
         links(a) == links(b) && topics(a) == topics(b);
}

}  // namespace topology
}  // namespace mesh
