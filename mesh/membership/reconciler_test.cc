#include "mesh/membership/reconciler.h"

#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "mesh/membership/backoff.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'700'000'000);
constexpr absl::Duration kMs = absl::Milliseconds(1);

mesh::v1::Member M(const std::string& name, uint64_t id, const std::string& address = "") {
  mesh::v1::Member m;
  m.set_name(name);
  m.set_id(id);
  m.set_pid(1000 + static_cast<int>(id));
  m.set_grpc_address(address.empty() ? "unix:/run/" + name : address);
  m.set_link_socket("/run/" + name + ".link");
  return m;
}

std::vector<std::string> Names(const std::vector<Reconciler::Target>& targets) {
  std::vector<std::string> out;
  for (const auto& t : targets) out.push_back(t.name);
  return out;
}

// --- Backoff ---

TEST(BackoffTest, DoublesWithinBounds) {
  Backoff b(20 * kMs, absl::Seconds(2));
  EXPECT_TRUE(b.Ready(kT0));
  std::vector<int64_t> delays;
  for (int i = 0; i < 9; ++i) delays.push_back(absl::ToInt64Milliseconds(b.Next()));
  EXPECT_EQ(delays, (std::vector<int64_t>{20, 40, 80, 160, 320, 640, 1280, 2000, 2000}));
}

TEST(BackoffTest, ScheduleResetAndFailures) {
  Backoff b(20 * kMs, absl::Seconds(2));
  EXPECT_EQ(b.Schedule(kT0), kT0 + 20 * kMs);
  EXPECT_FALSE(b.Ready(kT0 + 19 * kMs));
  EXPECT_TRUE(b.Ready(kT0 + 20 * kMs));
  EXPECT_EQ(b.Schedule(kT0 + 20 * kMs), kT0 + 60 * kMs);
  EXPECT_EQ(b.failures(), 2);
  EXPECT_EQ(b.current(), 80 * kMs);
  b.Reset();
  EXPECT_EQ(b.failures(), 0);
  EXPECT_EQ(b.current(), 20 * kMs);
  EXPECT_TRUE(b.Ready(kT0));
  b.set_ready_at(kT0 + absl::Seconds(1));
  EXPECT_FALSE(b.Ready(kT0));
  EXPECT_EQ(b.failures(), 0);
}

TEST(BackoffTest, ShouldLogFirstAndEveryTenth) {
  std::vector<int> logged;
  for (int i = 0; i <= 30; ++i) {
    if (ShouldLogFailure(i)) logged.push_back(i);
  }
  EXPECT_EQ(logged, (std::vector<int>{1, 10, 20, 30}));
}

// --- Reconciler ---

class ReconcilerTest : public ::testing::Test {
 protected:
  Reconciler::Options Opts(std::vector<std::string> seeds = {}) {
    Reconciler::Options o;
    o.self_name = "m";
    o.seeds = std::move(seeds);
    return o;
  }
  Reconciler::Plan Decide(Reconciler& r, absl::Time now) {
    return r.Decide(now, [this](const std::string& n) { return linked_.count(n) > 0; }, addresses_);
  }
  // Adds `m` and has it answer an announce: it knows us, nothing pending.
  void AddKnown(Reconciler& r, const mesh::v1::Member& m, absl::Time now) {
    r.OnMemberAdded(m, now);
    r.OnJoinedUs(m.name(), m.id());
  }
  // Runs every announce of `plan` as a success.
  void AnswerAnnounces(Reconciler& r, const Reconciler::Plan& plan, absl::Time now) {
    for (const auto& t : plan.announce) (void)r.OnAnnounceResult(t.name, t.id, true, true, now);
  }

  std::set<std::string> linked_;
  std::set<std::string> addresses_ = {"unix:/run/m"};
};

TEST_F(ReconcilerTest, NoSeedsMeansJoined) {
  Reconciler r(Opts());
  EXPECT_TRUE(r.seeds_joined());
  auto plan = Decide(r, kT0);
  EXPECT_TRUE(plan.empty());
  EXPECT_EQ(plan.next_wake, kT0 + absl::Seconds(10));
}

TEST_F(ReconcilerTest, SeedJoinBacksOffUpToMax) {
  Reconciler r(Opts({"unix:/run/s1", "unix:/run/s2"}));
  absl::Time now = kT0;
  auto plan = Decide(r, now);
  EXPECT_TRUE(plan.join_seeds);
  EXPECT_TRUE(plan.stray_seeds.empty());  // not before joining
  // In flight: not planned again.
  EXPECT_FALSE(Decide(r, now).join_seeds);
  std::vector<int64_t> delays;
  std::vector<int> logged;
  for (int i = 0; i < 12; ++i) {
    Reconciler::Outcome out = r.OnSeedRoundFailed(now);
    EXPECT_FALSE(out.depart);
    EXPECT_EQ(out.failures, i + 1);
    if (out.log) logged.push_back(out.failures);
    delays.push_back(absl::ToInt64Milliseconds(out.retry_at - now));
    // Not ready before the retry time; next_wake says when.
    plan = Decide(r, out.retry_at - kMs);
    EXPECT_FALSE(plan.join_seeds);
    EXPECT_EQ(plan.next_wake, out.retry_at);
    now = out.retry_at;
    plan = Decide(r, now);
    ASSERT_TRUE(plan.join_seeds) << i;
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{20, 40, 80, 160, 320, 640, 1280, 2000, 2000, 2000, 2000, 2000}));
  EXPECT_EQ(logged, (std::vector<int>{1, 10}));
  r.OnSeedJoined("unix:/run/s1", {});
  EXPECT_TRUE(r.seeds_joined());
  EXPECT_FALSE(Decide(r, now + absl::Hours(1)).join_seeds);
}

TEST_F(ReconcilerTest, AnsweringSeedKnowsUsOthersAreAnnounced) {
  Reconciler r(Opts({"unix:/run/s"}));
  ASSERT_TRUE(Decide(r, kT0).join_seeds);
  const std::vector<mesh::v1::Member> answer = {M("s", 1, "unix:/run/s"), M("x", 2)};
  for (const auto& m : answer) r.OnMemberAdded(m, kT0);
  r.OnSeedJoined("unix:/run/s", answer);
  EXPECT_TRUE(r.Find("s")->knows_us);
  EXPECT_FALSE(r.Find("x")->knows_us);
  addresses_.insert("unix:/run/s");
  addresses_.insert("unix:/run/x");
  auto plan = Decide(r, kT0);
  // "s" got x as news after it answered: it needs a sync too.
  EXPECT_EQ(Names(plan.announce), (std::vector<std::string>{"s", "x"}));
  EXPECT_TRUE(plan.stray_seeds.empty());
}

TEST_F(ReconcilerTest, SeedOfAnotherIncarnationDoesNotKnowUs) {
  Reconciler r(Opts({"unix:/run/s"}));
  ASSERT_TRUE(Decide(r, kT0).join_seeds);
  r.OnMemberAdded(M("s", 1, "unix:/run/s"), kT0);
  r.OnSeedJoined("unix:/run/s", {M("s", 99, "unix:/run/s")});
  EXPECT_FALSE(r.Find("s")->knows_us);
}

TEST_F(ReconcilerTest, StraySeedsAreAskedWithTheirOwnBackoff) {
  Reconciler r(Opts({"unix:/run/s1", "unix:/run/s2", "unix:/run/s2"}));
  ASSERT_TRUE(Decide(r, kT0).join_seeds);
  r.OnMemberAdded(M("s1", 1, "unix:/run/s1"), kT0);
  r.OnSeedJoined("unix:/run/s1", {M("s1", 1, "unix:/run/s1")});
  addresses_.insert("unix:/run/s1");
  absl::Time now = kT0;
  auto plan = Decide(r, now);
  // s2 is not a member (configured twice: asked once).
  EXPECT_EQ(plan.stray_seeds, (std::vector<std::string>{"unix:/run/s2"}));
  EXPECT_TRUE(Decide(r, now).stray_seeds.empty());  // in flight
  std::vector<int64_t> delays;
  for (int i = 0; i < 10; ++i) {
    Reconciler::Outcome out = r.OnStraySeedResult("unix:/run/s2", false, now);
    delays.push_back(absl::ToInt64Milliseconds(out.retry_at - now));
    EXPECT_TRUE(Decide(r, out.retry_at - kMs).stray_seeds.empty());
    now = out.retry_at;
    ASSERT_EQ(Decide(r, now).stray_seeds.size(), 1u);
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{20, 40, 80, 160, 320, 640, 1280, 2560, 5000, 5000}));
  // The seed's own backoff is apart from the seed round's.
  EXPECT_EQ(r.seed_backoff().failures(), 0);
  // It answered: asked again only after the stray maximum...
  Reconciler::Outcome ok = r.OnStraySeedResult("unix:/run/s2", true, now);
  EXPECT_EQ(ok.retry_at, now + absl::Seconds(5));
  EXPECT_EQ(r.FindStraySeed("unix:/run/s2")->failures(), 0);
  EXPECT_TRUE(Decide(r, now + absl::Seconds(4)).stray_seeds.empty());
  // ...and not at all once its address is a member's.
  addresses_.insert("unix:/run/s2");
  EXPECT_TRUE(Decide(r, now + absl::Seconds(6)).stray_seeds.empty());
  // A seed member that dies becomes stray again.
  addresses_.erase("unix:/run/s1");
  EXPECT_EQ(Decide(r, now + absl::Seconds(6)).stray_seeds, (std::vector<std::string>{"unix:/run/s1"}));
}

TEST_F(ReconcilerTest, NewcomerIsAnnouncedToAndOthersNeedSync) {
  Reconciler r(Opts());
  AddKnown(r, M("a", 1), kT0);
  AddKnown(r, M("b", 2), kT0);
  // a was told of b when b arrived: settle that first.
  auto plan = Decide(r, kT0);
  EXPECT_EQ(Names(plan.announce), (std::vector<std::string>{"a"}));
  AnswerAnnounces(r, plan, kT0);
  EXPECT_TRUE(Decide(r, kT0).announce.empty());
  r.OnMemberAdded(M("c", 3), kT0);
  EXPECT_TRUE(r.Find("a")->needs_sync);
  EXPECT_TRUE(r.Find("b")->needs_sync);
  EXPECT_FALSE(r.Find("c")->needs_sync);
  EXPECT_FALSE(r.Find("c")->knows_us);
  plan = Decide(r, kT0);
  EXPECT_EQ(Names(plan.announce), (std::vector<std::string>{"a", "b", "c"}));
  // Cleared when planned.
  EXPECT_FALSE(r.Find("a")->needs_sync);
  EXPECT_TRUE(r.Find("a")->announcing);
}

TEST_F(ReconcilerTest, NewsDuringAnnounceSyncsAgain) {
  Reconciler r(Opts());
  r.OnMemberAdded(M("a", 1), kT0);
  auto plan = Decide(r, kT0);
  ASSERT_EQ(Names(plan.announce), (std::vector<std::string>{"a"}));
  r.OnMemberAdded(M("b", 2), kT0);  // learned while the call runs
  AnswerAnnounces(r, plan, kT0);
  EXPECT_TRUE(r.Find("a")->knows_us);
  EXPECT_EQ(Names(Decide(r, kT0).announce), (std::vector<std::string>{"a", "b"}));
}

TEST_F(ReconcilerTest, DialOnlyWhenOurNameSortsFirstPeerKnowsUsAndNoLink) {
  Reconciler r(Opts());  // self "m"
  AddKnown(r, M("a", 1), kT0);
  AddKnown(r, M("z", 2), kT0);
  r.OnMemberAdded(M("y", 3), kT0);  // does not know us yet
  auto plan = Decide(r, kT0);
  // "a" and "z" heard of later newcomers: they get a sync first.
  AnswerAnnounces(r, plan, kT0);
  plan = Decide(r, kT0);
  EXPECT_TRUE(plan.announce.empty());
  EXPECT_EQ(Names(plan.dial), (std::vector<std::string>{"y", "z"}));
  // In flight: not again.
  EXPECT_TRUE(Decide(r, kT0).dial.empty());
  EXPECT_TRUE(r.OnDialResult("z", 2, absl::OkStatus(), true, kT0).failures == 0);
  EXPECT_TRUE(r.OnDialResult("y", 3, absl::OkStatus(), true, kT0).failures == 0);
  linked_ = {"y", "z"};
  r.OnLinkUp("y");
  r.OnLinkUp("z");
  EXPECT_TRUE(Decide(r, kT0).empty());
  // The link goes down while z stays a member: dialed again.
  linked_.erase("z");
  r.OnLinkDown("z");
  EXPECT_EQ(Names(Decide(r, kT0).dial), (std::vector<std::string>{"z"}));
}

TEST_F(ReconcilerTest, AnnounceBeforeDialInOneRound) {
  Reconciler r(Opts());
  r.OnMemberAdded(M("z", 1), kT0);
  auto plan = Decide(r, kT0);
  EXPECT_EQ(Names(plan.announce), (std::vector<std::string>{"z"}));
  EXPECT_TRUE(plan.dial.empty());
  AnswerAnnounces(r, plan, kT0);
  plan = Decide(r, kT0);  // the answer makes the dial ready at once
  EXPECT_EQ(Names(plan.dial), (std::vector<std::string>{"z"}));
}

TEST_F(ReconcilerTest, RefusedDialReannouncesAtOnce) {
  Reconciler r(Opts());
  AddKnown(r, M("z", 1), kT0);
  ASSERT_EQ(Decide(r, kT0).dial.size(), 1u);
  Reconciler::Outcome out = r.OnDialResult("z", 1, absl::AbortedError("refused"), true, kT0);
  EXPECT_FALSE(out.depart);
  EXPECT_FALSE(r.Find("z")->knows_us);
  auto plan = Decide(r, kT0);
  EXPECT_EQ(Names(plan.announce), (std::vector<std::string>{"z"}));
  AnswerAnnounces(r, plan, kT0);
  EXPECT_EQ(Names(Decide(r, kT0).dial), (std::vector<std::string>{"z"}));
  // Refused again right after a successful announce: the dial backs off
  // now, so a peer that always refuses cannot make a busy loop.
  out = r.OnDialResult("z", 1, absl::AbortedError("refused"), true, kT0);
  EXPECT_EQ(out.failures, 2);
  EXPECT_EQ(out.retry_at, kT0 + 20 * kMs);
  AnswerAnnounces(r, Decide(r, kT0), kT0);
  plan = Decide(r, kT0);
  EXPECT_TRUE(plan.dial.empty());
  EXPECT_EQ(plan.next_wake, kT0 + 20 * kMs);
  EXPECT_EQ(Names(Decide(r, kT0 + 20 * kMs).dial), (std::vector<std::string>{"z"}));
  // A link resets the count.
  (void)r.OnDialResult("z", 1, absl::OkStatus(), true, kT0 + 20 * kMs);
  EXPECT_EQ(r.Find("z")->refusals, 0);
}

TEST_F(ReconcilerTest, AnnounceFailuresBackOff) {
  Reconciler r(Opts());
  r.OnMemberAdded(M("a", 1), kT0);
  absl::Time now = kT0;
  std::vector<int64_t> delays;
  for (int i = 0; i < 9; ++i) {
    auto plan = Decide(r, now);
    ASSERT_EQ(Names(plan.announce), (std::vector<std::string>{"a"})) << i;
    Reconciler::Outcome out = r.OnAnnounceResult("a", 1, false, true, now);
    EXPECT_FALSE(out.depart);
    EXPECT_EQ(out.log, i == 0);
    EXPECT_TRUE(r.Find("a")->needs_sync);
    delays.push_back(absl::ToInt64Milliseconds(out.retry_at - now));
    plan = Decide(r, out.retry_at - kMs);
    EXPECT_TRUE(plan.announce.empty());
    EXPECT_EQ(plan.next_wake, out.retry_at);
    now = out.retry_at;
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{20, 40, 80, 160, 320, 640, 1280, 2000, 2000}));
  // Success resets it.
  ASSERT_EQ(Decide(r, now).announce.size(), 1u);
  (void)r.OnAnnounceResult("a", 1, true, true, now);
  EXPECT_EQ(r.Find("a")->announce.failures(), 0);
  EXPECT_EQ(r.Find("a")->announce.current(), 20 * kMs);
}

TEST_F(ReconcilerTest, DialFailuresBackOff) {
  Reconciler r(Opts());
  AddKnown(r, M("z", 1), kT0);
  absl::Time now = kT0;
  std::vector<int64_t> delays;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(Decide(r, now).dial.size(), 1u);
    Reconciler::Outcome out = r.OnDialResult("z", 1, absl::UnavailableError("no socket"), true, now);
    EXPECT_EQ(out.failures, i + 1);
    delays.push_back(absl::ToInt64Milliseconds(out.retry_at - now));
    EXPECT_TRUE(Decide(r, out.retry_at - kMs).dial.empty());
    now = out.retry_at;
  }
  EXPECT_EQ(delays, (std::vector<int64_t>{20, 40, 80, 160}));
  r.OnLinkUp("z");
  EXPECT_EQ(r.Find("z")->dial.failures(), 0);
}

TEST_F(ReconcilerTest, DeadPeerIsDeparted) {
  Reconciler r(Opts());
  r.OnMemberAdded(M("a", 1), kT0);
  AddKnown(r, M("z", 2), kT0);
  auto plan = Decide(r, kT0);
  ASSERT_EQ(Names(plan.announce), (std::vector<std::string>{"a"}));
  ASSERT_EQ(Names(plan.dial), (std::vector<std::string>{"z"}));
  EXPECT_TRUE(r.OnAnnounceResult("a", 1, false, false, kT0).depart);
  EXPECT_EQ(r.Find("a"), nullptr);
  EXPECT_TRUE(r.OnDialResult("z", 2, absl::UnavailableError("gone"), false, kT0).depart);
  EXPECT_EQ(r.size(), 0u);
  EXPECT_TRUE(Decide(r, kT0).empty());
}

TEST_F(ReconcilerTest, RemovedMembersLeaveNoScheduleAndStaleResultsAreIgnored) {
  Reconciler r(Opts());
  r.OnMemberAdded(M("a", 1), kT0);
  auto plan = Decide(r, kT0);
  ASSERT_EQ(plan.announce.size(), 1u);
  r.OnMemberRemoved("a", 7);  // another id: kept
  EXPECT_EQ(r.size(), 1u);
  r.OnMemberRemoved("a", 1);
  r.OnMemberRemoved("a", 1);  // idempotent
  EXPECT_EQ(r.size(), 0u);
  EXPECT_FALSE(r.OnAnnounceResult("a", 1, false, false, kT0).depart);
  EXPECT_TRUE(Decide(r, kT0).empty());
  // A new incarnation under the name: results for the old id are ignored.
  r.OnMemberAdded(M("a", 1), kT0);
  ASSERT_EQ(Decide(r, kT0).announce.size(), 1u);
  r.OnMemberAdded(M("a", 2), kT0);
  EXPECT_FALSE(r.OnAnnounceResult("a", 1, false, false, kT0).depart);
  ASSERT_NE(r.Find("a"), nullptr);
  EXPECT_EQ(r.Find("a")->id, 2u);
  EXPECT_FALSE(r.Find("a")->announcing);
  r.OnMemberRemoved("a", 1);  // the old incarnation's departure, reported late
  ASSERT_NE(r.Find("a"), nullptr);
  r.OnJoinedUs("a", 1);  // stale: ignored
  EXPECT_FALSE(r.Find("a")->knows_us);
  EXPECT_EQ(Decide(r, kT0).announce.size(), 1u);
}

TEST_F(ReconcilerTest, NextWakeIsEarliestPendingAndAtMostIdle) {
  Reconciler::Options o = Opts({"unix:/run/s"});
  o.idle_period = absl::Seconds(10);
  Reconciler r(o);
  EXPECT_TRUE(Decide(r, kT0).join_seeds);
  (void)r.OnSeedRoundFailed(kT0);  // seed round at +20 ms
  r.OnMemberAdded(M("a", 1), kT0);
  r.OnMemberAdded(M("z", 2), kT0);
  auto plan = Decide(r, kT0);
  ASSERT_EQ(plan.announce.size(), 2u);
  EXPECT_EQ(plan.next_wake, kT0 + 20 * kMs);  // in-flight calls do not count
  (void)r.OnAnnounceResult("a", 1, false, true, kT0);  // a at +20 ms
  // A result for an announce not in flight is ignored.
  EXPECT_EQ(r.OnAnnounceResult("a", 1, false, true, kT0).failures, 0);
  EXPECT_EQ(r.Find("a")->announce.failures(), 1);
  (void)r.OnAnnounceResult("z", 2, true, true, kT0);   // z: dial ready now
  plan = Decide(r, kT0 + 10 * kMs);
  EXPECT_EQ(Names(plan.dial), (std::vector<std::string>{"z"}));
  (void)r.OnDialResult("z", 2, absl::UnavailableError("x"), true, kT0 + 10 * kMs);  // z at +30 ms
  plan = Decide(r, kT0 + 10 * kMs);
  EXPECT_TRUE(plan.empty());
  EXPECT_EQ(plan.next_wake, kT0 + 20 * kMs);
  (void)r.OnSeedJoined("unix:/run/s", {});
  addresses_.insert("unix:/run/s");
  plan = Decide(r, kT0 + 10 * kMs);
  EXPECT_EQ(plan.next_wake, r.Find("a")->announce.ready_at());
  // Nothing pending at all: the idle period.
  Reconciler idle(Opts());
  EXPECT_EQ(Decide(idle, kT0).next_wake, kT0 + absl::Seconds(10));
  // A linked member whose name sorts first wakes nothing.
  Reconciler linked(Opts());
  AddKnown(linked, M("z", 1), kT0);
  linked_.insert("z");
  EXPECT_EQ(Decide(linked, kT0).next_wake, kT0 + absl::Seconds(10));
}

}  // namespace
}  // namespace mesh
