// mesh_worker's topic mode (tests/README.md, "mesh_worker: topics"):
// publishers and subscriptions of one worker's node, driven by flags and
// stdin commands, reporting on stdout what arrived, so the suites can prove
// that every subscriber got exactly the messages of every matching
// publisher, in order, none lost, duplicated or corrupt.
//
// Every Publish carries the self-checking message of worker_wire.h with
// name "<publisher node>|<topic>" and the publisher's own sequence number
// (0, 1, ... per topic and node incarnation; a failed Publish is retried
// with the same number). A subscription checks each message's checksum,
// sender, topic (it must match the pattern, by worker_wire.h's own
// matcher) and that its seq is exactly one more than the previous one of
// that stream; the first of a stream may have any seq (a subscriber that
// matches late gets the history, or nothing before it matched) and is
// printed, so the test decides what it must be.
//
// Thread contract: thread-safe. Start, HandleCommand and Shutdown are
// called from mesh_worker's threads (main, stdin); subscription handlers
// run on the node's receive thread (pull subscriptions on a thread of
// their own); one publisher thread publishes. State is under `mu_`.
#ifndef SHMESH_TESTS_WORKER_PUBSUB_H_
#define SHMESH_TESTS_WORKER_PUBSUB_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "mesh/node.h"

namespace meshworker {

class PubSubAgent {
 public:
  // Reads the topic flags (--publish, --subscribe, ...; see the .cc). The
  // node (borrowed) must outlive the agent. INVALID_ARGUMENT for a
  // malformed flag.
  static absl::StatusOr<std::unique_ptr<PubSubAgent>> FromFlags(mesh::Node* node);
  ~PubSubAgent();

  // After Node::Start: advertises, subscribes, starts publishing. Errors
  // are the node's, with the topic or pattern named.
  absl::Status Start();
  // One stdin command (sub, psub, unsub, pub, pubstop, pullpause,
  // pullresume); false if it is not one.
  bool HandleCommand(const std::string& cmd);
  // PUBLISHED, TRESULT and SUBS lines.
  void Report();
  // Stops publishing, reports, and drops every publisher and subscription
  // (before Node::Stop, so no handler runs into a stopping node).
  void Shutdown();

  // Whether the agent has anything to do (any topic flag given).
  bool active() const { return !pubs_.empty() || !initial_patterns_.empty(); }

 private:
  struct Pub;
  struct SubState;
  struct Sub;
  struct RxStream {
    uint64_t first = 0, last = 0, next = 0, received = 0, errors = 0, bytes = 0;
  };
  // (pattern, subscription generation, publisher name, publisher id, topic)
  using StreamKey = std::tuple<std::string, int, std::string, uint64_t, std::string>;

  explicit PubSubAgent(mesh::Node* node);
  absl::Status Subscribe(const std::string& pattern, bool pull);
  void Unsubscribe(const std::string& pattern);
  void OnMessage(SubState& sub, absl::string_view from, absl::string_view topic, absl::string_view payload);
  // Publishes the next message of `p` once (false: failed, seq kept).
  bool PublishOne(Pub& p);
  void PublishLoop();
  void PrintPublished();

  mesh::Node* const node_;
  std::vector<std::unique_ptr<Pub>> pubs_;
  std::vector<std::string> initial_patterns_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<Sub>> subs_ ABSL_GUARDED_BY(mu_);
  int next_gen_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<StreamKey, RxStream> rx_ ABSL_GUARDED_BY(mu_);
  int logged_errors_ ABSL_GUARDED_BY(mu_) = 0;
  // Publish commands ("pub N") not yet carried out, per topic.
  uint64_t pending_ ABSL_GUARDED_BY(mu_) = 0;
  bool streaming_ ABSL_GUARDED_BY(mu_) = false;
  bool quit_ ABSL_GUARDED_BY(mu_) = false;

  std::thread publisher_;
  // pullpause: the pull subscriptions stop calling Receive (their queues
  // fill and hold the publishers back) until pullresume.
  std::atomic<bool> pull_paused_{false};
};

}  // namespace meshworker

#endif  // SHMESH_TESTS_WORKER_PUBSUB_H_
