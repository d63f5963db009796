// mesh::Node: one process's membership in a shmesh mesh.
//
// A Node finds the other nodes through gRPC discovery (any member can be a
// seed), and for every peer sets up a link: two sealed-memfd rings (one per
// direction) and their doorbells, handed over the peer's Unix link socket with
// SCM_RIGHTS. Payloads then go through shared memory only. The link socket
// stays open: when a peer exits or is killed, the node notices the EOF at
// once, drops the link and calls the peer-down handler.
//
//   auto node = mesh::Node::CreateFromFile("node.textproto");
//   (*node)->SetMessageHandler([](const mesh::MessageView& m) { ... });
//   (*node)->Start();
//   (*node)->Send("other", "hello");
//
// Thread contract: thread-safe. Every public method may be called from any
// thread, except that the Set*Handler methods must be called before Start()
// (afterwards they fail with FAILED_PRECONDITION and change nothing).
// Handlers run on the node's receive thread (messages, in order per peer) or
// on its events thread (peer up/down/unresponsive: one at a time, a peer's
// up before its down, with no lock of the node held, so they may call any
// method but Stop()); they must not block for long (a message handler
// delays every link; a peer handler delays the later peer events), and
// must not destroy the Node.
#ifndef SHMESH_MESH_NODE_H_
#define SHMESH_MESH_NODE_H_

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
#include "absl/types/span.h"
#include "mesh/loan.h"
#include "mesh/message.h"
#include "mesh/rpc.h"
#include "mesh/topic.h"
#include "mesh/v1/config.pb.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {

class NodeImpl;

class Node {
 public:
  // Validates `config` (filling in defaults) and builds a stopped node.
  // INVALID_ARGUMENT names the bad field.
  static absl::StatusOr<std::unique_ptr<Node>> Create(
      const mesh::v1::NodeConfig& config);
  // Loads the config file first (text format, or JSON for *.json); errors
  // name the file, line and field.
  static absl::StatusOr<std::unique_ptr<Node>> CreateFromFile(
      const std::string& path);

  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  // Stops the node if it is running.
  ~Node();

  // Starts the gRPC server and link socket and begins joining through the
  // seeds; returns without waiting for peers (see WaitForPeers). Seeds that
  // cannot be reached are retried in the background. Errors: the run
  // directory or sockets cannot be created (ALREADY_EXISTS if a live node
  // already listens there), FAILED_PRECONDITION if called twice.
  absl::Status Start();

  // Leaves the mesh (telling the members), closes every link, stops the
  // servers and removes this node's sockets. Idempotent.
  void Stop();

  // Restarts only the gRPC server (the control plane), e.g. when it is
  // wedged or flooded: calls in flight get 500 ms, then are cancelled (watch
  // streams end), and a new server starts on the same address. Links and
  // messages are unaffected: nothing on the data plane waits for it. Peers'
  // calls in flight fail with UNAVAILABLE and are retried; on a Unix socket
  // new clients wait in the socket's backlog meanwhile. Blocks until the new
  // server serves. FAILED_PRECONDITION unless the node is running;
  // UNAVAILABLE if the new server cannot listen (TCP port taken meanwhile):
  // call again to retry.
  absl::Status RestartControlServer();

  // This node's name, id and gRPC target (with the real port if it was 0).
  const std::string& name() const;
  uint64_t id() const;
  std::string grpc_address() const;
  // The resolved config (defaults filled in).
  const mesh::v1::NodeConfig& config() const;

  // Sends `payload` to peer `peer`. A payload larger than
  // config().pool().threshold_bytes (64 KiB by default) is copied once into
  // this node's pool and the ring carries a reference (as a Loan does); up
  // to max_message_bytes (1 GiB by default) whatever the ring's size.
  // Waits for ring space (and for a large payload, pool memory and the
  // peer's pool quota) until `deadline`:
  // absl::InfinitePast() (or any past time) fails at once with
  // RESOURCE_EXHAUSTED when the ring is full; a later deadline returns
  // DEADLINE_EXCEEDED if space did not free up in time. NOT_FOUND if there is
  // no link to `peer`; INVALID_ARGUMENT if payload exceeds max_message_bytes;
  // UNAVAILABLE if the link went down. Messages to one peer arrive in the
  // order sent. Safe from many threads at once (per-peer lock).
  absl::Status Send(absl::string_view peer, absl::string_view payload,
                    absl::Time deadline = absl::InfiniteFuture());

  // Sends `payloads` to `peer` in order, as Send does each, but publishes
  // them with one index store and wakes the peer at most once (per ring's
  // worth): the way to stream small messages. Returns how many were sent, a
  // prefix of `payloads`: all of them, or fewer if the ring stayed full
  // until `deadline` (or the link failed) after some were sent; call again
  // with the rest to go on (or to learn why). Errors, when none was sent:
  // as Send. INVALID_ARGUMENT (nothing sent) if any payload is too large.
  absl::StatusOr<size_t> SendBatch(absl::string_view peer,
                                   absl::Span<const absl::string_view> payloads,
                                   absl::Time deadline = absl::InfiniteFuture());

  // Sends `payload` to every linked peer. Every peer whose ring has room
  // gets it at once; then the peers with a full ring are waited for in
  // turn until `deadline` (never those reported unresponsive: their
  // process does not run), so one full or stopped peer does not delay the
  // others. Returns who got it and who did not (with why: the status Send
  // would have returned). An error only if no peer could be reached (it
  // names each), INVALID_ARGUMENT for an oversized payload, and
  // FAILED_PRECONDITION before Start() or after Stop(). An empty mesh is
  // OK, with both lists empty.
  absl::StatusOr<BroadcastResult> Broadcast(absl::string_view payload,
                                            absl::Time deadline = absl::InfiniteFuture());

  // Zero-copy (mesh/loan.h). A writable buffer of `bytes` in this node's
  // shared-memory pool, to fill in place and then pass to Send, Broadcast
  // or Publisher::Publish. Waits for pool memory until `deadline` (the pool
  // is full while receivers hold its blocks): RESOURCE_EXHAUSTED with a
  // past deadline, DEADLINE_EXCEEDED after waiting, naming who holds what;
  // INVALID_ARGUMENT over max_message_bytes. Any thread; also before
  // Start().
  absl::StatusOr<mesh::Loan> Loan(size_t bytes, absl::Time deadline = absl::InfiniteFuture());
  // Sends the loaned buffer to `peer` without copying it: the ring carries
  // a 32-byte reference and the peer reads the payload in place. On
  // success `loan` is left empty; on error it is untouched (send it again
  // or drop it). Errors as Send, and RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED
  // when `peer` holds its whole quota of this pool (pool.peer_quota_bytes)
  // and does not release in time; INVALID_ARGUMENT for an empty loan.
  absl::Status Send(absl::string_view peer, mesh::Loan&& loan, absl::Time deadline = absl::InfiniteFuture());
  // Broadcasts the loaned buffer: every peer gets a reference to the same
  // bytes (written once). `loan` is left empty unless no peer was reached.
  absl::StatusOr<BroadcastResult> Broadcast(mesh::Loan&& loan, absl::Time deadline = absl::InfiniteFuture());

  // Receiving. With a message handler set, every message is passed to it on
  // the receive thread. Without one, messages queue (bounded; a full queue
  // stops draining the rings, which backpressures the senders) for Receive.
  absl::Status SetMessageHandler(std::function<void(const MessageView&)> handler);
  // Takes the next queued message, waiting until `deadline`:
  // DEADLINE_EXCEEDED if none came, FAILED_PRECONDITION with a handler set,
  // CANCELLED once the node is stopped.
  absl::StatusOr<Message> Receive(absl::Time deadline = absl::InfiniteFuture());
  // A descriptor (borrowed; owned by the node) that is readable while
  // Receive has a message queued: put it in your own poll/epoll loop.
  int receive_fd() const;

  // Called on the node's events thread (one handler at a time, with no lock
  // of the node held, a peer's up before its down) when a link to a peer
  // comes up or goes down (including when the peer process dies).
  absl::Status SetPeerUpHandler(std::function<void(const PeerInfo&)> handler);
  absl::Status SetPeerDownHandler(std::function<void(const PeerInfo&)> handler);
  // Called on the node's events thread (as the up/down handlers) when a linked peer's process stops running for
  // config().unresponsive_after_ms (default 2 s; SIGSTOP, a debugger, a hang):
  // `unresponsive` true; and when it runs again: false. The link stays up
  // meanwhile: sends fill its ring, then fail with RESOURCE_EXHAUSTED or
  // DEADLINE_EXCEEDED; after it resumes it reads what was queued.
  absl::Status SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool unresponsive)> handler);

  // Names of the linked peers currently reported unresponsive, sorted.
  std::vector<std::string> UnresponsivePeers() const;

  // Names of the peers currently linked, sorted.
  std::vector<std::string> Peers() const;
  // Waits until at least `n` peers are linked: DEADLINE_EXCEEDED otherwise.
  absl::Status WaitForPeers(size_t n, absl::Time deadline);

  // Topics (mesh/topic.h). These may be called before or after Start().
  // A publisher of `topic` (validated: INVALID_ARGUMENT names what is wrong
  // with it; also for history over 4096).
  absl::StatusOr<std::unique_ptr<Publisher>> Advertise(absl::string_view topic, PublisherOptions options = {});
  // A subscription to `pattern` whose messages go to `handler` (on the
  // receive thread; MessageView::topic says which topic).
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(absl::string_view pattern,
                                                          std::function<void(const MessageView&)> handler,
                                                          SubscribeOptions options = {});
  // The pull form: messages queue for Subscription::Receive.
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(absl::string_view pattern, SubscribeOptions options = {});

  // Services (mesh/rpc.h). Serve may be called before or after Start();
  // ALREADY_EXISTS if this node already serves `service`.
  absl::StatusOr<std::unique_ptr<ServiceRegistration>> Serve(absl::string_view service, ServiceHandler handler);
  // Calls `service` on a linked node that serves it and waits for the
  // response until `deadline` (errors: see mesh/rpc.h).
  absl::StatusOr<std::string> Call(absl::string_view service, absl::string_view request, absl::Time deadline,
                                   CallOptions options = {});
  // The linked nodes that serve `service`, sorted.
  std::vector<std::string> Servers(absl::string_view service) const;

  // The topology as this node sees it; with `local_only` false, gathers every
  // member's links over gRPC (members that do not answer in time leave their
  // links marked unconfirmed).
  absl::StatusOr<mesh::v1::TopologySnapshot> Topology(bool local_only = false);

 private:
  explicit Node(std::unique_ptr<NodeImpl> impl);
  std::unique_ptr<NodeImpl> impl_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_NODE_H_
