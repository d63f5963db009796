#include "mesh/membership/roster.h"

#include <functional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace {

constexpr uint32_t kUid = 1000;
const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);

mesh::v1::Member M(const std::string& name, uint64_t id, int pid) {
  mesh::v1::Member m;
  m.set_name(name);
  m.set_id(id);
  m.set_pid(pid);
  m.set_uid(kUid);
  m.set_grpc_address("unix:/run/mesh/" + name + ".grpc");
  m.set_link_socket("/run/mesh/" + name + ".link");
  m.set_state(mesh::v1::UP);
  return m;
}

class RosterTest : public ::testing::Test {
 protected:
  Roster::Options Opts() {
    Roster::Options o;
    o.self_name = "self";
    o.self_id = 0x5e1f;
    o.self_pid = 100;
    o.allowed_uids = {kUid};
    o.process_alive = [this](pid_t pid) { return alive_.count(pid) > 0; };
    return o;
  }
  bool Linked(const std::string& n) const { return linked_.count(n) > 0; }
  // A FunctionRef must not outlive its callable: keep one here.
  Roster::LinkedFn L() const { return linked_fn_; }
  absl::StatusOr<Roster::Change> Join(Roster& r, const mesh::v1::Member& m,
                                                     std::vector<mesh::v1::Member> known = {},
                                                     absl::Time now = kT0) {
    return r.Join(m, known, [this](const std::string& n) { return Linked(n); }, now);
  }
  bool Learn(Roster& r, const mesh::v1::Member& m, absl::Time now = kT0) {
    return r.Learn(m, now, [this](const std::string& n) { return Linked(n); });
  }
  std::vector<mesh::v1::Member> Members(const Roster& r, absl::Time now) {
    return r.Members(now, [this](const std::string& n) { return Linked(n); });
  }

  std::set<pid_t> alive_ = {100, 201, 202, 203, 204};
  std::set<std::string> linked_;
  const std::function<bool(const std::string&)> linked_fn_ = [this](const std::string& n) { return Linked(n); };
};

TEST_F(RosterTest, CheckMemberMessages) {
  Roster r(Opts());
  EXPECT_TRUE(r.CheckMember(M("a", 1, 201)).ok());
  struct Case {
    mesh::v1::Member m;
    absl::StatusCode code;
    std::string message;
  };
  std::vector<Case> cases;
  cases.push_back({M("", 1, 201), absl::StatusCode::kInvalidArgument, "member '': name must be 1 to 64 characters"});
  cases.push_back({M(std::string(65, 'x'), 1, 201), absl::StatusCode::kInvalidArgument,
                   "name must be 1 to 64 characters"});
  cases.push_back({M("a b", 1, 201), absl::StatusCode::kInvalidArgument,
                   "member 'a b': name has characters outside [A-Za-z0-9_.-]"});
  cases.push_back({M("a", 0, 201), absl::StatusCode::kInvalidArgument, "member 'a': id is 0"});
  cases.push_back({M("a", 1, 0), absl::StatusCode::kInvalidArgument, "member 'a': pid must be positive"});
  {
    auto m = M("a", 1, 201);
    m.clear_grpc_address();
    cases.push_back({m, absl::StatusCode::kInvalidArgument, "member 'a': grpc_address is empty"});
  }
  for (const std::string& sock : {std::string(""), std::string("rel/x.link"), "/" + std::string(107, 'x')}) {
    auto m = M("a", 1, 201);
    m.set_link_socket(sock);
    cases.push_back({m, absl::StatusCode::kInvalidArgument,
                     "member 'a': link_socket must be an absolute path of at most 107 bytes"});
  }
  {
    auto m = M("a", 1, 201);
    m.set_uid(4242);
    cases.push_back({m, absl::StatusCode::kPermissionDenied,
                     "member 'a' runs as uid 4242, which is not in allowed_peer_uids"});
  }
  for (const Case& c : cases) {
    absl::Status s = r.CheckMember(c.m);
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_TRUE(absl::StrContains(s.message(), c.message)) << s;
  }
  // The longest valid values pass.
  auto m = M(std::string(64, 'n'), 1, 201);
  m.set_link_socket("/" + std::string(106, 'x'));
  EXPECT_TRUE(r.CheckMember(m).ok());
}

TEST_F(RosterTest, JoinAddsMemberAndKnown) {
  Roster r(Opts());
  const uint64_t g0 = r.generation();
  auto added = Join(r, M("a", 1, 201), {M("b", 2, 202), M("self", 0x5e1f, 100), M("bad name", 3, 203)});
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(added->added.size(), 2u);
  EXPECT_EQ(added->added[0].name(), "a");
  EXPECT_EQ(added->added[0].state(), mesh::v1::JOINING);
  EXPECT_EQ(added->added[1].name(), "b");
  EXPECT_TRUE(added->departed.empty());
  EXPECT_EQ(r.size(), 2u);
  EXPECT_GT(r.generation(), g0);
  const Roster::Entry* a = r.Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->member.state(), mesh::v1::JOINING);
  EXPECT_EQ(a->since, kT0);
  // Joining again with the same id changes nothing.
  const uint64_t g1 = r.generation();
  added = Join(r, M("a", 1, 201));
  ASSERT_TRUE(added.ok());
  EXPECT_TRUE(added->empty());
  EXPECT_EQ(r.generation(), g1);
}

TEST_F(RosterTest, JoinChecksTheMember) {
  Roster r(Opts());
  auto bad = M("a", 1, 201);
  bad.set_uid(7);
  EXPECT_EQ(Join(r, bad).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Join(r, M("a", 0, 201)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.size(), 0u);
}

TEST_F(RosterTest, JoinUnderOurName) {
  Roster r(Opts());
  auto us = Join(r, M("self", 0x5e1f, 100));
  ASSERT_TRUE(us.ok());
  EXPECT_TRUE(us->empty());
  auto other = Join(r, M("self", 9, 201));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(other.status().message(), "name 'self' is taken by a live node (pid 100); pick another name");
  EXPECT_EQ(r.size(), 0u);
}

TEST_F(RosterTest, JoinRefusesNameOfLiveIncarnation) {
  Roster r(Opts());
  ASSERT_TRUE(Join(r, M("a", 1, 201)).ok());
  // Holder alive (pid 201).
  auto s = Join(r, M("a", 2, 202));
  EXPECT_EQ(s.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(s.status().message(), "name 'a' is taken by a live node (pid 201); pick another name");
  // Holder's pid dead but still linked: refused too.
  alive_.erase(201);
  linked_.insert("a");
  EXPECT_EQ(Join(r, M("a", 2, 202)).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(r.Find("a")->member.id(), 1u);
}

TEST_F(RosterTest, JoinReplacesDeadHolder) {
  Roster r(Opts());
  ASSERT_TRUE(Join(r, M("a", 1, 201)).ok());
  alive_.erase(201);
  auto added = Join(r, M("a", 2, 202), {}, kT0 + absl::Seconds(1));
  ASSERT_TRUE(added.ok()) << added.status();
  ASSERT_EQ(added->added.size(), 1u);
  ASSERT_EQ(added->departed.size(), 1u);
  EXPECT_EQ(added->departed[0].id(), 1u);
  EXPECT_EQ(added->departed[0].state(), mesh::v1::DOWN);
  EXPECT_EQ(r.Find("a")->member.id(), 2u);
  EXPECT_TRUE(r.IsTombstoned(1));
  // The new incarnation replaced the old one's DOWN entry.
  auto all = Members(r, kT0 + absl::Seconds(1));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id(), 2u);
  EXPECT_EQ(all[0].state(), mesh::v1::JOINING);
}

TEST_F(RosterTest, JoinErasesOwnTombstone) {
  Roster r(Opts());
  ASSERT_TRUE(Join(r, M("a", 1, 201)).ok());
  ASSERT_TRUE(r.Depart("a", 1, kT0));
  EXPECT_TRUE(r.IsTombstoned(1));
  // Gossip of a tombstoned id is ignored...
  EXPECT_FALSE(Learn(r, M("a", 1, 201)));
  // ...but the member itself may come back.
  auto added = Join(r, M("a", 1, 201));
  ASSERT_TRUE(added.ok());
  EXPECT_EQ(added->added.size(), 1u);
  EXPECT_FALSE(r.IsTombstoned(1));
}

// A member that said goodbye (MarkLeft) is not brought back by a Join it
// sent before leaving, whether that Join is served before or after its
// Depart; a new incarnation of its name is welcome.
TEST_F(RosterTest, MemberThatLeftCannotJoinAgainUnderItsId) {
  Roster r(Opts());
  ASSERT_TRUE(Join(r, M("a", 1, 201)).ok());
  r.MarkLeft(1);
  EXPECT_TRUE(r.HasLeft(1));
  EXPECT_EQ(r.Find("a")->member.id(), 1u);  // still a member until it departs
  ASSERT_TRUE(r.Depart("a", 1, kT0));
  EXPECT_TRUE(r.HasLeft(1));  // Depart's tombstone keeps the mark
  auto late = Join(r, M("a", 1, 201));
  ASSERT_EQ(late.status().code(), absl::StatusCode::kFailedPrecondition) << late.status();
  EXPECT_TRUE(absl::StrContains(late.status().message(), "said goodbye and left the mesh")) << late.status();
  EXPECT_TRUE(r.IsTombstoned(1));
  EXPECT_FALSE(Learn(r, M("a", 1, 201)));
  auto all = Members(r, kT0 + absl::Seconds(1));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].state(), mesh::v1::DOWN);
  // Marked before Depart: the same.
  ASSERT_TRUE(Join(r, M("b", 3, 203)).ok());
  r.MarkLeft(3);
  EXPECT_EQ(Join(r, M("b", 3, 203)).status().code(), absl::StatusCode::kFailedPrecondition);
  // A new incarnation of "a" joins (its pid is alive; the old one is gone).
  auto fresh = Join(r, M("a", 2, 202));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(r.Find("a")->member.id(), 2u);
}

TEST_F(RosterTest, LearnRules) {
  Roster r(Opts());
  EXPECT_FALSE(Learn(r, M("self", 77, 201)));       // our name
  EXPECT_FALSE(Learn(r, M("a", 1, 999)));           // dead pid: stale announcement
  EXPECT_FALSE(Learn(r, M("bad/name", 1, 201)));    // invalid
  auto down = M("d", 4, 204);
  down.set_state(mesh::v1::DOWN);
  EXPECT_FALSE(Learn(r, down));                      // announced DOWN
  EXPECT_EQ(r.size(), 0u);
  EXPECT_TRUE(Learn(r, M("a", 1, 201)));
  EXPECT_FALSE(Learn(r, M("a", 1, 201)));            // same id: nothing
  EXPECT_FALSE(Learn(r, M("a", 2, 202)));            // live holder keeps the name
  EXPECT_EQ(r.Find("a")->member.id(), 1u);
  linked_.insert("a");
  alive_.erase(201);
  EXPECT_FALSE(Learn(r, M("a", 2, 202)));            // linked holder too
  linked_.clear();
  EXPECT_TRUE(Learn(r, M("a", 2, 202), kT0 + absl::Seconds(2)));  // gone holder replaced
  EXPECT_EQ(r.Find("a")->member.id(), 2u);
  EXPECT_EQ(r.Find("a")->since, kT0 + absl::Seconds(2));
  EXPECT_TRUE(r.IsTombstoned(1));
}

TEST_F(RosterTest, LearnDropsDeadHolderEvenIfNewcomerIsDeadToo) {
  Roster r(Opts());
  ASSERT_TRUE(Learn(r, M("a", 1, 201)));
  alive_.erase(201);
  Roster::Change change;
  EXPECT_FALSE(r.Learn(M("a", 2, 999), kT0, L(), &change));
  EXPECT_TRUE(change.added.empty());
  ASSERT_EQ(change.departed.size(), 1u);  // the caller must forget it too
  EXPECT_EQ(change.departed[0].id(), 1u);
  EXPECT_EQ(r.Find("a"), nullptr);
  EXPECT_TRUE(r.IsTombstoned(1));
}

TEST_F(RosterTest, DepartKeepsDownEntry) {
  Roster r(Opts());
  ASSERT_TRUE(Learn(r, M("a", 1, 201)));
  ASSERT_TRUE(Learn(r, M("b", 2, 202)));
  EXPECT_FALSE(r.Depart("a", 9, kT0));  // stale id: nothing
  EXPECT_FALSE(r.Depart("zz", 1, kT0));
  const uint64_t g = r.generation();
  const absl::Time t = kT0 + absl::Seconds(5);
  ASSERT_TRUE(r.Depart("a", 1, t));
  EXPECT_GT(r.generation(), g);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(r.Find("a"), nullptr);
  EXPECT_FALSE(r.IsMemberPid(201));
  EXPECT_EQ(r.Lookup("a", 1).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(r.Addresses(), std::set<std::string>{"unix:/run/mesh/b.grpc"});
  // Live() never lists it; Members() does, DOWN since the departure.
  auto live = r.Live(L());
  ASSERT_EQ(live.size(), 1u);
  EXPECT_EQ(live[0].name(), "b");
  auto all = Members(r, t + absl::Seconds(1));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name(), "b");
  EXPECT_EQ(all[1].name(), "a");
  EXPECT_EQ(all[1].state(), mesh::v1::DOWN);
  EXPECT_EQ(all[1].since().seconds(), absl::ToUnixSeconds(t));
}

TEST_F(RosterTest, DepartedExpireByTime) {
  Roster::Options o = Opts();
  o.departed_ttl = absl::Seconds(60);
  Roster r(o);
  ASSERT_TRUE(Learn(r, M("a", 1, 201)));
  ASSERT_TRUE(Learn(r, M("b", 2, 202)));
  ASSERT_TRUE(r.Depart("a", 1, kT0));
  ASSERT_TRUE(r.Depart("b", 2, kT0 + absl::Seconds(30)));
  EXPECT_EQ(Members(r, kT0 + absl::Seconds(59)).size(), 2u);
  // At 60 s "a" is no longer reported, even before ExpireDeparted.
  auto at60 = Members(r, kT0 + absl::Seconds(60));
  ASSERT_EQ(at60.size(), 1u);
  EXPECT_EQ(at60[0].name(), "b");
  const uint64_t g = r.generation();
  EXPECT_EQ(r.ExpireDeparted(kT0 + absl::Seconds(60)), kT0 + absl::Seconds(90));
  EXPECT_GT(r.generation(), g);
  EXPECT_EQ(r.departed_count(), 1u);
  const uint64_t g2 = r.generation();
  EXPECT_EQ(r.ExpireDeparted(kT0 + absl::Seconds(61)), kT0 + absl::Seconds(90));
  EXPECT_EQ(r.generation(), g2);  // nothing expired: no change
  EXPECT_EQ(r.ExpireDeparted(kT0 + absl::Seconds(90)), absl::InfiniteFuture());
  EXPECT_EQ(r.departed_count(), 0u);
}

TEST_F(RosterTest, DepartedCappedByCount) {
  Roster::Options o = Opts();
  o.max_departed = 3;
  Roster r(o);
  for (int i = 0; i < 5; ++i) {
    const std::string n = "m" + std::to_string(i);
    alive_.insert(300 + i);
    ASSERT_TRUE(Learn(r, M(n, 10 + i, 300 + i)));
    ASSERT_TRUE(r.Depart(n, 10 + i, kT0 + absl::Seconds(i)));
  }
  EXPECT_EQ(r.departed_count(), 3u);
  auto all = Members(r, kT0 + absl::Seconds(5));
  ASSERT_EQ(all.size(), 3u);  // the oldest two (m0, m1) were dropped
  EXPECT_EQ(all[0].name(), "m2");
  EXPECT_EQ(all[2].name(), "m4");
}

TEST_F(RosterTest, RejoinReplacesDownEntry) {
  Roster r(Opts());
  ASSERT_TRUE(Learn(r, M("a", 1, 201)));
  ASSERT_TRUE(r.Depart("a", 1, kT0));
  EXPECT_EQ(r.departed_count(), 1u);
  // The same name comes back as a new incarnation (new id).
  EXPECT_TRUE(Learn(r, M("a", 2, 202), kT0 + absl::Seconds(1)));
  EXPECT_EQ(r.departed_count(), 0u);
  auto all = Members(r, kT0 + absl::Seconds(1));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id(), 2u);
  EXPECT_EQ(all[0].state(), mesh::v1::JOINING);
  // Departing twice under one name keeps the latest only.
  ASSERT_TRUE(r.Depart("a", 2, kT0 + absl::Seconds(2)));
  EXPECT_TRUE(Learn(r, M("a", 3, 203)));
  ASSERT_TRUE(r.Depart("a", 3, kT0 + absl::Seconds(3)));
  all = Members(r, kT0 + absl::Seconds(3));
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].id(), 3u);
  EXPECT_EQ(all[0].state(), mesh::v1::DOWN);
}

TEST_F(RosterTest, TombstonesAreCapped) {
  Roster::Options o = Opts();
  o.max_tombstones = 4;
  o.max_departed = 2;
  Roster r(o);
  for (uint64_t id = 1; id <= 6; ++id) {
    ASSERT_TRUE(Learn(r, M("a", id, 201)));
    ASSERT_TRUE(r.Depart("a", id, kT0));
  }
  EXPECT_EQ(r.tombstone_count(), 4u);
  EXPECT_FALSE(r.IsTombstoned(1));
  EXPECT_FALSE(r.IsTombstoned(2));
  for (uint64_t id = 3; id <= 6; ++id) EXPECT_TRUE(r.IsTombstoned(id)) << id;
  // A forgotten id may be learned again while its process lives.
  EXPECT_TRUE(Learn(r, M("a", 1, 201)));
}

TEST_F(RosterTest, TombstoneCapSurvivesEraseAndReinsert) {
  Roster::Options o = Opts();
  o.max_tombstones = 3;
  Roster r(o);
  // Id 1 is tombstoned, erased by its own Join, and tombstoned again many
  // times: its stale queue entries must not evict the live one early, and
  // the queue must not grow without bound.
  for (int round = 0; round < 50; ++round) {
    ASSERT_TRUE(Join(r, M("a", 1, 201)).ok());
    ASSERT_TRUE(r.Depart("a", 1, kT0));
  }
  EXPECT_TRUE(r.IsTombstoned(1));
  ASSERT_TRUE(Learn(r, M("b", 2, 202)));
  ASSERT_TRUE(r.Depart("b", 2, kT0));
  ASSERT_TRUE(Learn(r, M("c", 3, 203)));
  ASSERT_TRUE(r.Depart("c", 3, kT0));
  EXPECT_TRUE(r.IsTombstoned(1));
  EXPECT_EQ(r.tombstone_count(), 3u);
  ASSERT_TRUE(Learn(r, M("d", 4, 204)));
  ASSERT_TRUE(r.Depart("d", 4, kT0));
  EXPECT_FALSE(r.IsTombstoned(1));  // now the oldest: evicted
  EXPECT_EQ(r.tombstone_count(), 3u);
}

TEST_F(RosterTest, QueriesAndLookupErrors) {
  Roster r(Opts());
  ASSERT_TRUE(Learn(r, M("a", 0xabc, 201)));
  EXPECT_TRUE(r.IsMemberPid(201));
  EXPECT_FALSE(r.IsMemberPid(202));
  auto found = r.Lookup("a", 0xabc);
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->pid(), 201);
  auto wrong_id = r.Lookup("a", 0xdef);
  EXPECT_EQ(wrong_id.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(wrong_id.status().message(), "'a' (id def) has not joined through discovery; join first");
  auto unknown = r.Lookup(std::string("x\n\x01", 3), 1);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(unknown.status().message(), "'x\\n\\x01' (id 1) has not joined through discovery; join first");
}

TEST_F(RosterTest, MembersStatesAndMarkLinked) {
  Roster r(Opts());
  ASSERT_TRUE(Learn(r, M("a", 1, 201), kT0));
  ASSERT_TRUE(Learn(r, M("b", 2, 202), kT0));
  const absl::Time up = kT0 + absl::Milliseconds(1500);
  const uint64_t g = r.generation();
  EXPECT_TRUE(r.MarkLinked("b", up));
  EXPECT_FALSE(r.MarkLinked("zz", up));
  EXPECT_GT(r.generation(), g);
  linked_.insert("b");
  auto all = Members(r, up);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].state(), mesh::v1::JOINING);
  EXPECT_EQ(all[0].since().seconds(), absl::ToUnixSeconds(kT0));
  EXPECT_EQ(all[1].state(), mesh::v1::UP);
  EXPECT_EQ(all[1].since().seconds(), absl::ToUnixSeconds(kT0) + 1);
  EXPECT_EQ(all[1].since().nanos(), 500'000'000);
  EXPECT_EQ(r.Addresses(), (std::set<std::string>{"unix:/run/mesh/a.grpc", "unix:/run/mesh/b.grpc"}));
}

TEST_F(RosterTest, ClearForgetsEverything) {
  Roster r(Opts());
  ASSERT_TRUE(Learn(r, M("a", 1, 201)));
  ASSERT_TRUE(Learn(r, M("b", 2, 202)));
  ASSERT_TRUE(r.Depart("b", 2, kT0));
  r.Clear();
  EXPECT_EQ(r.size(), 0u);
  EXPECT_EQ(r.departed_count(), 0u);
  EXPECT_EQ(r.tombstone_count(), 0u);
  EXPECT_TRUE(Members(r, kT0).empty());
}

}  // namespace
}  // namespace mesh
