#include "mesh/cmd/topology_format.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace mesh {
namespace cmd {
namespace {

using ::mesh::v1::TopologySnapshot;
using ::testing::HasSubstr;
using ::testing::Not;

// A full mesh of `n` nodes named n0, n1, ... as node n0 would report it.
TopologySnapshot FullMesh(int n) {
  TopologySnapshot s;
  s.set_reporter("n0");
  s.mutable_taken()->set_seconds(1795370581);  // 2026-11-22T18:03:01Z
  s.mutable_taken()->set_nanos(123000000);
  for (int i = 0; i < n; ++i) {
    mesh::v1::Member* m = s.add_members();
    m->set_name(absl::StrCat("n", i));
    m->set_id(0xabcdef0000000000ull + i);
    m->set_pid(1000 + i);
    m->set_uid(1000);
    m->set_grpc_address(absl::StrCat("unix:/run/shmesh/n", i, ".grpc"));
    m->set_state(i == n - 1 ? mesh::v1::JOINING : mesh::v1::UP);
  }
  for (int i = 0; i < n; ++i) {
    for (int j = i + 1; j < n; ++j) {
      mesh::v1::Link* l = s.add_links();
      l->set_a(absl::StrCat("n", i));
      l->set_b(absl::StrCat("n", j));
      l->set_messages_a_to_b(10 * i + j);
      l->set_bytes_a_to_b(12345);
      l->set_messages_b_to_a(7);
      l->set_bytes_b_to_a(3 << 20);
      l->set_confirmed_by_both(j != n - 1);
    }
  }
  return s;
}

int Count(absl::string_view haystack, absl::string_view needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != absl::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

TEST(TopologyFormatTest, ParseOutputFormat) {
  EXPECT_EQ(*ParseOutputFormat("table"), OutputFormat::kTable);
  EXPECT_EQ(*ParseOutputFormat("JSON"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("dot"), OutputFormat::kDot);
  absl::StatusOr<OutputFormat> bad = ParseOutputFormat("yaml");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("table, json or dot"));
}

TEST(TopologyFormatTest, TableListsMembersAndLinks) {
  const std::string table = FormatTable(FullMesh(3));
  EXPECT_THAT(table, HasSubstr("reporter n0 at 2026-11-22T18:03:01.123Z: 3 "
                               "members, 3 links"));
  for (const char* name : {"n0", "n1", "n2"})
    EXPECT_THAT(table, HasSubstr(name));
  EXPECT_THAT(table, HasSubstr("abcdef0000000001"));
  EXPECT_THAT(table, HasSubstr("unix:/run/shmesh/n2.grpc"));
  EXPECT_THAT(table, HasSubstr("JOINING"));
  EXPECT_THAT(table, HasSubstr("n0<->n1"));
  EXPECT_THAT(table, HasSubstr("n1<->n2"));
  EXPECT_THAT(table, HasSubstr("3145728"));
  // Header, 3 member rows, blank line, header, 3 link rows, after the summary.
  EXPECT_EQ(Count(table, "\n"), 1 + 4 + 1 + 4);
  // Columns line up: every member row is as wide as its header at the PID
  // column's right edge.
  std::vector<std::string> lines = absl::StrSplit(table, '\n');
  const size_t pid_end = lines[1].find("PID") + 3;
  for (int i = 2; i <= 4; ++i) {
    EXPECT_EQ(lines[i].substr(pid_end - 4, 4), absl::StrCat(1000 + i - 2))
        << lines[i];
  }
}

TEST(TopologyFormatTest, PoolsAreShownOnlyWhenUsed) {
  TopologySnapshot s = FullMesh(2);
  mesh::v1::PoolUsage* idle = s.add_pools();
  idle->set_node("n0");
  EXPECT_THAT(FormatTable(s), Not(HasSubstr("POOL")));  // nothing to show
  mesh::v1::PoolUsage* busy = s.add_pools();
  busy->set_node("n1");
  busy->set_segments(2);
  busy->set_segment_bytes(8 << 20);
  busy->set_sent_messages(7);
  auto* hold = busy->add_held_by();
  hold->set_peer("n0");
  hold->set_blocks(3);
  busy->set_dropped_bad_refs(4);
  const std::string table = FormatTable(s);
  EXPECT_THAT(table, HasSubstr("POOL"));
  EXPECT_THAT(table, HasSubstr("n0:3"));
  EXPECT_THAT(FormatTable(s, Section::kLinks), Not(HasSubstr("POOL")));
}

TEST(TopologyFormatTest, UnresponsiveEndIsShown) {
  TopologySnapshot s = FullMesh(3);
  EXPECT_THAT(FormatTable(s, Section::kLinks), HasSubstr("UNRESPONSIVE"));
  EXPECT_THAT(FormatDot(s), Not(HasSubstr("color=red")));
  s.mutable_links(0)->set_b_unresponsive(true);
  const std::string table = FormatTable(s, Section::kLinks);
  std::vector<std::string> lines = absl::StrSplit(table, '\n');
  // A summary line and the header come first.
  ASSERT_GE(lines.size(), 3u);
  EXPECT_TRUE(absl::EndsWith(absl::StripTrailingAsciiWhitespace(lines[2]), s.links(0).b())) << lines[2];
  EXPECT_EQ(Count(FormatDot(s), "color=red"), 1);
}

TEST(TopologyFormatTest, TableSections) {
  const TopologySnapshot s = FullMesh(2);
  EXPECT_THAT(FormatTable(s, Section::kMembers), Not(HasSubstr("n0<->n1")));
  EXPECT_THAT(FormatTable(s, Section::kMembers), HasSubstr("MEMBER"));
  EXPECT_THAT(FormatTable(s, Section::kLinks), HasSubstr("n0<->n1"));
  EXPECT_THAT(FormatTable(s, Section::kLinks), Not(HasSubstr("MEMBER")));
}

TEST(TopologyFormatTest, EmptySnapshot) {
  TopologySnapshot s;
  s.set_reporter("lonely");
  const std::string table = FormatTable(s);
  EXPECT_THAT(table, HasSubstr("(no members)"));
  EXPECT_THAT(table, HasSubstr("(no links)"));
  EXPECT_THAT(table, HasSubstr("at -:"));
  EXPECT_EQ(Count(FormatDot(s), " -- "), 0);
}

TEST(TopologyFormatTest, HostileNamesStayOnOneLine) {
  TopologySnapshot s;
  mesh::v1::Member* m = s.add_members();
  m->set_name("evil\nname\"");
  const std::string table = FormatTable(s, Section::kMembers);
  EXPECT_THAT(table, HasSubstr("evil\\nname\\\""));
  const std::string dot = FormatDot(s);
  EXPECT_THAT(dot, HasSubstr("\"evil\\\\x0aname\\\"\""));
}

TEST(TopologyFormatTest, DotHasOneEdgePerPairOfAFullMesh) {
  for (int n : {1, 2, 3, 5, 8}) {
    SCOPED_TRACE(n);
    const std::string dot = FormatDot(FullMesh(n));
    EXPECT_TRUE(absl::StartsWith(dot, "graph shmesh {\n"));
    EXPECT_TRUE(absl::EndsWith(dot, "}\n"));
    EXPECT_EQ(Count(dot, " -- "), n * (n - 1) / 2);
    for (int i = 0; i < n; ++i) {
      EXPECT_THAT(dot, HasSubstr(absl::StrCat("  \"n", i, "\" [label=")));
    }
  }
  const std::string dot = FormatDot(FullMesh(3));
  EXPECT_THAT(dot, HasSubstr("\"n0\" -- \"n1\" [label=\"n0->n1: 1 msgs, 12.1 "
                             "KiB\\nn1->n0: 7 msgs, 3.0 MiB\"];"));
  // n2 is JOINING and its links unconfirmed: dashed.
  EXPECT_THAT(dot, HasSubstr("JOINING\", style=dashed];"));
  EXPECT_THAT(dot, HasSubstr("\"n1\" -- \"n2\" [label="));
  EXPECT_EQ(Count(dot, "style=dashed"), 1 + 2);
}

TEST(TopologyFormatTest, DotSections) {
  const TopologySnapshot s = FullMesh(4);
  EXPECT_EQ(Count(FormatDot(s, Section::kMembers), " -- "), 0);
  EXPECT_EQ(Count(FormatDot(s, Section::kMembers), "[label=\"n"), 4);
  EXPECT_EQ(Count(FormatDot(s, Section::kLinks), " -- "), 6);
}

TEST(TopologyFormatTest, JsonParsesBack) {
  const TopologySnapshot s = FullMesh(3);
  for (bool multiline : {true, false}) {
    SCOPED_TRACE(multiline);
    absl::StatusOr<std::string> json = FormatJson(s, Section::kAll, multiline);
    ASSERT_TRUE(json.ok()) << json.status();
    EXPECT_TRUE(absl::EndsWith(*json, "\n"));
    EXPECT_EQ(Count(*json, "\n") == 1, !multiline);
    // Zero values are printed, e.g. the queue depths.
    EXPECT_THAT(*json, HasSubstr("queuedBytesAToB"));
    TopologySnapshot back;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*json, &back).ok());
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(s, back))
        << back.DebugString();
  }
}

TEST(TopologyFormatTest, JsonSections) {
  const TopologySnapshot s = FullMesh(3);
  TopologySnapshot members;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  *FormatJson(s, Section::kMembers), &members)
                  .ok());
  EXPECT_EQ(members.members_size(), 3);
  EXPECT_EQ(members.links_size(), 0);
  TopologySnapshot links;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(
                  *FormatJson(s, Section::kLinks), &links)
                  .ok());
  EXPECT_EQ(links.members_size(), 0);
  EXPECT_EQ(links.links_size(), 3);
}

TEST(TopologyFormatTest, FormatSnapshotDispatches) {
  const TopologySnapshot s = FullMesh(2);
  EXPECT_EQ(*FormatSnapshot(s, OutputFormat::kTable), FormatTable(s));
  EXPECT_EQ(*FormatSnapshot(s, OutputFormat::kDot), FormatDot(s));
  EXPECT_EQ(*FormatSnapshot(s, OutputFormat::kJson, Section::kAll, false),
            *FormatJson(s, Section::kAll, false));
}

}  // namespace
}  // namespace cmd
}  // namespace mesh
