#include "mesh/cmd/topology_format.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/json_util.h"
#include "mesh/cmd/text_table.h"
#include "mesh/cmd/topics_format.h"

namespace mesh {
namespace cmd {
namespace {

using ::mesh::v1::Link;
using ::mesh::v1::Member;
using ::mesh::v1::TopologySnapshot;

std::string StateName(mesh::v1::MemberState state) {
  const std::string& name = mesh::v1::MemberState_Name(state);
  return name.empty() ? absl::StrCat(static_cast<int>(state)) : name;
}

// Peer-supplied strings go into a terminal: keep them on one line and
// printable.
std::string Printable(absl::string_view s) { return absl::CHexEscape(s); }

std::string MembersTable(const TopologySnapshot& s) {
  if (s.members_size() == 0) return "(no members)\n";
  TextTable t({"MEMBER", "ID", "PID", "STATE", "GRPC ADDRESS"},
          {false, false, true, false, false});
  for (const Member& m : s.members()) {
    t.AddRow({Printable(m.name()), absl::StrFormat("%016x", m.id()),
              absl::StrCat(m.pid()), StateName(m.state()),
              Printable(m.grpc_address())});
  }
  return t.Render();
}

std::string LinksTable(const TopologySnapshot& s) {
  if (s.links_size() == 0) return "(no links)\n";
  TextTable t({"LINK", "MSGS A>B", "BYTES A>B", "MSGS B>A", "BYTES B>A",
           "QUEUED A>B", "QUEUED B>A", "FULL A>B", "FULL B>A", "CONFIRMED",
           "UNRESPONSIVE"},
          {false, true, true, true, true, true, true, true, true, false, false});
  for (const Link& l : s.links()) {
    std::string unresponsive = "-";
    if (l.a_unresponsive() && l.b_unresponsive()) {
      unresponsive = "both";
    } else if (l.a_unresponsive()) {
      unresponsive = Printable(l.a());
    } else if (l.b_unresponsive()) {
      unresponsive = Printable(l.b());
    }
    t.AddRow({absl::StrCat(Printable(l.a()), "<->", Printable(l.b())),
              absl::StrCat(l.messages_a_to_b()), absl::StrCat(l.bytes_a_to_b()),
              absl::StrCat(l.messages_b_to_a()), absl::StrCat(l.bytes_b_to_a()),
              absl::StrCat(l.queued_bytes_a_to_b()),
              absl::StrCat(l.queued_bytes_b_to_a()),
              absl::StrCat(l.full_events_a_to_b()),
              absl::StrCat(l.full_events_b_to_a()),
              l.confirmed_by_both() ? "yes" : "no", unresponsive});
  }
  return t.Render();
}

// A DOT double-quoted string body.
std::string DotEscape(absl::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (absl::ascii_isprint(static_cast<unsigned char>(c))) {
      out += c;
    } else {
      absl::StrAppendFormat(&out, "\\\\x%02x", static_cast<unsigned char>(c));
    }
  }
  return out;
}

// "1.5 KiB": compact byte counts for graph labels.
std::string HumanBytes(uint64_t n) {
  if (n < 1024) return absl::StrCat(n, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(n) / 1024;
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return absl::StrFormat("%.1f %s", v, units[u]);
}

}  // namespace

std::string FormatTimestamp(const google::protobuf::Timestamp& ts) {
  if (ts.seconds() == 0 && ts.nanos() == 0) return "-";
  const absl::Time t =
      absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view text) {
  const std::string lower = absl::AsciiStrToLower(text);
  if (lower == "table") return OutputFormat::kTable;
  if (lower == "json") return OutputFormat::kJson;
  if (lower == "dot") return OutputFormat::kDot;
  return absl::InvalidArgumentError(absl::StrCat("unknown format \"",
                                                 absl::CHexEscape(text),
                                                 "\"; use table, json or dot"));
}

// Whether any node reported pool activity (its own segments, or peers'
// segments mapped, or references dropped).
bool HasPools(const TopologySnapshot& s) {
  for (const mesh::v1::PoolUsage& p : s.pools()) {
    if (p.segments() > 0 || p.mapped_segments() > 0 || p.sent_messages() > 0 || p.dropped_bad_refs() > 0 ||
        p.bad_releases() > 0) {
      return true;
    }
  }
  return false;
}

// One row per node: its pool (mesh/pool/README.md).
std::string PoolsTable(const TopologySnapshot& s) {
  TextTable t({"POOL", "SEGMENTS", "BYTES", "IN USE", "SENT", "SENT BYTES", "HELD BY", "MAPPED", "BAD REFS",
               "BAD RELEASES"},
              {false, true, true, true, true, true, false, true, true, true});
  for (const mesh::v1::PoolUsage& p : s.pools()) {
    std::vector<std::string> held;
    for (const auto& h : p.held_by()) held.push_back(absl::StrCat(Printable(h.peer()), ":", h.blocks()));
    t.AddRow({Printable(p.node()), absl::StrCat(p.segments()), HumanBytes(p.segment_bytes()),
              HumanBytes(p.bytes_in_use()), absl::StrCat(p.sent_messages()), HumanBytes(p.sent_bytes()),
              held.empty() ? "-" : absl::StrJoin(held, ","),
              absl::StrCat(p.mapped_segments(), " (", HumanBytes(p.mapped_bytes()), ")"),
              absl::StrCat(p.dropped_bad_refs()), absl::StrCat(p.bad_releases())});
  }
  return t.Render();
}

std::string FormatTable(const TopologySnapshot& s, Section section) {
  if (section == Section::kTopics) return FormatTopicsTable(s);
  std::string out = absl::StrCat(
      "reporter ", Printable(s.reporter()), " at ", FormatTimestamp(s.taken()),
      ": ", s.members_size(),
      s.members_size() == 1 ? " member, " : " members, ", s.links_size(),
      s.links_size() == 1 ? " link\n" : " links\n");
  if (section != Section::kLinks) absl::StrAppend(&out, MembersTable(s));
  if (section == Section::kAll) out += "\n";
  if (section != Section::kMembers) absl::StrAppend(&out, LinksTable(s));
  // Only when there is something to show, so that a mesh without topics
  // looks as it always did.
  if (section == Section::kAll && HasTopics(s)) {
    absl::StrAppend(&out, "\n", TopicsTables(s));
  }
  if (section == Section::kAll && HasPools(s)) absl::StrAppend(&out, "\n", PoolsTable(s));
  return out;
}

absl::StatusOr<std::string> FormatJson(const TopologySnapshot& snapshot,
                                       Section section, bool multiline) {
  TopologySnapshot copy = snapshot;
  if (section != Section::kAll && section != Section::kMembers) {
    copy.clear_members();
  }
  if (section != Section::kAll && section != Section::kLinks) copy.clear_links();
  if (section != Section::kAll && section != Section::kTopics) {
    copy.clear_topics();
  }
  if (section != Section::kAll) copy.clear_pools();
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = multiline;
  options.always_print_primitive_fields = true;
  std::string out;
  const auto status =
      google::protobuf::util::MessageToJsonString(copy, &out, options);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat(
        "cannot print the topology as JSON: ",
        absl::string_view(status.message().data(), status.message().size())));
  }
  // add_whitespace already ends the document with a newline.
  if (out.empty() || out.back() != '\n') out += "\n";
  return out;
}

std::string FormatDot(const TopologySnapshot& s, Section section) {
  std::string out = "graph shmesh {\n";
  absl::StrAppend(&out, "  label=\"reporter ", DotEscape(s.reporter()), " at ",
                  FormatTimestamp(s.taken()), "\";\n");
  absl::StrAppend(&out, "  node [shape=box];\n");
  if (section != Section::kLinks) {
    for (const Member& m : s.members()) {
      absl::StrAppend(
          &out, "  \"", DotEscape(m.name()), "\" [label=\"",
          DotEscape(m.name()), "\\npid ", m.pid(), "\\n", StateName(m.state()),
          "\"", m.state() == mesh::v1::UP ? "" : ", style=dashed", "];\n");
    }
  }
  if (section != Section::kMembers) {
    for (const Link& l : s.links()) {
      absl::StrAppend(&out, "  \"", DotEscape(l.a()), "\" -- \"",
                      DotEscape(l.b()), "\" [label=\"", DotEscape(l.a()), "->",
                      DotEscape(l.b()), ": ", l.messages_a_to_b(), " msgs, ",
                      HumanBytes(l.bytes_a_to_b()), "\\n", DotEscape(l.b()),
                      "->", DotEscape(l.a()), ": ", l.messages_b_to_a(),
                      " msgs, ", HumanBytes(l.bytes_b_to_a()), "\"",
                      l.confirmed_by_both() ? "" : ", style=dashed",
                      l.a_unresponsive() || l.b_unresponsive() ? ", color=red" : "",
                      "];\n");
    }
  }
  out += "}\n";
  return out;
}

absl::StatusOr<std::string> FormatSnapshot(const TopologySnapshot& snapshot,
                                           OutputFormat format, Section section,
                                           bool multiline_json) {
  switch (format) {
    case OutputFormat::kTable:
      return FormatTable(snapshot, section);
    case OutputFormat::kJson:
      return FormatJson(snapshot, section, multiline_json);
    case OutputFormat::kDot:
      if (section == Section::kTopics) {
        return absl::InvalidArgumentError(
            "topics have no dot format; use --format=table or --format=json");
      }
      return FormatDot(snapshot, section);
  }
  return absl::InvalidArgumentError("unknown output format");
}

}  // namespace cmd
}  // namespace mesh
