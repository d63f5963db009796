// Topics: publish/subscribe across the mesh, on the same rings as
// Node::Send, without a broker.
//
//   auto pub = node->Advertise("camera/front");           // a Publisher
//   (*pub)->Publish(frame_bytes);                         // to every match
//
//   auto sub = node->Subscribe("camera/*", [](const mesh::MessageView& m) {
//     // m.topic == "camera/front", m.from == the publishing node
//   });
//   auto pull = node->Subscribe("camera/**");             // pull form:
//   auto m = (*pull)->Receive(absl::Now() + absl::Seconds(1));
//
// Topic names: 1 to 255 bytes, segments separated by '/', each segment 1 to
// 64 bytes of [A-Za-z0-9_.-]; no empty segment (no leading, trailing or
// double '/'). Patterns are topic names whose segments may also be '*'
// (exactly one segment) or '**' (any number of segments, zero included),
// e.g. "camera/*", "robot/**/status", "**". The grammar and the matching are
// in mesh/pubsub/topic_name.h.
//
// How it works: every node tells each peer which patterns it subscribes to
// over the link's control channel (the link socket, not the rings) when the
// link comes up and whenever that changes, so a node that joins late or
// restarts learns them with its links. A Publish goes only to the peers with
// a matching subscription, each getting one frame in its ring whose envelope
// carries a small per-publisher topic id (declared in the same ring before
// its first use, so it can never arrive before its declaration). A node with
// no matching subscription gets nothing. A node's own subscriptions do not
// receive its own publications (use the handler directly).
//
// Ordering and loss: the messages of one Publisher arrive at each subscriber
// in the order published, none lost or duplicated while both nodes live
// (reliable, the default). Subscription changes take effect at a publisher
// within one control-channel round trip (the receive thread reads control
// messages within 10 ms even under a continuous stream; typically well
// under 1 ms): see mesh/pubsub/README.md for the measured bound.
//
// Thread contract: Publisher, Subscription and their methods are
// thread-safe. Handlers run on the node's receive thread, like the message
// handler: in order per publisher, one at a time, and must not block for
// long. Destroying a Subscription unsubscribes: once the destructor returns
// its handler is not running and is never called again (destroying it from
// inside its own handler is allowed). Publisher and Subscription may
// outlive their Node: they then fail with FAILED_PRECONDITION.
#ifndef SHMESH_MESH_TOPIC_H_
#define SHMESH_MESH_TOPIC_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mesh/loan.h"
#include "mesh/message.h"

namespace mesh {

namespace pubsub {
class PublisherCore;
class SubscriptionCore;
}  // namespace pubsub

// What a Publish did: how many subscribers got the message, and those that
// did not with why (RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED: its ring stayed
// full; UNAVAILABLE: its link went down; ...). The names of the others are
// Publisher::subscribers(). (No list of names on the hot path: a Publish to
// subscribers that all have room allocates nothing.)
struct PublishResult {
  size_t delivered = 0;
  std::vector<std::pair<std::string, absl::Status>> not_reached;
};

struct PublisherOptions {
  // Keep the last `history` messages (0: none). A node that starts
  // matching later (its first subscription that matches, or its link comes
  // up) gets them first, oldest first, then the live stream, with no gap
  // and no duplicate (what ROS 2 calls transient local durability). History
  // is kept per node, not per subscription: a second subscription on a
  // node that already matches starts with the live stream, as does one
  // made again before the publisher saw the first one go. At most 4096.
  size_t history = 0;
  enum class Reliability {
    // A subscriber whose ring is full is waited for until the Publish
    // deadline (one full subscriber does not delay the others: they get
    // the message first). Nothing is lost while both nodes live.
    kReliable,
    // A subscriber whose ring is full is skipped at once (reported in
    // not_reached, counted): for data where only the latest matters.
    kBestEffort,
  };
  Reliability reliability = Reliability::kReliable;
  // One shared ring for all subscribers (ringbuf/broadcast.h) instead of a
  // frame in each subscriber's ring: a Publish writes the message once,
  // whatever the number of subscribers, and each reads it from the same
  // memory. For small messages to many subscribers: with 8 subscriber
  // processes on 2 CPUs each got 0.56-1.68x of what the one subscriber of
  // a default publisher gets, where the default kept 0.13-0.58x (four runs;
  // mesh/pubsub/README.md). With one subscriber the default is faster.
  // What changes:
  //   - a payload may be at most half of the node's ring_capacity_bytes
  //     (INVALID_ARGUMENT beyond); no pool, no loans (Loan() and
  //     Publish(Loan) fail with INVALID_ARGUMENT);
  //   - the slowest subscriber paces the ring: a Publish waits for it
  //     until its deadline (kBestEffort: not at all), then evicts it: it
  //     misses that message and the ones until it is offered the ring
  //     again at the next Publish (reported in not_reached each time,
  //     DEADLINE_EXCEEDED); the others get every message;
  //   - subscribers copy each message out of the ring before their handler
  //     sees it.
  // Ordering, history and matching are as without it.
  bool shared_ring = false;
  // Called on the node's events thread (one call at a time, no lock of the
  // node held) with the new number of matched subscribers whenever it
  // changes.
  std::function<void(size_t matched)> on_matched;
};

class Publisher {
 public:
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;
  // Stops publishing; the subscribers keep what they got.
  ~Publisher();

  const std::string& topic() const;
  // Sends `payload` to every node with a matching subscription: first to
  // every ring with room, then (reliable) to the full ones in turn until
  // `deadline`. OK with both lists empty when nobody subscribes. Errors:
  // INVALID_ARGUMENT (payload over max_message_bytes), FAILED_PRECONDITION
  // (node not running), and, when there were subscribers but none could be
  // reached, the first subscriber's error (RESOURCE_EXHAUSTED,
  // DEADLINE_EXCEEDED, UNAVAILABLE) naming each.
  // A payload larger than the node's pool.threshold_bytes (64 KiB by
  // default) is copied once into the node's pool, and every subscriber
  // gets a reference to that one copy (mesh/loan.h).
  absl::StatusOr<PublishResult> Publish(absl::string_view payload,
                                        absl::Time deadline = absl::InfiniteFuture());
  // Zero-copy (mesh/loan.h): a buffer of `bytes` in the node's pool to fill
  // in place (errors as Node::Loan), then publish with the overload below:
  // every subscriber reads the same bytes, written once, and a history
  // keeps the buffer (not a copy).
  absl::StatusOr<mesh::Loan> Loan(size_t bytes, absl::Time deadline = absl::InfiniteFuture());
  // Publishes the loaned buffer, as Publish does bytes. `loan` is left
  // empty unless the call fails with nothing reached (then it is untouched:
  // publish it again or drop it). RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED
  // also when a subscriber holds its whole pool quota.
  absl::StatusOr<PublishResult> Publish(mesh::Loan&& loan, absl::Time deadline = absl::InfiniteFuture());
  // The number of linked nodes with a subscription matching this topic,
  // and their names (sorted).
  size_t matched() const;
  std::vector<std::string> subscribers() const;
  // Waits until at least `n` subscribers match: DEADLINE_EXCEEDED otherwise.
  absl::Status WaitForSubscribers(size_t n, absl::Time deadline);
  // Messages and payload bytes published: every Publish past its checks
  // (size, node running) counts once, whoever it reached (with history, a
  // later subscriber may still get it).
  uint64_t published_messages() const;
  uint64_t published_bytes() const;

 private:
  friend class NodeImpl;
  explicit Publisher(std::shared_ptr<pubsub::PublisherCore> core);
  std::shared_ptr<pubsub::PublisherCore> core_;
};

struct SubscribeOptions {
  // Pull form only: the most messages waiting for Receive. When full, this
  // subscription's publishers are held back (their frames wait in the
  // rings: backpressure, nothing lost) until Receive makes room. 1 to 1<<20.
  size_t queue_depth = 1024;
};

class Subscription {
 public:
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  // Unsubscribes (see the thread contract above).
  ~Subscription();

  // Unsubscribes now and keeps the object (its counters stay readable): no
  // message is delivered once this returns. Waits for a handler call in
  // progress, unless called from inside that handler. Idempotent; the
  // destructor calls it.
  void Unsubscribe();

  const std::string& pattern() const;
  // Pull form: the next message (its topic, sender and payload), waiting
  // until `deadline`: DEADLINE_EXCEEDED if none came; FAILED_PRECONDITION
  // for a subscription with a handler; CANCELLED once the node stopped.
  absl::StatusOr<Message> Receive(absl::Time deadline = absl::InfiniteFuture());
  // Pull form: a descriptor (borrowed) readable while a message is queued;
  // -1 with a handler.
  int ready_fd() const;
  // Messages delivered to this subscription so far.
  uint64_t received() const;

 private:
  friend class NodeImpl;
  explicit Subscription(std::shared_ptr<pubsub::SubscriptionCore> core);
  std::shared_ptr<pubsub::SubscriptionCore> core_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_TOPIC_H_
