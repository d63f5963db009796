// Topology: what a node reports about the mesh, as pure functions over the
// protos of proto/mesh/v1/mesh.proto. LocalSnapshot builds one node's
// snapshot from its members and its links' counters; MergeSnapshots joins
// the snapshots of every member into the whole mesh (each direction's
// counters come from its sender); SameShape tells whether two snapshots
// differ in more than counters and timestamps (whole-mesh watch streams push
// only then). Nothing here takes a lock, reads the clock or calls gRPC: the
// node gathers the inputs and passes the time.
// Thread contract: thread-safe free functions (no shared state).
#ifndef SHMESH_MESH_TOPOLOGY_TOPOLOGY_H_
#define SHMESH_MESH_TOPOLOGY_TOPOLOGY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace topology {

// One of this node's links, as the node's link layer reports it. "tx" is
// this node -> `peer`, "rx" is `peer` -> this node; the fields are those of
// mesh/links/transport.h LinkStats.
struct LinkReport {
  std::string peer;
  uint64_t tx_messages = 0, tx_bytes = 0, tx_full_events = 0;
  uint64_t rx_messages = 0, rx_bytes = 0;
  uint64_t tx_ring_bytes = 0, rx_ring_bytes = 0;
  uint64_t tx_queued_bytes = 0, rx_queued_bytes = 0;
  // This node finds `peer` unresponsive (its process has not run lately).
  bool peer_unresponsive = false;
  // When the link came up.
  absl::Time since = absl::InfinitePast();
};

// google.protobuf.Timestamp of `t`, in nanoseconds since the Unix epoch
// (InfinitePast and InfiniteFuture saturate as absl::ToUnixNanos does).
google::protobuf::Timestamp TimeToProto(absl::Time t);

// This node's snapshot: reporter `self`, taken at `now`, `members` as given
// (REQUIRES: self first; each with its state and since as this node sees
// it; DOWN members, e.g. recently departed ones, are carried through), and
// one Link per entry of `links`, its ends ordered by name (a < b) and the
// counters placed on the matching direction. The reporter sets only the
// other end's *_unresponsive flag.
mesh::v1::TopologySnapshot LocalSnapshot(const std::string& self, absl::Time now,
                                         std::vector<mesh::v1::Member> members,
                                         const std::vector<LinkReport>& links);

// The whole mesh from this node's `local` snapshot and the local snapshots
// (GetTopology local_only) of the members that answered, `remote` (those
// that did not are simply absent). Reporter, taken and the member list are
// `local`'s, except that a member `local` lists as DOWN is reported with the
// state a remote reporter gives the same incarnation (name and id): UP if
// any lists it UP, else JOINING if any lists it JOINING. So a member is DOWN
// only when no live reporter still sees it.
// Links: one per (a, b), sorted by (a, b). The first report of a link (local
// first, then `remote` in order) gives its fields; a later report by one end
// replaces what that end is authoritative for: the counters and ring size of
// the direction it sends (messages, bytes, full events, ring bytes) and its
// flag about the other end (a reports b_unresponsive, b reports
// a_unresponsive). confirmed_by_both: reported at least twice.
mesh::v1::TopologySnapshot MergeSnapshots(mesh::v1::TopologySnapshot local,
                                          const std::vector<mesh::v1::TopologySnapshot>& remote);

// Whether `a` and `b` have the same members (name, id, state) and the same
// links (a, b, confirmed_by_both, a_unresponsive, b_unresponsive), in any
// order. Reporter, counters, ring sizes, endpoints and timestamps are
// ignored.
bool SameShape(const mesh::v1::TopologySnapshot& a, const mesh::v1::TopologySnapshot& b);

}  // namespace topology
}  // namespace mesh

#endif  // SHMESH_MESH_TOPOLOGY_TOPOLOGY_H_
