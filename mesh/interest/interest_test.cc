#include "mesh/interest/interest.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "mesh/links/control_channel.h"

namespace mesh {
namespace interest {
namespace {

TEST(ApplyInterestTest, ResetAddsAndRemovesInOrder) {
  PeerInterest p;
  InterestMsg m;
  m.add_subscribe("a/*");
  m.add_subscribe("b");
  auto* svc = m.add_serve();
  svc->set_name("plan");
  svc->set_id(7);
  ASSERT_TRUE(ApplyInterest(m, &p).ok());
  EXPECT_EQ(p.patterns, (std::set<std::string>{"a/*", "b"}));
  EXPECT_EQ(p.services.at("plan"), 7u);
  InterestMsg d;
  d.add_unsubscribe("b");
  d.add_unserve("plan");
  ASSERT_TRUE(ApplyInterest(d, &p).ok());
  EXPECT_EQ(p.patterns, (std::set<std::string>{"a/*"}));
  EXPECT_TRUE(p.services.empty());
  InterestMsg r;
  r.set_reset(true);
  r.add_subscribe("c");
  ASSERT_TRUE(ApplyInterest(r, &p).ok());
  EXPECT_EQ(p.patterns, (std::set<std::string>{"c"}));
}

TEST(ApplyInterestTest, MalformedMessagesChangeNothing) {
  PeerInterest p;
  p.patterns.insert("keep");
  InterestMsg bad_pattern;
  bad_pattern.add_subscribe("a**");
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyInterest(bad_pattern, &p)));
  InterestMsg bad_service;
  bad_service.add_serve()->set_name("x/");
  bad_service.mutable_serve(0)->set_id(1);
  EXPECT_TRUE(absl::IsInvalidArgument(ApplyInterest(bad_service, &p)));
  InterestMsg zero_id;
  zero_id.add_serve()->set_name("ok");
  EXPECT_NE(ApplyInterest(zero_id, &p).message().find("id 0"), absl::string_view::npos);
  EXPECT_EQ(p.patterns, (std::set<std::string>{"keep"}));
  EXPECT_TRUE(p.services.empty());
}

TEST(ApplyInterestTest, PerPeerLimitsHold) {
  PeerInterest p;
  for (size_t i = 0; i < kMaxPatternsPerPeer; ++i) p.patterns.insert(absl::StrCat("p", i));
  InterestMsg one_more;
  one_more.add_subscribe("over");
  EXPECT_NE(ApplyInterest(one_more, &p).message().find("limit is 4096"), absl::string_view::npos);
  EXPECT_EQ(p.patterns.size(), kMaxPatternsPerPeer);
}

TEST(LocalInterestTest, ReferenceCountsAndChunkedFullState) {
  LocalInterest local;
  EXPECT_TRUE(local.AddPattern("a"));
  EXPECT_FALSE(local.AddPattern("a"));
  EXPECT_FALSE(local.RemovePattern("a"));
  EXPECT_TRUE(local.RemovePattern("a"));
  EXPECT_FALSE(local.RemovePattern("a"));
  std::vector<InterestMsg> empty = local.Full();
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_TRUE(empty[0].reset());
  // 2000 patterns of ~205 bytes cannot fit one control message.
  const std::string seg(50, 'x');
  for (int i = 0; i < 2000; ++i) local.AddPattern(absl::StrCat(seg, "/", seg, "/", seg, "/", seg, i));
  local.AddService("svc", 3);
  std::vector<InterestMsg> full = local.Full();
  ASSERT_GT(full.size(), 1u);
  PeerInterest seen;
  seen.patterns.insert("stale");
  for (size_t i = 0; i < full.size(); ++i) {
    EXPECT_EQ(full[i].reset(), i == 0);
    EXPECT_LE(full[i].ByteSizeLong() + 8, links::kMaxControlMessageBytes) << i;
    ASSERT_TRUE(ApplyInterest(full[i], &seen).ok());
  }
  EXPECT_EQ(seen.patterns.size(), 2000u);
  EXPECT_EQ(seen.services.at("svc"), 3u);
}

}  // namespace
}  // namespace interest
}  // namespace mesh
