// A short-lived member of a mesh, for the meshctl commands that take part
// in it (echo, hz, pub, call): a mesh::Node named "meshctl-<pid>" with a
// private run directory that it removes when done, joined through the
// --target address, and the stop signals (SIGINT, SIGTERM) read
// synchronously so that every exit path stops the node and removes the
// directory. Also the wait for peers to read what a node wrote before it
// leaves (meshd --exit_on_eof uses it too).
//
// Thread contract: a Member belongs to the thread that made it (meshctl's
// main thread); the Node inside is thread-safe as always.
#ifndef SHMESH_MESH_CMD_MEMBER_H_
#define SHMESH_MESH_CMD_MEMBER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mesh/node.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace cmd {

// Blocks SIGINT and SIGTERM in the calling thread, so that every thread
// started later (the node's, gRPC's) inherits the mask and the signals stay
// pending until StopRequested() reads them. Call first thing in main(), and
// ignore SIGPIPE there too.
void BlockStopSignals();

// Whether SIGINT or SIGTERM arrived (consuming a pending one; once true,
// stays true). REQUIRES: BlockStopSignals() was called.
bool StopRequested();

// Sleeps until `deadline` in slices of at most 100 ms, returning early
// (false) when a stop signal arrives; true when the deadline was reached.
bool SleepUnlessStopped(absl::Time deadline);

class Member {
 public:
  // Makes the run directory (mkdtemp /tmp/meshctl-<pid>.XXXXXX; the Unix
  // socket paths must stay under 108 bytes, so not $TMPDIR) and a stopped
  // node "meshctl-<pid>" seeded with `target`, logging only warnings and
  // errors. UNAVAILABLE if the directory cannot be made; the node's own
  // errors otherwise.
  static absl::StatusOr<std::unique_ptr<Member>> Create(
      const std::string& target);
  // Stops the node and removes the run directory (whatever is left in it).
  ~Member();
  Member(const Member&) = delete;
  Member& operator=(const Member&) = delete;

  // Set up subscriptions, publishers and services on it before Join.
  mesh::Node& node() { return *node_; }

  // Starts the node and waits until it is linked to every member that
  // `mesh` (the target's GetTopology answer) lists as UP, at most until
  // `deadline`. OK once all are linked; OK with `*missing` naming the
  // others if at least one is linked by then; DEADLINE_EXCEEDED if none
  // is; CANCELLED on a stop signal; the node's Start error otherwise.
  absl::Status Join(const mesh::v1::TopologySnapshot& mesh,
                    absl::Time deadline, std::vector<std::string>* missing);

  // Stops the node now (idempotent; the destructor does it too).
  void Leave();

 private:
  Member(std::string run_dir, std::unique_ptr<mesh::Node> node);
  const std::string run_dir_;
  std::unique_ptr<mesh::Node> node_;
};

// Waits until every linked peer has read everything `node` wrote into its
// ring (the queued bytes of this node's direction of each link are 0),
// polling the local topology every 5 ms, at most `timeout`. A node that
// stops right after writing would otherwise race its last messages against
// its Leave. DEADLINE_EXCEEDED names the bytes still unread.
absl::Status WaitUntilPeersRead(mesh::Node& node, absl::Duration timeout);

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_MEMBER_H_
