// Rendering the topics part of a mesh.v1.TopologySnapshot (its NodeTopics:
// what each node publishes, subscribes to, received and serves) for
// `meshctl topics` and `meshctl topology`, and the one-line form of a topic
// message that `meshctl echo` and `meshd --subscribe` print. Pure functions
// of their arguments (no I/O), so the output is unit-tested.
//
// Thread contract: free functions, thread-safe.
#ifndef SHMESH_MESH_CMD_TOPICS_FORMAT_H_
#define SHMESH_MESH_CMD_TOPICS_FORMAT_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace cmd {

// Whether any node of the snapshot publishes, subscribes, received or
// serves anything.
bool HasTopics(const mesh::v1::TopologySnapshot& snapshot);

// Three aligned tables, each ending in "\n", separated by blank lines:
//   TOPIC  NODE  ROLE  PATTERNS  MSGS  BYTES  PEERS
//     one "pub" row per (topic, publishing node): what it published and
//     how many linked subscribers it has; one "sub" row per (topic, node
//     that received it or has a matching subscription, as
//     mesh/pubsub/topic_name.h matches them): what it received
//     and from how many publishers, with its patterns that match.
//   PATTERN  NODE  MSGS  BYTES  PUBLISHERS
//     every subscription, with the messages delivered to it.
//   SERVICE  SERVER  REQUESTS
// A table with no rows prints "(no topics)" etc. Names are escaped onto
// one line (they come from peers).
std::string TopicsTables(const mesh::v1::TopologySnapshot& snapshot);

// A summary line ("reporter a at <time>: 2 topics, 3 subscriptions,
// 1 service"), then TopicsTables.
std::string FormatTopicsTable(const mesh::v1::TopologySnapshot& snapshot);

// The nodes other than `self` with a subscription that matches `topic`,
// sorted: whom a publisher of `topic` should expect to reach.
std::vector<std::string> SubscribersOf(
    const mesh::v1::TopologySnapshot& snapshot, absl::string_view topic,
    absl::string_view self = "");

// The nodes that serve `service`, sorted.
std::vector<std::string> ServersOf(const mesh::v1::TopologySnapshot& snapshot,
                                   absl::string_view service);

// "<topic> <from> <payload>\n": one received topic message on one line.
// Each field is escaped as in C (absl::CHexEscape: non-printable bytes,
// quotes and backslashes), so a payload with a newline stays on its line.
// Topic and node names have no blanks (their grammars forbid them), so a
// reader can split the first two fields on spaces.
std::string TopicMessageLine(absl::string_view topic, absl::string_view from,
                             absl::string_view payload);

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_TOPICS_FORMAT_H_
