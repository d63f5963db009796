// Membership without a network: Joins served locally (HandleJoin), link
// admission and retirement through the hooks, and seed rounds against a
// seed that is not there. The control thread's calls to other nodes are
// covered end to end by mesh/node_test and tests/.
#include "mesh/membership/membership.h"

#include <unistd.h>

#include <atomic>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"

namespace mesh {
namespace {

mesh::v1::Member MemberNamed(const std::string& name, uint64_t id) {
  mesh::v1::Member m;
  m.set_name(name);
  m.set_id(id);
  m.set_pid(::getpid());  // alive
  m.set_uid(::getuid());
  m.set_grpc_address("unix:/tmp/nowhere/" + name + ".grpc");
  m.set_link_socket("/tmp/nowhere/" + name + ".link");
  return m;
}

class MembershipTest : public ::testing::Test {
 protected:
  std::unique_ptr<Membership> Make(std::vector<std::string> seeds = {}) {
    Membership::Options options;
    options.self_name = "a";
    options.self_id = 1;
    options.seeds = std::move(seeds);
    options.allowed_uids = {::getuid()};
    Membership::Hooks hooks;
    hooks.self = [] { return MemberNamed("a", 1); };
    hooks.linked = [this](const std::string& name) { return linked_.count(name) > 0; };
    hooks.dial = [](const mesh::v1::Member&, absl::Time) { return absl::UnavailableError("no dialing here"); };
    hooks.on_change = [this] { changes_.fetch_add(1); };
    auto m = Membership::Create(options, std::move(hooks), &log_);
    EXPECT_TRUE(m.ok()) << m.status();
    return std::move(*m);
  }

  Logger log_{"a", mesh::v1::WARNING};
  std::set<std::string> linked_;  // guarded by the membership's mutex (hooks run under it)
  std::atomic<int> changes_{0};
};

TEST_F(MembershipTest, JoinAddsTheMemberAndAnswersWithEveryLiveOne) {
  auto m = Make();
  auto answer = m->HandleJoin(MemberNamed("b", 2), {MemberNamed("c", 3)});
  ASSERT_TRUE(answer.ok()) << answer.status();
  ASSERT_EQ(answer->size(), 3u);
  EXPECT_EQ((*answer)[0].name(), "a");  // this node first
  EXPECT_TRUE(m->IsMember("b", 2));
  EXPECT_TRUE(m->IsMember("c", 3));
  EXPECT_FALSE(m->IsMember("b", 99));
  EXPECT_TRUE(m->IsMemberPid(::getpid()));
  EXPECT_TRUE(m->Lookup("b", 2).ok());
  EXPECT_EQ(m->Lookup("zed", 5).status().code(), absl::StatusCode::kNotFound);
  EXPECT_GT(changes_.load(), 0);
}

TEST_F(MembershipTest, OurNameHeldByAnotherLiveNodeIsRefused) {
  auto m = Make();
  auto answer = m->HandleJoin(MemberNamed("a", 77), {});
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(absl::StrContains(answer.status().message(), "taken by a live node")) << answer.status();
}

TEST_F(MembershipTest, AdmitRunsTheInstallOnlyForTheMemberItClaims) {
  auto m = Make();
  ASSERT_TRUE(m->HandleJoin(MemberNamed("b", 2), {}).ok());
  int installs = 0;
  EXPECT_FALSE(m->Admit("b", 99, [&] { ++installs; return true; }));  // wrong incarnation
  EXPECT_FALSE(m->Admit("zed", 5, [&] { ++installs; return true; }));  // not a member
  EXPECT_EQ(installs, 0);
  EXPECT_FALSE(m->Admit("b", 2, [&] { ++installs; return false; }));  // redundant link
  EXPECT_TRUE(m->Admit("b", 2, [&] {
    ++installs;
    linked_.insert("b");
    return true;
  }));
  EXPECT_EQ(installs, 2);
  bool up = false;
  for (const auto& member : m->Members()) {
    if (member.name() == "b") up = member.state() == mesh::v1::UP;
  }
  EXPECT_TRUE(up);
}

TEST_F(MembershipTest, DepartRunsTheRemovalAndKeepsTheMemberDown) {
  auto m = Make();
  ASSERT_TRUE(m->HandleJoin(MemberNamed("b", 2), {}).ok());
  ASSERT_TRUE(m->Admit("b", 2, [&] {
    linked_.insert("b");
    return true;
  }));
  bool removed = false;
  m->Depart("b", 2, [&] {
    removed = true;
    linked_.erase("b");
  });
  EXPECT_TRUE(removed);
  EXPECT_FALSE(m->IsMember("b", 2));
  bool down = false;
  for (const auto& member : m->Members()) {
    if (member.name() == "b") down = member.state() == mesh::v1::DOWN;
  }
  EXPECT_TRUE(down);
  // A stale Join of the departed incarnation is ignored as gossip...
  auto again = m->HandleJoin(MemberNamed("c", 3), {MemberNamed("b", 2)});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(m->IsMember("b", 2));
  // ...but a new incarnation of the name is welcome.
  ASSERT_TRUE(m->HandleJoin(MemberNamed("b", 4), {}).ok());
  EXPECT_TRUE(m->IsMember("b", 4));
}

TEST_F(MembershipTest, SeedRoundsWithoutSeedsOrWithAnAbsentSeed) {
  EXPECT_TRUE(Make()->JoinSeeds().ok());
  char dir[] = "/tmp/mms-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  auto m = Make({std::string("unix:") + dir + "/nobody.grpc"});
  const absl::Time start = absl::Now();
  absl::Status s = m->JoinSeeds();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  ::rmdir(dir);
}

TEST_F(MembershipTest, StopForgetsEveryoneAndRefusesJoins) {
  auto m = Make();
  m->Start();
  ASSERT_TRUE(m->HandleJoin(MemberNamed("b", 2), {}).ok());
  m->Stop(absl::ZeroDuration());
  EXPECT_FALSE(m->IsMember("b", 2));
  EXPECT_EQ(m->HandleJoin(MemberNamed("c", 3), {}).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace mesh
