#include "mesh/cmd/topics_format.h"

#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "mesh/cmd/topology_format.h"

namespace mesh {
namespace cmd {
namespace {

using ::mesh::v1::NodeTopics;
using ::mesh::v1::TopicTraffic;
using ::mesh::v1::TopologySnapshot;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

void AddTraffic(google::protobuf::RepeatedPtrField<TopicTraffic>* list,
                const std::string& topic, uint64_t messages, uint64_t bytes,
                uint32_t peers) {
  TopicTraffic* t = list->Add();
  t->set_topic(topic);
  t->set_messages(messages);
  t->set_bytes(bytes);
  t->set_peers(peers);
}

// e publishes chat/general to b (chat/*) and c (**); c also subscribes to
// sensors/** that nobody publishes; a serves "upper". Nodes out of order,
// as a buggy or hostile peer might send them.
TopologySnapshot Chat() {
  TopologySnapshot s;
  s.set_reporter("a");
  s.mutable_taken()->set_seconds(1795370581);  // 2026-11-22T18:03:01Z
  NodeTopics* c = s.add_topics();
  c->set_node("c");
  AddTraffic(c->mutable_subscribed(), "**", 4, 60, 1);
  AddTraffic(c->mutable_subscribed(), "sensors/**", 0, 0, 0);
  AddTraffic(c->mutable_received(), "chat/general", 4, 60, 1);
  NodeTopics* a = s.add_topics();
  a->set_node("a");
  mesh::v1::ServiceInfo* upper = a->add_served();
  upper->set_service("upper");
  upper->set_requests(7);
  NodeTopics* b = s.add_topics();
  b->set_node("b");
  AddTraffic(b->mutable_subscribed(), "chat/*", 3, 45, 1);
  AddTraffic(b->mutable_received(), "chat/general", 3, 45, 1);
  NodeTopics* e = s.add_topics();
  e->set_node("e");
  AddTraffic(e->mutable_published(), "chat/general", 4, 60, 2);
  s.add_topics()->set_node("d");  // a node with nothing
  return s;
}

std::vector<std::string> Lines(const std::string& text) {
  return absl::StrSplit(text, '\n');
}

TEST(TopicsFormatTest, HasTopics) {
  EXPECT_TRUE(HasTopics(Chat()));
  TopologySnapshot empty;
  empty.add_topics()->set_node("a");
  EXPECT_FALSE(HasTopics(empty));
  EXPECT_FALSE(HasTopics(TopologySnapshot()));
}

TEST(TopicsFormatTest, TopicRowsPerPublisherAndSubscriber) {
  const std::string out = FormatTopicsTable(Chat());
  const std::vector<std::string> lines = Lines(out);
  ASSERT_GE(lines.size(), 5u) << out;
  EXPECT_EQ(lines[0],
            "reporter a at 2026-11-22T18:03:01.000Z: 1 topic, 3 "
            "subscriptions, 1 service");
  EXPECT_EQ(lines[1], "TOPIC         NODE  ROLE  PATTERNS  MSGS  BYTES  PEERS");
  // The publisher first, then the subscribers by name, each with its
  // matching patterns and what it received.
  EXPECT_EQ(lines[2], "chat/general  e     pub   -            4     60      2");
  EXPECT_EQ(lines[3], "chat/general  b     sub   chat/*       3     45      1");
  EXPECT_EQ(lines[4], "chat/general  c     sub   **           4     60      1");
  EXPECT_EQ(lines[5], "");
}

TEST(TopicsFormatTest, SubscriptionsAndServices) {
  const std::string out = TopicsTables(Chat());
  EXPECT_THAT(out, HasSubstr("PATTERN     NODE  MSGS  BYTES  PUBLISHERS\n"
                             "**          c        4     60           1\n"
                             "chat/*      b        3     45           1\n"
                             "sensors/**  c        0      0           0\n"));
  EXPECT_THAT(out, HasSubstr("SERVICE  SERVER  REQUESTS\n"
                             "upper    a              7\n"));
  // Node d has nothing and appears nowhere.
  EXPECT_THAT(out, Not(HasSubstr(" d ")));
}

TEST(TopicsFormatTest, MatchingSubscriberThatReceivedNothingYet) {
  TopologySnapshot s = Chat();
  NodeTopics* d = s.mutable_topics(4);
  ASSERT_EQ(d->node(), "d");
  AddTraffic(d->mutable_subscribed(), "chat/general", 0, 0, 0);
  AddTraffic(d->mutable_subscribed(), "*/general", 0, 0, 0);
  const std::string out = TopicsTables(s);
  EXPECT_THAT(out, HasSubstr("chat/general  d     sub   chat/general,*/general"
                             "     0      0      0\n"));
}

TEST(TopicsFormatTest, EmptyTables) {
  TopologySnapshot s;
  s.set_reporter("a");
  const std::string out = FormatTopicsTable(s);
  EXPECT_THAT(out, HasSubstr(": 0 topics, 0 subscriptions, 0 services\n"));
  EXPECT_THAT(out, HasSubstr("(no topics)\n\n(no subscriptions)\n\n(no "
                             "services)\n"));
}

TEST(TopicsFormatTest, HostileNamesStayOnOneLine) {
  TopologySnapshot s;
  NodeTopics* n = s.add_topics();
  n->set_node("evil\nnode");
  AddTraffic(n->mutable_published(), "x\ny", 1, 1, 0);
  const std::string out = TopicsTables(s);
  EXPECT_THAT(out, HasSubstr("x\\ny   evil\\nnode  pub"));
}

TEST(TopicsFormatTest, TopologyTableShowsTopicsOnlyWhenThereAreAny) {
  TopologySnapshot s = Chat();
  EXPECT_THAT(FormatTable(s), HasSubstr("\n\nTOPIC "));
  EXPECT_THAT(FormatTable(s), HasSubstr("SERVICE  SERVER"));
  EXPECT_THAT(FormatTable(s, Section::kLinks), Not(HasSubstr("TOPIC")));
  EXPECT_EQ(FormatTable(s, Section::kTopics), FormatTopicsTable(s));
  s.clear_topics();
  EXPECT_THAT(FormatTable(s), Not(HasSubstr("TOPIC")));
  EXPECT_THAT(FormatTable(s), Not(HasSubstr("(no topics)")));
}

TEST(TopicsFormatTest, JsonKeepsOnlyTheTopics) {
  TopologySnapshot s = Chat();
  s.add_members()->set_name("a");
  s.add_links()->set_a("a");
  absl::StatusOr<std::string> json = FormatJson(s, Section::kTopics);
  ASSERT_TRUE(json.ok()) << json.status();
  TopologySnapshot back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &back).ok());
  EXPECT_EQ(back.members_size(), 0);
  EXPECT_EQ(back.links_size(), 0);
  EXPECT_EQ(back.topics_size(), 5);
  EXPECT_EQ(back.reporter(), "a");
  EXPECT_THAT(*json, HasSubstr("\"published\""));
  // The other sections drop the topics.
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  *FormatJson(s, Section::kMembers), &back)
                  .ok());
  EXPECT_EQ(back.topics_size(), 0);
  EXPECT_EQ(back.members_size(), 1);
  // No graph of topics.
  EXPECT_EQ(FormatSnapshot(s, OutputFormat::kDot, Section::kTopics)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(TopicsFormatTest, SubscribersAndServersOf) {
  const TopologySnapshot s = Chat();
  EXPECT_THAT(SubscribersOf(s, "chat/general"), ElementsAre("b", "c"));
  EXPECT_THAT(SubscribersOf(s, "chat/general", "b"), ElementsAre("c"));
  EXPECT_THAT(SubscribersOf(s, "sensors/x/y"), ElementsAre("c"));
  EXPECT_THAT(SubscribersOf(s, "other"), ElementsAre("c"));  // c has **
  EXPECT_THAT(ServersOf(s, "upper"), ElementsAre("a"));
  EXPECT_THAT(ServersOf(s, "lower"), IsEmpty());
}

TEST(TopicsFormatTest, MessageLineEscapes) {
  EXPECT_EQ(TopicMessageLine("chat/general", "b", "hello there"),
            "chat/general b hello there\n");
  // CHexEscape: a hex digit right after a \x escape is escaped too.
  EXPECT_EQ(TopicMessageLine("t", "b", std::string("a\nb\0c\"", 6)),
            "t b a\\nb\\x00\\x63\\\"\n");
}

}  // namespace
}  // namespace cmd
}  // namespace mesh
