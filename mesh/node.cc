// mesh::Node (the public facade) and NodeImpl's lifecycle and data path.
// Membership, the control thread and the control-plane backends are in
// node_control.cc.
#include "mesh/node.h"

#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fdpass/status_macros.h"
#include "mesh/config.h"
#include "mesh/control/services.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/node_impl.h"

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
// Broadcast: how long one wait for room in one full peer's ring may take
// before the next full peer gets its turn.
constexpr absl::Duration kBroadcastSlice = absl::Milliseconds(1);
// How long Stop() gives the members to take our Leave.
constexpr absl::Duration kLeaveTimeout = absl::Milliseconds(300);

uint64_t RandomId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) ^ rd();
  return id;
}

PeerInfo PeerInfoOf(const Transport& link) {
  return PeerInfo{link.peer_name(), link.peer().id(), link.peer().pid(), link.handshake()};
}

Roster::Options RosterOptions(const mesh::v1::NodeConfig& config, uint64_t id) {
  Roster::Options o;
  o.self_name = config.name();
  o.self_id = id;
  o.self_pid = ::getpid();
  o.allowed_uids.assign(config.allowed_peer_uids().begin(), config.allowed_peer_uids().end());
  o.process_alive = [](pid_t pid) { return ProcessAlive(pid); };
  return o;
}

Reconciler::Options ReconcilerOptions(const mesh::v1::NodeConfig& config) {
  Reconciler::Options o;
  o.self_name = config.name();
  o.seeds.assign(config.seeds().begin(), config.seeds().end());
  return o;
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

// ---------------------------------------------------------------------------
// NodeImpl: lifecycle.

NodeImpl::NodeImpl(mesh::v1::NodeConfig resolved_config)
    : config_(std::move(resolved_config)),
      id_(RandomId()),
      log_(config_.name(), config_.log_level()),
      link_path_(absl::StrCat(config_.run_dir(), "/", config_.name(), ".link")),
      events_("mesh-events"),
      control_server_(config_.grpc_listen(),
                      std::vector<uint32_t>(config_.allowed_peer_uids().begin(), config_.allowed_peer_uids().end()),
                      [this] { return control::MakeServices(control::Backends{this, this, this}); }, &log_),
      roster_(RosterOptions(config_, id_)),
      reconciler_(ReconcilerOptions(config_)) {}

NodeImpl::~NodeImpl() { Stop(); }

std::string NodeImpl::grpc_address() const {
  absl::MutexLock lock(&mu_);
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
  SHMESH_ASSIGN_OR_RETURN(control_wake_, MakeEventFd());
  absl::StatusOr<std::unique_ptr<Receiver>> receiver;
  {
    // The queue wakes the receiver when it makes room: the receiver's
    // eventfd is made first, so the queue is given it after both exist.
    Receiver::Hooks hooks;
    hooks.message_handler = message_handler_;
    hooks.link_failed = [this](const std::shared_ptr<Transport>& link, absl::string_view why) {
      LinkFailed(link, why);
    };
    // Without a handler the receiver needs the queue: made here, then told
    // the receiver's wake-up descriptor.
    absl::StatusOr<fdpass::UniqueFd> resume = MakeEventFd();
    if (!resume.ok()) return fail(resume.status());
    Receiver::Options options;
    options.wait = config_.wait();
    options.max_message_bytes = config_.max_message_bytes();
    std::unique_ptr<ReceiveQueue>* queue = &queue_;
    absl::StatusOr<std::unique_ptr<ReceiveQueue>> made = ReceiveQueue::Create(name(), {}, -1);
    if (!made.ok()) return fail(made.status());
    *queue = std::move(*made);
    hooks.queue = queue_.get();
    receiver = Receiver::Create(options, std::move(hooks), &links_, &log_);
    if (!receiver.ok()) return fail(receiver.status());
    receiver_ = std::move(*receiver);
    // Recreate the queue with the receiver's wake-up descriptor now that it
    // exists (nothing was queued yet).
    made = ReceiveQueue::Create(name(), {}, receiver_->wake_fd());
    if (!made.ok()) return fail(made.status());
    queue_.swap(*made);
    receiver_.reset();
    Receiver::Hooks again;
    again.message_handler = message_handler_;
    again.queue = queue_.get();
    again.link_failed = [this](const std::shared_ptr<Transport>& link, absl::string_view why) {
      LinkFailed(link, why);
    };
    receiver = Receiver::Create(options, std::move(again), &links_, &log_);
    if (!receiver.ok()) return fail(receiver.status());
    receiver_ = std::move(*receiver);
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
    LinkSetup::Hooks hooks;
    hooks.params = [this] { return MakeLinkParams(); };
    hooks.is_member_pid = [this](pid_t pid) {
      absl::MutexLock lock(&mu_);
      return roster_.IsMemberPid(pid);
    };
    hooks.lookup = [this](const std::string& peer, uint64_t peer_id) {
      absl::MutexLock lock(&mu_);
      return roster_.Lookup(peer, peer_id);
    };
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
    absl::MutexLock lock(&mu_);
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
  if (!config_.seeds().empty()) {
    absl::Status joined = JoinSeeds();
    if (absl::IsAlreadyExists(joined)) {
      log_.Error("%s", joined.message());
      Stop();
      return fail(joined);
    }
  }
  control_thread_ = std::thread([this] { ControlLoop(); });
  return absl::OkStatus();
}

// Stop order: tell the members (Goodbye on every link, Leave over gRPC to
// all, bounded, no thread per member), stop serving, stop the threads, run
// the events already posted, close the links, remove the files.
void NodeImpl::Stop() {
  if (!started_.load(std::memory_order_acquire) || stopping_.exchange(true, std::memory_order_acq_rel)) return;
  std::vector<std::string> targets;
  {
    absl::MutexLock lock(&mu_);
    for (const mesh::v1::Member& m : roster_.Live([](const std::string&) { return false; })) {
      targets.push_back(m.grpc_address());
    }
    BumpLocked();
  }
  NotifyChange();
  links_.Interrupt();
  if (queue_ != nullptr) queue_->Close();
  // The receive thread first: our last messages were written before this,
  // and the peers drain them when the Goodbye arrives.
  if (receiver_ != nullptr) receiver_->Stop();
  mesh::v1::LinkControl goodbye;
  goodbye.mutable_goodbye()->set_reason("shutdown");
  for (const auto& link : links_.Live()) (void)link->SendControl(goodbye);
  if (!targets.empty()) {
    mesh::v1::LeaveRequest req;
    req.set_name(name());
    req.set_id(id_);
    (void)peers_.LeaveAll(targets, req, absl::Now() + kLeaveTimeout);
  }
  control_server_.Stop();
  if (control_wake_) SignalEventFd(control_wake_.get());
  if (control_thread_.joinable()) control_thread_.join();
  if (link_setup_ != nullptr) link_setup_->Stop();
  if (health_ != nullptr) health_->Stop();
  events_.Stop();
  for (const auto& link : links_.Close()) (void)link->MarkDown();
  {
    absl::MutexLock lock(&mu_);
    roster_.Clear();
    BumpLocked();
  }
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

// ---------------------------------------------------------------------------
// Sending.

absl::Status NodeImpl::CheckSize(size_t bytes) const {
  if (bytes > config_.max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", bytes, " bytes exceeds max_message_bytes (",
                                                   config_.max_message_bytes(), "); split it or raise the limit"));
  }
  return absl::OkStatus();
}

std::shared_ptr<Transport> NodeImpl::FindLink(Caller caller, absl::string_view peer, absl::Status* why) {
  std::shared_ptr<Transport> link = links_.Find(peer);
  if (ABSL_PREDICT_TRUE(link != nullptr)) return link;
  if (absl::Status running = CheckRunning("sending"); !running.ok()) {
    *why = running;
  } else if (peer == name()) {
    *why = absl::InvalidArgumentError(
        absl::StrCat("cannot send to '", peer, "': that is this node itself; send to another node"));
  } else if (caller == Caller::kApi) {
    *why = absl::NotFoundError(absl::StrCat("no link from ", name(), " to peer '", peer,
                                            "'; check Peers() or wait for it with WaitForPeers()"));
  } else {
    const std::vector<std::string> names = links_.LiveNames();
    *why = absl::NotFoundError(absl::StrCat("node ", name(), " has no link to peer '", peer, "' (its peers: ",
                                            names.empty() ? "none" : absl::StrJoin(names, ", "),
                                            "); see `meshctl topology`"));
  }
  return nullptr;
}

absl::Status NodeImpl::ExplainSendError(const absl::Status& status, const Transport& link, size_t bytes) const {
  const std::string& peer = link.peer_name();
  const absl::Time silent_since = link.unresponsive_since();
  const std::string why =
      silent_since == absl::InfiniteFuture()
          ? absl::StrCat("'", peer, "' is not keeping up (slow consumer?)")
          : absl::StrCat("'", peer, "' is unresponsive: its process has not run for ",
                         absl::FormatDuration(absl::Trunc(absl::Now() - silent_since, absl::Milliseconds(1))),
                         " (stopped or hung?)");
  switch (status.code()) {
    case absl::StatusCode::kResourceExhausted:
      return absl::ResourceExhaustedError(absl::StrCat("ring to '", peer, "' is full (", bytes,
                                                       " bytes did not fit); ", why,
                                                       "; retry later or pass a deadline to wait"));
    case absl::StatusCode::kDeadlineExceeded:
      return absl::DeadlineExceededError(absl::StrCat("ring to '", peer, "' stayed full until the deadline; ", why));
    default:
      return status;
  }
}

void NodeImpl::NoteSendFailure(const std::shared_ptr<Transport>& link, const absl::Status& status) {
  // DATA_LOSS: the peer corrupted the ring we write into. UNAVAILABLE: the
  // link is down already (then this is a no-op), or the peer hung up its
  // doorbell while we waited for room. Either way the link is finished.
  if (absl::IsDataLoss(status) || absl::IsUnavailable(status)) {
    LinkFailed(link, absl::StrCat("send failed: ", status.message()));
  }
}

// The send path, step by step: size check; LinkTable::Find (per-thread
// cache, no lock while the link set is unchanged); Transport::SendFrame (the
// link's send mutex, the 16-byte envelope and the payload copied into the
// ring, one tail store; a doorbell write only if the peer's receive thread
// sleeps). No clock is read and nothing is allocated unless the ring is
// full or something fails.
absl::Status NodeImpl::SendFrom(Caller caller, absl::string_view peer, absl::string_view payload,
                                absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  absl::Status why;
  std::shared_ptr<Transport> link = FindLink(caller, peer, &why);
  if (link == nullptr) return why;
  absl::Status s = link->SendFrame(kMessagePrefix, payload, deadline);
  if (ABSL_PREDICT_TRUE(s.ok())) return s;
  NoteSendFailure(link, s);
  return ExplainSendError(s, *link, payload.size());
}

absl::Status NodeImpl::SendApi(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return SendFrom(Caller::kApi, peer, payload, deadline);
}

absl::Status NodeImpl::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return SendFrom(Caller::kRemote, peer, payload, deadline);
}

absl::StatusOr<size_t> NodeImpl::SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                           absl::Time deadline) {
  for (absl::string_view payload : payloads) SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  absl::Status why;
  std::shared_ptr<Transport> link = FindLink(Caller::kApi, peer, &why);
  if (link == nullptr) return why;
  if (payloads.empty()) return 0;
  size_t written = 0;
  absl::Status s = link->SendFrames(kMessagePrefix, payloads, deadline, &written);
  if (!s.ok()) NoteSendFailure(link, s);
  if (written > 0 || s.ok()) return written;
  return ExplainSendError(s, *link, payloads[0].size());
}

absl::StatusOr<BroadcastResult> NodeImpl::BroadcastApi(absl::string_view payload, absl::Time deadline) {
  return BroadcastFrom(Caller::kApi, payload, deadline);
}

absl::StatusOr<control::BroadcastOutcome> NodeImpl::Broadcast(absl::string_view payload, absl::Time deadline) {
  SHMESH_ASSIGN_OR_RETURN(BroadcastResult result, BroadcastFrom(Caller::kRemote, payload, deadline));
  return control::BroadcastOutcome{std::move(result.delivered), std::move(result.not_reached)};
}

// Broadcast, step by step: (1) one pass writes to every peer whose ring
// has room, without waiting; (2) the peers left (full rings) are retried
// in turn, each for at most kBroadcastSlice at a time, until each is
// written or `deadline` passes; peers reported unresponsive are not waited
// for (their process does not run: it will not make room). So one full or
// stopped peer never delays the others' copies, and the call returns at
// `deadline` at the latest.
absl::StatusOr<BroadcastResult> NodeImpl::BroadcastFrom(Caller caller, absl::string_view payload,
                                                        absl::Time deadline) {
  SHMESH_RETURN_IF_ERROR(CheckRunning("Broadcast()"));
  SHMESH_RETURN_IF_ERROR(CheckSize(payload.size()));
  const std::vector<std::shared_ptr<Transport>> links = links_.Live();
  BroadcastResult result;
  auto give_up = [&](const std::shared_ptr<Transport>& link, const absl::Status& s) {
    NoteSendFailure(link, s);
    result.not_reached.emplace_back(link->peer_name(), ExplainSendError(s, *link, payload.size()));
  };
  std::vector<std::shared_ptr<Transport>> full;
  for (const auto& link : links) {
    absl::Status s = link->SendFrame(kMessagePrefix, payload, absl::InfinitePast());
    if (s.ok()) {
      result.delivered.push_back(link->peer_name());
    } else if (absl::IsResourceExhausted(s) && deadline > absl::Now() && !link->unresponsive()) {
      full.push_back(link);
    } else {
      give_up(link, s);
    }
  }
  while (!full.empty()) {
    std::vector<std::shared_ptr<Transport>> still_full;
    for (const auto& link : full) {
      const absl::Time now = absl::Now();
      absl::Status s = link->SendFrame(kMessagePrefix, payload, std::min(deadline, now + kBroadcastSlice));
      if (s.ok()) {
        result.delivered.push_back(link->peer_name());
      } else if ((absl::IsDeadlineExceeded(s) || absl::IsResourceExhausted(s)) && absl::Now() < deadline &&
                 !link->unresponsive()) {
        still_full.push_back(link);
      } else {
        give_up(link, absl::IsResourceExhausted(s) ? absl::DeadlineExceededError(s.message()) : s);
      }
    }
    full.swap(still_full);
  }
  if (result.delivered.empty() && !result.not_reached.empty()) {
    std::vector<std::string> why;
    for (const auto& [peer, status] : result.not_reached) why.push_back(status.ToString());
    return absl::Status(result.not_reached.front().second.code(),
                        absl::StrCat("broadcast reached none of ", result.not_reached.size(),
                                     " peer(s): ", absl::StrJoin(why, "; ")));
  }
  return result;
}

// ---------------------------------------------------------------------------
// Receiving and handlers.

absl::Status NodeImpl::SetMessageHandler(std::function<void(const MessageView&)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetMessageHandler()"));
  message_handler_ = std::move(handler);
  return absl::OkStatus();
}
absl::Status NodeImpl::SetPeerUpHandler(std::function<void(const PeerInfo&)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetPeerUpHandler()"));
  peer_up_handler_ = std::move(handler);
  return absl::OkStatus();
}
absl::Status NodeImpl::SetPeerDownHandler(std::function<void(const PeerInfo&)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetPeerDownHandler()"));
  peer_down_handler_ = std::move(handler);
  return absl::OkStatus();
}
absl::Status NodeImpl::SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool)> handler) {
  SHMESH_RETURN_IF_ERROR(CheckNotStarted("SetPeerUnresponsiveHandler()"));
  peer_unresponsive_handler_ = std::move(handler);
  return absl::OkStatus();
}

absl::StatusOr<Message> NodeImpl::Receive(absl::Time deadline) {
  if (message_handler_) {
    return absl::FailedPreconditionError("Receive() called on a node with a message handler; use one or the other");
  }
  if (queue_ == nullptr) SHMESH_RETURN_IF_ERROR(CheckRunning("Receive()"));
  return queue_->Receive(deadline);
}

int NodeImpl::receive_fd() const { return queue_ == nullptr ? -1 : queue_->ready_fd(); }

Receiver::Counters NodeImpl::ReceiveCounters() const {
  return receiver_ == nullptr ? Receiver::Counters{} : receiver_->counters();
}

std::vector<std::string> NodeImpl::Peers() const { return links_.LiveNames(); }

std::vector<std::string> NodeImpl::UnresponsivePeers() const {
  std::vector<std::string> out;
  for (const auto& link : links_.Live()) {
    if (link->unresponsive()) out.push_back(link->peer_name());
  }
  return out;
}

absl::Status NodeImpl::WaitForPeers(size_t n, absl::Time deadline) {
  if (links_.AwaitSize(n, deadline)) return absl::OkStatus();
  SHMESH_RETURN_IF_ERROR(CheckRunning("WaitForPeers()"));
  return absl::DeadlineExceededError(absl::StrCat("node ", name(), " has ", links_.size(), " peer(s), wanted ", n,
                                                  "; are the other nodes running and seeded to this mesh?"));
}

// ---------------------------------------------------------------------------
// Links coming and going.

void NodeImpl::InstallLink(std::shared_ptr<Transport> link) {
  const PeerInfo info = PeerInfoOf(*link);
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* member = roster_.Find(link->peer_name());
    if (stopping() || member == nullptr || member->member.id() != link->peer().id() ||
        links_.Contains(link->peer_name())) {
      log_.Debug("dropping redundant or stale link to %s", link->peer_name());
      (void)link->MarkDown();
      return;
    }
    (void)links_.Install(link);
    // Posted once the link is in the table (the handler may send to the
    // peer at once), under mu_, which LinkFailed takes to post the down
    // event: so this peer's down is posted after its up, and the events
    // thread runs them in that order.
    if (peer_up_handler_) events_.Post([this, info] { peer_up_handler_(info); });
    roster_.MarkLinked(link->peer_name(), absl::Now());
    reconciler_.OnLinkUp(link->peer_name());
    BumpLocked();
  }
  receiver_->Wake();
  NotifyChange();
  log_.Info("peer up: %s (pid %d)", info.name, info.pid);
}

void NodeImpl::LinkFailed(const std::shared_ptr<Transport>& link, absl::string_view why) {
  if (!link->MarkDown()) return;  // someone else noticed first
  const PeerInfo info = PeerInfoOf(*link);
  bool was_installed = false;
  {
    absl::MutexLock lock(&mu_);
    was_installed = links_.Remove(link);
    if (was_installed && peer_down_handler_) events_.Post([this, info] { peer_down_handler_(info); });
    DepartLocked(link->peer_name(), link->peer().id());
    BumpLocked();
  }
  if (was_installed) log_.Info("peer down: %s (pid %d): %s", info.name, info.pid, why);
  receiver_->Wake();
  WakeControl();
  NotifyChange();
}

void NodeImpl::OnLivenessChange(const std::shared_ptr<Transport>& link, bool unresponsive) {
  const absl::Time now = absl::Now();
  if (unresponsive) {
    log_.Warning(
        "peer %s (pid %d) is unresponsive: its process has not run for %s (stopped or hung?); sends to it "
        "queue in its ring until the ring is full, then fail",
        link->peer_name(), link->peer().pid(),
        absl::FormatDuration(absl::Trunc(now - link->unresponsive_since(), absl::Milliseconds(1))));
  } else {
    log_.Info("peer %s is responsive again", link->peer_name());
  }
  if (!peer_unresponsive_handler_) return;
  // Ordered with the up/down events by the queue: posted under mu_ with a
  // check that the link is still installed (so never after its down).
  absl::MutexLock lock(&mu_);
  if (link->down() || links_.Find(link->peer_name()) != link) return;
  const PeerInfo info = PeerInfoOf(*link);
  events_.Post([this, info, unresponsive] { peer_unresponsive_handler_(info, unresponsive); });
}

}  // namespace mesh
