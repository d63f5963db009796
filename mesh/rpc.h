// Services: request/response across the mesh, on the same rings as
// Node::Send.
//
//   auto plan = node->Serve("plan", [](const mesh::RequestView& r)
//                                       -> absl::StatusOr<std::string> {
//     return MakePlan(std::string(r.payload));   // or an error status
//   });
//   absl::StatusOr<std::string> reply =
//       other->Call("plan", "from A to B", absl::Now() + absl::Seconds(1));
//
// Service names follow the topic name grammar (mesh/topic.h), without
// wildcards. Every node tells its peers which services it serves over the
// link's control channel, as for subscriptions. A request frame carries the
// server's service id and a correlation id; the response frame carries the
// same correlation id back, and the caller's receive thread hands it to the
// waiting caller: many calls may be in flight from many threads, with no
// thread per call.
//
// Which server: CallOptions::server names one; otherwise calls rotate
// round-robin over the linked nodes that serve the service (sorted by name).
//
// Errors a caller gets: NOT_FOUND (no linked node serves it, or the named
// server does not); UNAVAILABLE at once if the server's link goes down
// mid-call (its process died or left); DEADLINE_EXCEEDED at the deadline
// (a response that comes later is dropped and counted); the handler's own
// status when it returns an error; RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED
// when the request could not be written (ring full); INVALID_ARGUMENT for
// a request or response over max_message_bytes.
//
// Thread contract: thread-safe. A service handler runs on the server's
// receive thread (in order per caller node, one at a time): it must not
// block for long and must not Call() (the receive thread is what would
// deliver the response: such a Call fails at once with FAILED_PRECONDITION;
// so does one from a message or subscription handler, which run there too). Destroying the ServiceRegistration stops serving:
// once the destructor returns the handler is not running and is never
// called again.
#ifndef SHMESH_MESH_RPC_H_
#define SHMESH_MESH_RPC_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mesh {

namespace rpc {
class ServiceCore;
}  // namespace rpc

// A request as a service handler sees it, borrowed: `payload` points into
// shared memory and is valid during the call only (copy before parsing).
struct RequestView {
  absl::string_view service;  // the service name
  absl::string_view from;     // the calling node
  absl::string_view payload;  // the request bytes
};

// Returns the response bytes, or an error status the caller gets as is.
using ServiceHandler = std::function<absl::StatusOr<std::string>(const RequestView&)>;

struct CallOptions {
  // The node to call; empty: round-robin over the nodes that serve it.
  std::string server;
};

class ServiceRegistration {
 public:
  ServiceRegistration(const ServiceRegistration&) = delete;
  ServiceRegistration& operator=(const ServiceRegistration&) = delete;
  // Stops serving (see the thread contract above).
  ~ServiceRegistration();
  const std::string& service() const;
  // Requests answered (with OK or the handler's error).
  uint64_t handled() const;

 private:
  friend class NodeImpl;
  explicit ServiceRegistration(std::shared_ptr<rpc::ServiceCore> core);
  std::shared_ptr<rpc::ServiceCore> core_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_RPC_H_
