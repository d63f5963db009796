// mesh::Node (the public facade) and NodeImpl's lifecycle. The data path
// is in node_data.cc; membership, the control thread and the control-plane
// backends in node_control.cc.
#include "mesh/node.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/eventfd.h"
#include "base/status_macros.h"
#include "mesh/base/os.h"
#include "mesh/config.h"
#include "mesh/control/services.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/node_impl.h"
#include "mesh/pubsub/topic_name.h"

namespace mesh {
namespace {

// Deadlines of link setup.
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(2);
// The health thread's period, how often a node bumps its heartbeats and
// checks its peers', is this fraction of unresponsive_after_ms, at most
// kMaxHeartbeatInterval. Each tick wakes the node: about 0.1 ms of CPU on a
// busy 2-core machine, so the default (every 500 ms) costs an idle node
// ~0.02% of a core.
constexpr int kBeatsPerUnresponsive = 4;
constexpr absl::Duration kMaxHeartbeatInterval = absl::Seconds(10);
// How long Stop() gives the members to take our Leave.
constexpr absl::Duration kLeaveTimeout = absl::Milliseconds(300);
// Start()'s own round over the seeds: each gets this long to answer (the
// control thread then retries with 1 s): long enough for a loaded machine's
// first connection, so that a seed saying "name taken" fails Start().
constexpr absl::Duration kStartJoinTimeout = absl::Seconds(3);

uint64_t RandomId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) ^ rd();
  return id;
}

}  // namespace

// ---------------------------------------------------------------------------
// Node: a thin shell over NodeImpl.

Node::Node(std::unique_ptr<NodeImpl> impl) : impl_(std::move(impl)) {}
Node::~Node() { impl_->Stop(); }

absl::StatusOr<std::unique_ptr<Node>> Node::Create(const mesh::v1::NodeConfig& config) {
  SHMESH_ASSIGN_OR_RETURN(mesh::v1::NodeConfig resolved, ResolveConfig(config));
  return std::unique_ptr<Node>(new Node(std::make_unique<NodeImpl>(std::move(resolved))));
}

absl::StatusOr<std::unique_ptr<Node>> Node::CreateFromFile(const std::string& path) {
  SHMESH_ASSIGN_OR_RETURN(mesh::v1::NodeConfig config, LoadConfigFile(path));
  return Create(config);
}

absl::Status Node::Start() { return impl_->Start(); }
void Node::Stop() { impl_->Stop(); }
absl::Status Node::RestartControlServer() { return impl_->RestartControlServer(); }
const std::string& Node::name() const { return impl_->name(); }
uint64_t Node::id() const { return impl_->id(); }
std::string Node::grpc_address() const { return impl_->grpc_address(); }
const mesh::v1::NodeConfig& Node::config() const { return impl_->config(); }
absl::Status Node::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return impl_->SendApi(peer, payload, deadline);
}
absl::StatusOr<size_t> Node::SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                       absl::Time deadline) {
  return impl_->SendBatch(peer, payloads, deadline);
}
absl::StatusOr<BroadcastResult> Node::Broadcast(absl::string_view payload, absl::Time deadline) {
  return impl_->BroadcastApi(payload, deadline);
}
absl::Status Node::SetMessageHandler(std::function<void(const MessageView&)> handler) {
  return impl_->SetMessageHandler(std::move(handler));
}
absl::StatusOr<Message> Node::Receive(absl::Time deadline) { return impl_->Receive(deadline); }
int Node::receive_fd() const { return impl_->receive_fd(); }
absl::Status Node::SetPeerUpHandler(std::function<void(const PeerInfo&)> h) {
  return impl_->SetPeerUpHandler(std::move(h));
}
absl::Status Node::SetPeerDownHandler(std::function<void(const PeerInfo&)> h) {
  return impl_->SetPeerDownHandler(std::move(h));
}
absl::Status Node::SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool)> h) {
  return impl_->SetPeerUnresponsiveHandler(std::move(h));
}
std::vector<std::string> Node::Peers() const { return impl_->Peers(); }
std::vector<std::string> Node::UnresponsivePeers() const { return impl_->UnresponsivePeers(); }
absl::Status Node::WaitForPeers(size_t n, absl::Time deadline) { return impl_->WaitForPeers(n, deadline); }
absl::StatusOr<mesh::v1::TopologySnapshot> Node::Topology(bool local_only) { return impl_->Topology(local_only); }
absl::StatusOr<std::unique_ptr<Publisher>> Node::Advertise(absl::string_view topic, PublisherOptions options) {
  return impl_->Advertise(topic, std::move(options));
}
absl::StatusOr<std::unique_ptr<Subscription>> Node::Subscribe(absl::string_view pattern,
                                                              std::function<void(const MessageView&)> handler,
                                                              SubscribeOptions options) {
  if (!handler) {
    return absl::InvalidArgumentError(
        absl::StrCat("Subscribe(", pattern, "): the handler is empty; use the pull form without one"));
  }
  return impl_->Subscribe(pattern, std::move(handler), options);
}
absl::StatusOr<std::unique_ptr<Subscription>> Node::Subscribe(absl::string_view pattern, SubscribeOptions options) {
  return impl_->Subscribe(pattern, nullptr, options);
}
absl::StatusOr<std::unique_ptr<ServiceRegistration>> Node::Serve(absl::string_view service, ServiceHandler handler) {
  return impl_->Serve(service, std::move(handler));
}
absl::StatusOr<std::string> Node::Call(absl::string_view service, absl::string_view request, absl::Time deadline,
                                       CallOptions options) {
  return impl_->Call(service, request, deadline, options);
}
std::vector<std::string> Node::Servers(absl::string_view service) const { return impl_->Servers(service); }

absl::StatusOr<mesh::Loan> Node::Loan(size_t bytes, absl::Time deadline) { return impl_->NewLoan(bytes, deadline); }
absl::Status Node::Send(absl::string_view peer, mesh::Loan&& loan, absl::Time deadline) {
  return impl_->SendLoan(peer, &loan, deadline);
}
absl::StatusOr<BroadcastResult> Node::Broadcast(mesh::Loan&& loan, absl::Time deadline) {
  return impl_->BroadcastLoan(&loan, deadline);
}

// ---------------------------------------------------------------------------
// NodeImpl: lifecycle.

NodeImpl::NodeImpl(mesh::v1::NodeConfig resolved_config)
    : config_(std::move(resolved_config)),
      id_(RandomId()),
      log_(config_.name(), config_.log_level()),
      link_path_(absl::StrCat(config_.run_dir(), "/", config_.name(), ".link")),
      events_("mesh-events"),
      pool_(pool::SendPool::Create(pool::PoolOptions{config_.name(), config_.pool().limit_bytes(),
                                                     config_.pool().peer_quota_bytes(),
                                                     config_.pool().retain_bytes()})),
      inboxes_(pool::Inboxes::Options{config_.pool().max_peer_segments(),
                                      [this] {
                                        // Set in Start(), before any link (and so any pooled
                                        // payload) exists.
                                        if (receiver_ != nullptr) receiver_->Wake();
                                      }}),
      sender_(config_.name(), config_.max_message_bytes(), &links_,
              Sender::Hooks{[this](absl::string_view what) { return CheckRunning(what); },
                            [this](const std::shared_ptr<Transport>& link, absl::string_view why) {
                              LinkFailed(link, why);
                            }},
              pool_.get(), config_.pool().threshold_bytes()),
      interest_(&links_, &log_),
      control_server_(config_.grpc_listen(),
                      std::vector<uint32_t>(config_.allowed_peer_uids().begin(), config_.allowed_peer_uids().end()),
                      [this] { return control::MakeServices(control::Backends{this, this, this, this}); }, &log_) {
  MakeTopicsAndServices();
}

NodeImpl::~NodeImpl() { Stop(); }

std::string NodeImpl::grpc_address() const {
  absl::MutexLock lock(&address_mu_);
  return grpc_address_;
}

absl::Duration NodeImpl::HeartbeatInterval() const {
  return std::min(absl::Milliseconds(config_.unresponsive_after_ms()) / kBeatsPerUnresponsive, kMaxHeartbeatInterval);
}

LinkParams NodeImpl::MakeLinkParams() const {
  LinkParams p;
  p.heartbeat_interval = HeartbeatInterval();
  p.name = name();
  p.id = id_;
  p.ring_capacity_bytes = config_.ring_capacity_bytes();
  p.max_peer_ring_bytes = uint64_t{1} << 30;
  p.allowed_uids.assign(config_.allowed_peer_uids().begin(), config_.allowed_peer_uids().end());
  return p;
}

// Start order: every descriptor and component first (so running out of
// descriptors fails Start() instead of leaving a thread that cannot work),
// the link socket (the name lock) before the gRPC server, one synchronous
// round over the seeds (a taken name fails Start), then the threads.
absl::Status NodeImpl::Start() {
  if (started_.exchange(true, std::memory_order_acq_rel)) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", name(), " was already started; create a new Node to start again"));
  }
  auto fail = [this](const absl::Status& s) {
    return absl::Status(s.code(), absl::StrCat("node ", name(), ": ", s.message()));
  };
  SHMESH_RETURN_IF_ERROR(EnsurePrivateDir(config_.run_dir()));
  {
    // The receiver and, without a message handler, the queue it fills (which
    // wakes the receiver when it makes room in a full queue).
    absl::StatusOr<std::unique_ptr<ReceiveQueue>> queue = ReceiveQueue::Create(name(), {});
    if (!queue.ok()) return fail(queue.status());
    queue_ = std::move(*queue);
    Receiver::Options options;
    options.wait = config_.wait();
    options.max_message_bytes = config_.max_message_bytes();
    Receiver::Hooks hooks;
    hooks.message_handler = message_handler_;
    hooks.queue = queue_.get();
    hooks.router = this;
    hooks.inboxes = &inboxes_;
    hooks.pool = pool_.get();
    hooks.valid_topic = [](absl::string_view topic) { return pubsub::ValidateTopicName(topic); };
    hooks.link_failed = [this](const std::shared_ptr<Transport>& link, absl::string_view why) {
      LinkFailed(link, why);
    };
    hooks.peer_left = [this](const Transport& link) { membership_->MarkLeft(link.peer().id()); };
    absl::StatusOr<std::unique_ptr<Receiver>> receiver = Receiver::Create(options, std::move(hooks), &links_, &log_);
    if (!receiver.ok()) return fail(receiver.status());
    receiver_ = std::move(*receiver);
    topics_->SetResumeFd(receiver_->wake_fd());
    queue_->set_resume_fd(receiver_->wake_fd());
  }
  {
    health::HealthMonitor::Options options;
    options.interval = HeartbeatInterval();
    options.unresponsive_after = absl::Milliseconds(config_.unresponsive_after_ms());
    absl::StatusOr<std::unique_ptr<health::HealthMonitor>> health = health::HealthMonitor::Create(
        options, &links_, [this](const std::shared_ptr<Transport>& link, bool unresponsive) {
          OnLivenessChange(link, unresponsive);
        });
    if (!health.ok()) return fail(health.status());
    health_ = std::move(*health);
  }
  {
    Membership::Options options;
    options.self_name = name();
    options.self_id = id_;
    options.seeds.assign(config_.seeds().begin(), config_.seeds().end());
    options.allowed_uids.assign(config_.allowed_peer_uids().begin(), config_.allowed_peer_uids().end());
    Membership::Hooks hooks;
    hooks.self = [this] { return SelfMember(); };
    hooks.linked = [this](const std::string& peer) { return links_.Contains(peer); };
    hooks.dial = [this](const mesh::v1::Member& member, absl::Time deadline) -> absl::Status {
      absl::StatusOr<std::shared_ptr<Link>> link = link_setup_->Dial(member, deadline);
      if (!link.ok()) return link.status();
      InstallLink(std::move(*link));
      return absl::OkStatus();
    };
    hooks.on_change = [this] { NotifyChange(); };
    absl::StatusOr<std::unique_ptr<Membership>> membership = Membership::Create(options, std::move(hooks), &log_);
    if (!membership.ok()) return fail(membership.status());
    membership_ = std::move(*membership);
  }
  {
    LinkSetup::Hooks hooks;
    hooks.params = [this] { return MakeLinkParams(); };
    hooks.is_member_pid = [this](pid_t pid) { return membership_->IsMemberPid(pid); };
    hooks.lookup = [this](const std::string& peer, uint64_t peer_id) { return membership_->Lookup(peer, peer_id); };
    hooks.install = [this](std::shared_ptr<Link> link) { InstallLink(std::move(link)); };
    absl::StatusOr<std::unique_ptr<LinkSetup>> setup =
        LinkSetup::Listen(link_path_, std::move(hooks), kHandshakeTimeout, &log_);
    if (!setup.ok()) return fail(setup.status());
    link_setup_ = std::move(*setup);
  }
  if (absl::Status started = events_.Start(); !started.ok()) return fail(started);
  // We hold the name now: a gRPC socket file left at our path by a killed
  // predecessor is stale, and the control server replaces it.
  if (absl::Status served = control_server_.Start(); !served.ok()) {
    link_setup_.reset();
    return fail(served);
  }
  {
    absl::MutexLock lock(&address_mu_);
    grpc_address_ = control_server_.address();
  }
  receiver_->Start();
  link_setup_->Start();
  health_->Start();
  log_.Info("started: id %016x, pid %d, grpc %s, link socket %s, %d seed(s)", id_, ::getpid(), grpc_address(),
            link_path_, config_.seeds_size());
  // One round over the seeds before returning: a seed that says our name is
  // taken by a live node fails Start(). Unreachable seeds are retried by the
  // control thread.
  if (absl::Status joined = membership_->JoinSeeds(kStartJoinTimeout); absl::IsAlreadyExists(joined)) {
    log_.Error("%s", joined.message());
    Stop();
    return fail(joined);
  }
  membership_->Start();
  return absl::OkStatus();
}

// Stop order: tell the members (Goodbye on every link, Leave over gRPC to
// all, bounded, no thread per member), stop serving, stop the threads, run
// the events already posted, close the links, remove the files.
void NodeImpl::Stop() {
  if (!started_.load(std::memory_order_acquire) || stopping_.exchange(true, std::memory_order_acq_rel)) return;
  NotifyChange();  // watch streams end ("node is stopping")
  links_.Interrupt();
  if (queue_ != nullptr) queue_->Close();
  // The receive thread first: our last messages were written before this,
  // and the peers drain them when the Goodbye arrives.
  if (receiver_ != nullptr) receiver_->Stop();
  // No handler runs any more: calls in flight end (CANCELLED), publishers
  // and subscriptions are cut loose (they fail from now on).
  rpc_->Detach();
  topics_->Detach();
  mesh::v1::LinkControl goodbye;
  goodbye.mutable_goodbye()->set_reason("shutdown");
  for (const auto& link : links_.Live()) (void)link->SendControl(goodbye);
  // Leave to every member (async, bounded), then the control thread.
  if (membership_ != nullptr) membership_->Stop(kLeaveTimeout);
  control_server_.Stop();
  if (link_setup_ != nullptr) link_setup_->Stop();
  if (health_ != nullptr) health_->Stop();
  events_.Stop();
  for (const auto& link : links_.Close()) (void)link->MarkDown();
  // Peers hold nothing of the pool any more (loans the application still
  // holds stay valid; their blocks are freed when dropped).
  pool_->AllLinksGone();
  // Removes the link socket (only ours: Listen failed without touching a
  // file another node holds).
  link_setup_.reset();
  log_.Info("stopped");
}

absl::Status NodeImpl::RestartControlServer() {
  if (!started_.load(std::memory_order_acquire) || stopping()) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", name(), " is not running; RestartControlServer() needs a started node"));
  }
  absl::Status restarted = control_server_.Restart();
  if (!restarted.ok()) {
    return absl::Status(restarted.code(), absl::StrCat("node ", name(), ": ", restarted.message()));
  }
  log_.Info("gRPC server restarted on %s; links untouched", grpc_address());
  return absl::OkStatus();
}

bool NodeImpl::stopping() const { return stopping_.load(std::memory_order_acquire); }

absl::Status NodeImpl::CheckRunning(absl::string_view what) const {
  // acquire: pairs with the acq_rel exchange in Start.
  if (!started_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError(absl::StrCat("node ", name(), " is not started; call Start() before ", what));
  }
  if (stopping()) return absl::FailedPreconditionError(absl::StrCat("node ", name(), " is stopped"));
  return absl::OkStatus();
}

absl::Status NodeImpl::CheckNotStarted(absl::string_view what) const {
  // acquire: pairs with the acq_rel exchange in Start.
  if (started_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError(
        absl::StrCat("node ", name(), " is already started; call ", what, " before Start()"));
  }
  return absl::OkStatus();
}

}  // namespace mesh
