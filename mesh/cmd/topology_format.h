// Rendering a mesh.v1.TopologySnapshot for people and tools: an aligned text
// table, protobuf JSON, or a Graphviz graph. Pure functions of the snapshot
// (no I/O, no gRPC), so meshctl stays thin and the output is unit-tested.
//
// Thread contract: free functions, thread-safe.
#ifndef SHMESH_MESH_CMD_TOPOLOGY_FORMAT_H_
#define SHMESH_MESH_CMD_TOPOLOGY_FORMAT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/timestamp.pb.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace cmd {

enum class OutputFormat { kTable, kJson, kDot };

// Which part of the snapshot to render. kTopics: topics, subscriptions and
// services (TopologySnapshot.topics; see topics_format.h).
enum class Section { kAll, kMembers, kLinks, kTopics };

// A snapshot's time as "2026-11-22T18:03:01.123Z" (UTC), or "-" if unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& ts);

// "table", "json" or "dot"; INVALID_ARGUMENT naming the allowed values.
absl::StatusOr<OutputFormat> ParseOutputFormat(absl::string_view text);

// An aligned table: a summary line (reporter, time, counts), then members
// (name, id in hex, pid, state, gRPC address) and/or links (a<->b, messages
// and bytes each way, queued bytes, full events, confirmed); kAll adds the
// topics tables (topics_format.h) when the snapshot has any topic,
// subscription or service. kTopics: FormatTopicsTable. Ends in "\n".
std::string FormatTable(const mesh::v1::TopologySnapshot& snapshot,
                        Section section = Section::kAll);

// Protobuf JSON of the snapshot (lowerCamelCase names, zero values printed),
// with the other sections cleared for kMembers / kLinks / kTopics, so the
// result still parses as a TopologySnapshot. `multiline` pretty-prints;
// otherwise it is one line (for streams). Ends in "\n". INTERNAL if
// protobuf cannot print it.
absl::StatusOr<std::string> FormatJson(
    const mesh::v1::TopologySnapshot& snapshot, Section section = Section::kAll,
    bool multiline = true);

// A Graphviz graph: `graph shmesh { "a" -- "b" [label="..."]; }`, one node
// per member (kAll, kMembers) and one edge per link (kAll, kLinks).
// Unconfirmed links and members that are not UP are drawn dashed.
std::string FormatDot(const mesh::v1::TopologySnapshot& snapshot,
                      Section section = Section::kAll);

// Dispatches to one of the above. INVALID_ARGUMENT for kDot with kTopics
// (a graph of topics is not drawn).
absl::StatusOr<std::string> FormatSnapshot(
    const mesh::v1::TopologySnapshot& snapshot, OutputFormat format,
    Section section = Section::kAll, bool multiline_json = true);

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_TOPOLOGY_FORMAT_H_
