// The plain value types of the public API (mesh/node.h): messages, peers,
// broadcast results (also what a topic Publish returns). Separate so that the data plane (mesh/dataplane) can
// use them without depending on the node.
#ifndef SHMESH_MESH_MESSAGE_H_
#define SHMESH_MESH_MESSAGE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace mesh {

// A received message, borrowed: `payload` points into the shared-memory ring
// and is valid only during the handler call. The sender can still write to
// that memory (it is shared), so copy before validating what you parse.
struct MessageView {
  absl::string_view from;     // the sending peer's name
  absl::string_view payload;  // the message bytes
  absl::string_view topic;    // the topic (mesh/topic.h); empty for Node::Send
};

// A payload that stays where the sender put it: a block of the sender's
// shared-memory pool (mesh/pool/README.md), mapped read-only here. The
// sender gets the block back when the last reference to this object is
// gone, so hold it only as long as you read it. The sender can still write
// that memory: copy before validating what you parse.
class SharedPayload {
 public:
  virtual ~SharedPayload() = default;
  virtual absl::string_view bytes() const = 0;
};

// A received message, owned (from Node::Receive, Subscription::Receive).
// A small message is copied out of the ring into `payload`. A pooled one
// (larger than the sender's pool.threshold_bytes, or sent from a loan) is
// not copied at all: `shared` holds it in the sender's pool and `payload`
// is empty. data() returns the bytes either way: read them through it.
struct Message {
  std::string from;
  std::string payload;
  std::string topic;  // the topic (mesh/topic.h); empty for Node::Send
  std::shared_ptr<const SharedPayload> shared;

  absl::string_view data() const { return shared != nullptr ? shared->bytes() : absl::string_view(payload); }
  // The bytes as an owned string (a copy for a pooled message).
  std::string CopyData() const { return shared != nullptr ? std::string(shared->bytes()) : payload; }
};

// A peer as passed to the peer-up and peer-down handlers.
struct PeerInfo {
  std::string name;
  uint64_t id = 0;
  int32_t pid = 0;
  // How long this node spent on the link handshake with the peer: for the
  // dialing side (the name that sorts first) from connect() until both
  // rings were mapped, which covers the whole handshake; for the accepting
  // side from accept(). Diagnostics only.
  absl::Duration handshake;
};

// What a Broadcast did: the peers that got the message, and the ones that
// did not with the reason (the status a Send to that peer would have
// returned: RESOURCE_EXHAUSTED or DEADLINE_EXCEEDED for a full ring,
// UNAVAILABLE for a link that went down, ...).
struct BroadcastResult {
  std::vector<std::string> delivered;
  std::vector<std::pair<std::string, absl::Status>> not_reached;
};

}  // namespace mesh

#endif  // SHMESH_MESH_MESSAGE_H_
