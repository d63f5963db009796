// meshd's topics and services (--subscribe, --publish, --history, --serve):
// what the node subscribes to, publishes and serves, set up on the node
// before it starts. Part of the meshd binary.
//
// Thread contract: build and destroy on meshd's main thread; the handlers
// run on the node's receive thread and only write whole lines (one
// write(2) each) to stdout.
#ifndef SHMESH_MESH_CMD_MESHD_TOPICS_H_
#define SHMESH_MESH_CMD_MESHD_TOPICS_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mesh/node.h"

namespace mesh {
namespace cmd {

struct MeshdTopicFlags {
  std::vector<std::string> subscribe;  // patterns
  std::string publish;                 // topic, or empty
  size_t history = 0;
  bool shared_ring = false;            // PublisherOptions::shared_ring
  std::vector<std::string> serve;      // service names
};

// What the node holds for meshd: destroy before the node stops (or after:
// both are allowed by the API; meshd destroys them first so no handler
// runs during the stop).
struct MeshdTopics {
  std::vector<std::unique_ptr<mesh::Subscription>> subscriptions;
  std::unique_ptr<mesh::Publisher> publisher;  // null without --publish
  std::vector<std::unique_ptr<mesh::ServiceRegistration>> services;
};

// The answer of a --serve service: the request with its ASCII letters
// upper-cased (other bytes unchanged). Trivial on purpose: for demos and
// tests of request/response.
std::string UpperCaseReply(absl::string_view request);

// Subscribes, advertises and serves as `flags` say, on a node that has not
// started. Each subscription prints "<topic> <from> <payload>" lines
// (TopicMessageLine) to stdout; `log_request` is called for every request
// served (from the receive thread). INVALID_ARGUMENT names a bad pattern,
// topic, service name or history; ALREADY_EXISTS a service given twice.
absl::StatusOr<MeshdTopics> SetUpTopics(
    mesh::Node& node, const MeshdTopicFlags& flags,
    std::function<void(absl::string_view service, absl::string_view from)>
        log_request);

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_MESHD_TOPICS_H_
