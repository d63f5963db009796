#include "mesh/topology/topology.h"

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace topology {
namespace {

mesh::v1::Member M(const std::string& name, uint64_t id, mesh::v1::MemberState state) {
  mesh::v1::Member m;
  m.set_name(name);
  m.set_id(id);
  m.set_state(state);
  return m;
}

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

// `self`'s report of its link to `peer`: it sent `tx` messages of 10 bytes,
// got `rx`, and each ring has the given capacity.
LinkReport Report(const std::string& peer, uint64_t tx, uint64_t rx, uint64_t tx_ring, uint64_t rx_ring,
                  bool unresponsive = false) {
  LinkReport r;
  r.peer = peer;
  r.tx_messages = tx;
  r.tx_bytes = tx * 10;
  r.tx_full_events = tx + 1;
  r.rx_messages = rx;
  r.rx_bytes = rx * 10;
  r.tx_ring_bytes = tx_ring;
  r.rx_ring_bytes = rx_ring;
  r.tx_queued_bytes = 7;
  r.rx_queued_bytes = 9;
  r.peer_unresponsive = unresponsive;
  r.since = kNow - absl::Seconds(5);
  return r;
}

TEST(LocalSnapshotTest, OrdersEndsByNameAndPlacesDirections) {
  // "b" reports links to "a" (b is the second end) and "c" (b is first).
  auto snap = LocalSnapshot("b", kNow, {M("b", 2, mesh::v1::UP), M("a", 1, mesh::v1::UP), M("c", 3, mesh::v1::UP)},
                            {Report("a", 5, 6, 100, 200, true), Report("c", 7, 8, 300, 400, true)});
  EXPECT_EQ(snap.reporter(), "b");
  EXPECT_EQ(snap.taken().seconds(), 1800000000);
  ASSERT_EQ(snap.members_size(), 3);
  EXPECT_EQ(snap.members(0).name(), "b");
  ASSERT_EQ(snap.links_size(), 2);

  const mesh::v1::Link& ab = snap.links(0);
  EXPECT_EQ(ab.a(), "a");
  EXPECT_EQ(ab.b(), "b");
  EXPECT_EQ(ab.messages_b_to_a(), 5u);
  EXPECT_EQ(ab.bytes_b_to_a(), 50u);
  EXPECT_EQ(ab.full_events_b_to_a(), 6u);
  EXPECT_EQ(ab.messages_a_to_b(), 6u);
  EXPECT_EQ(ab.bytes_a_to_b(), 60u);
  EXPECT_EQ(ab.full_events_a_to_b(), 0u);  // only the sender counts those
  EXPECT_EQ(ab.ring_bytes_b_to_a(), 100u);
  EXPECT_EQ(ab.ring_bytes_a_to_b(), 200u);
  EXPECT_EQ(ab.queued_bytes_b_to_a(), 7u);
  EXPECT_EQ(ab.queued_bytes_a_to_b(), 9u);
  EXPECT_TRUE(ab.a_unresponsive());  // b's view of the other end, a
  EXPECT_FALSE(ab.b_unresponsive());
  EXPECT_EQ(ab.since().seconds(), 1800000000 - 5);
  EXPECT_FALSE(ab.confirmed_by_both());

  const mesh::v1::Link& bc = snap.links(1);
  EXPECT_EQ(bc.a(), "b");
  EXPECT_EQ(bc.b(), "c");
  EXPECT_EQ(bc.messages_a_to_b(), 7u);
  EXPECT_EQ(bc.messages_b_to_a(), 8u);
  EXPECT_EQ(bc.full_events_a_to_b(), 8u);
  EXPECT_EQ(bc.ring_bytes_a_to_b(), 300u);
  EXPECT_EQ(bc.ring_bytes_b_to_a(), 400u);
  EXPECT_EQ(bc.queued_bytes_a_to_b(), 7u);
  EXPECT_EQ(bc.queued_bytes_b_to_a(), 9u);
  EXPECT_TRUE(bc.b_unresponsive());
  EXPECT_FALSE(bc.a_unresponsive());
}

TEST(LocalSnapshotTest, CarriesDownMembersThrough) {
  auto snap = LocalSnapshot("a", kNow, {M("a", 1, mesh::v1::UP), M("gone", 9, mesh::v1::DOWN)}, {});
  ASSERT_EQ(snap.members_size(), 2);
  EXPECT_EQ(snap.members(1).name(), "gone");
  EXPECT_EQ(snap.members(1).state(), mesh::v1::DOWN);
  EXPECT_EQ(snap.links_size(), 0);
}

TEST(MergeSnapshotsTest, EachDirectionComesFromItsSender) {
  // a and b both report their link; their counts differ (taken at different
  // moments): each direction must come from its sender.
  auto a = LocalSnapshot("a", kNow, {M("a", 1, mesh::v1::UP), M("b", 2, mesh::v1::UP)},
                         {Report("b", /*tx=*/100, /*rx=*/40, 1000, 2000)});
  auto b = LocalSnapshot("b", kNow, {M("b", 2, mesh::v1::UP), M("a", 1, mesh::v1::UP)},
                         {Report("a", /*tx=*/50, /*rx=*/90, 2001, 1001, /*unresponsive=*/true)});
  auto merged = MergeSnapshots(a, {b});
  EXPECT_EQ(merged.reporter(), "a");
  ASSERT_EQ(merged.links_size(), 1);
  const mesh::v1::Link& l = merged.links(0);
  EXPECT_EQ(l.messages_a_to_b(), 100u);
  EXPECT_EQ(l.bytes_a_to_b(), 1000u);
  EXPECT_EQ(l.full_events_a_to_b(), 101u);
  EXPECT_EQ(l.ring_bytes_a_to_b(), 1000u);
  EXPECT_EQ(l.messages_b_to_a(), 50u);
  EXPECT_EQ(l.bytes_b_to_a(), 500u);
  EXPECT_EQ(l.full_events_b_to_a(), 51u);
  EXPECT_EQ(l.ring_bytes_b_to_a(), 2001u);
  EXPECT_TRUE(l.a_unresponsive());  // as b reports it
  EXPECT_FALSE(l.b_unresponsive());  // as a reports it
  EXPECT_TRUE(l.confirmed_by_both());

  // The same from b's side: the same link, whoever merges.
  auto from_b = MergeSnapshots(b, {a});
  ASSERT_EQ(from_b.links_size(), 1);
  EXPECT_EQ(from_b.reporter(), "b");
  EXPECT_EQ(from_b.links(0).messages_a_to_b(), 100u);
  EXPECT_EQ(from_b.links(0).messages_b_to_a(), 50u);
  EXPECT_EQ(from_b.links(0).ring_bytes_b_to_a(), 2001u);
  EXPECT_TRUE(from_b.links(0).a_unresponsive());
  EXPECT_TRUE(from_b.links(0).confirmed_by_both());
}

TEST(MergeSnapshotsTest, LinksBetweenOtherNodesAndPartialAnswers) {
  auto members = std::vector<mesh::v1::Member>{M("a", 1, mesh::v1::UP), M("b", 2, mesh::v1::UP),
                                               M("c", 3, mesh::v1::UP)};
  auto a = LocalSnapshot("a", kNow, members, {Report("c", 1, 2, 10, 10), Report("b", 3, 4, 10, 10)});
  auto c = LocalSnapshot("c", kNow, {}, {Report("a", 2, 1, 10, 10), Report("b", 5, 6, 10, 10)});
  // b did not answer: its links are seen from one end only.
  auto merged = MergeSnapshots(a, {c});
  ASSERT_EQ(merged.links_size(), 3);
  // Sorted by (a, b).
  EXPECT_EQ(merged.links(0).a(), "a");
  EXPECT_EQ(merged.links(0).b(), "b");
  EXPECT_EQ(merged.links(1).a(), "a");
  EXPECT_EQ(merged.links(1).b(), "c");
  EXPECT_EQ(merged.links(2).a(), "b");
  EXPECT_EQ(merged.links(2).b(), "c");
  EXPECT_FALSE(merged.links(0).confirmed_by_both());  // a-b: a only
  EXPECT_TRUE(merged.links(1).confirmed_by_both());   // a-c: both
  EXPECT_FALSE(merged.links(2).confirmed_by_both());  // b-c: c only
  // b-c as c (its b end) reports it.
  EXPECT_EQ(merged.links(2).messages_b_to_a(), 5u);
  EXPECT_EQ(merged.links(2).messages_a_to_b(), 6u);
  // Members are the local node's.
  EXPECT_EQ(merged.members_size(), 3);

  // Nobody answered: the local links, sorted, none confirmed.
  auto alone = MergeSnapshots(a, {});
  ASSERT_EQ(alone.links_size(), 2);
  EXPECT_EQ(alone.links(0).b(), "b");
  EXPECT_EQ(alone.links(1).b(), "c");
  EXPECT_FALSE(alone.links(0).confirmed_by_both());
  EXPECT_FALSE(alone.links(1).confirmed_by_both());
}

TEST(MergeSnapshotsTest, FirstReportKeepsWhatNoEndIsAuthoritativeFor) {
  auto a = LocalSnapshot("a", kNow, {M("a", 1, mesh::v1::UP)}, {Report("b", 1, 2, 10, 20)});
  auto b = LocalSnapshot("b", kNow, {}, {Report("a", 2, 1, 20, 10)});
  b.mutable_links(0)->set_queued_bytes_a_to_b(12345);
  b.mutable_links(0)->mutable_since()->set_seconds(1);
  auto merged = MergeSnapshots(a, {b});
  ASSERT_EQ(merged.links_size(), 1);
  EXPECT_EQ(merged.links(0).queued_bytes_a_to_b(), 7u);  // a's report came first
  EXPECT_EQ(merged.links(0).since().seconds(), 1800000000 - 5);
}

TEST(MergeSnapshotsTest, DownOnlyWhenNoLiveReporterSeesTheMember) {
  auto a = LocalSnapshot("a", kNow,
                         {M("a", 1, mesh::v1::UP), M("b", 2, mesh::v1::DOWN), M("c", 3, mesh::v1::DOWN),
                          M("d", 4, mesh::v1::DOWN), M("e", 5, mesh::v1::DOWN), M("f", 6, mesh::v1::JOINING)},
                         {});
  // x sees b JOINING, c UP, d as a different incarnation, f DOWN.
  auto x = LocalSnapshot("x", kNow,
                         {M("x", 7, mesh::v1::UP), M("b", 2, mesh::v1::JOINING), M("c", 3, mesh::v1::UP),
                          M("d", 40, mesh::v1::UP), M("e", 5, mesh::v1::DOWN), M("f", 6, mesh::v1::DOWN)},
                         {});
  // y sees b UP: UP wins over JOINING whatever the order.
  auto y = LocalSnapshot("y", kNow, {M("y", 8, mesh::v1::UP), M("b", 2, mesh::v1::UP)}, {});
  for (const auto& remote : {std::vector<mesh::v1::TopologySnapshot>{x, y},
                             std::vector<mesh::v1::TopologySnapshot>{y, x}}) {
    auto merged = MergeSnapshots(a, remote);
    ASSERT_EQ(merged.members_size(), 6);
    EXPECT_EQ(merged.members(0).state(), mesh::v1::UP);
    EXPECT_EQ(merged.members(1).state(), mesh::v1::UP) << "b";
    EXPECT_EQ(merged.members(2).state(), mesh::v1::UP) << "c";
    EXPECT_EQ(merged.members(3).state(), mesh::v1::DOWN) << "d: only another incarnation is up";
    EXPECT_EQ(merged.members(4).state(), mesh::v1::DOWN) << "e: everyone sees it down";
    EXPECT_EQ(merged.members(5).state(), mesh::v1::JOINING) << "f: a local non-DOWN state stays";
  }
  // With x alone, b is JOINING.
  EXPECT_EQ(MergeSnapshots(a, {x}).members(1).state(), mesh::v1::JOINING);
  // Nobody answered: the local view.
  EXPECT_EQ(MergeSnapshots(a, {}).members(1).state(), mesh::v1::DOWN);
}

TEST(SameShapeTest, IgnoresCountersAndTimestampsButNotStructure) {
  auto base = LocalSnapshot("a", kNow, {M("a", 1, mesh::v1::UP), M("b", 2, mesh::v1::UP)},
                            {Report("b", 1, 2, 10, 20)});
  EXPECT_TRUE(SameShape(base, base));

  // Counters, rings, timestamps, endpoints: same shape.
  auto busier = LocalSnapshot("a", kNow + absl::Seconds(3), {M("a", 1, mesh::v1::UP), M("b", 2, mesh::v1::UP)},
                              {Report("b", 100, 200, 11, 21)});
  busier.mutable_members(1)->set_grpc_address("unix:/elsewhere");
  busier.mutable_members(1)->mutable_since()->set_seconds(99);
  EXPECT_TRUE(SameShape(base, busier));

  // Order does not matter.
  auto reordered = base;
  reordered.mutable_members()->SwapElements(0, 1);
  EXPECT_TRUE(SameShape(base, reordered));

  auto changed = base;
  changed.mutable_members(1)->set_state(mesh::v1::DOWN);
  EXPECT_FALSE(SameShape(base, changed)) << "member state";
  changed = base;
  changed.mutable_members(1)->set_id(3);
  EXPECT_FALSE(SameShape(base, changed)) << "member id";
  changed = base;
  changed.mutable_members(1)->set_name("c");
  EXPECT_FALSE(SameShape(base, changed)) << "member name";
  changed = base;
  *changed.add_members() = M("c", 3, mesh::v1::JOINING);
  EXPECT_FALSE(SameShape(base, changed)) << "new member";
  changed = base;
  changed.mutable_links(0)->set_confirmed_by_both(true);
  EXPECT_FALSE(SameShape(base, changed)) << "confirmed_by_both";
  changed = base;
  changed.mutable_links(0)->set_a_unresponsive(true);
  EXPECT_FALSE(SameShape(base, changed)) << "a_unresponsive";
  changed = base;
  changed.mutable_links(0)->set_b_unresponsive(true);
  EXPECT_FALSE(SameShape(base, changed)) << "b_unresponsive";
  changed = base;
  changed.add_links()->set_a("b");
  EXPECT_FALSE(SameShape(base, changed)) << "new link";
  changed = base;
  changed.clear_links();
  EXPECT_FALSE(SameShape(base, changed)) << "link gone";

  // A link between two other nodes coming up, as a merge sees it.
  auto c = LocalSnapshot("c", kNow, {}, {Report("b", 1, 1, 10, 10)});
  EXPECT_FALSE(SameShape(MergeSnapshots(base, {}), MergeSnapshots(base, {c})));
}

}  // namespace
}  // namespace topology
}  // namespace mesh
