#include "mesh/node.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fdpass/socket.h"
#include "fdpass/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "mesh/config.h"
#include "mesh/node_impl.h"
#include "mesh/os.h"
#include "mesh/services.h"

namespace mesh {
namespace {

using ::google::protobuf::util::TimeUtil;

// Receive queue bounds (Receive() without a handler). Past them the receive
// thread stops draining rings, which backpressures the senders.
constexpr size_t kMaxQueuedMessages = 65536;
constexpr size_t kMaxQueuedBytes = 64 << 20;
// Frames drained from one link before moving to the next (fairness).
constexpr size_t kDrainBatch = 256;
// Deadlines of control-plane calls between nodes.
constexpr absl::Duration kRpcTimeout = absl::Seconds(1);
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(2);
constexpr absl::Duration kMinBackoff = absl::Milliseconds(20);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);
// How long Send waits between checks that the link is still up.
constexpr absl::Duration kSendSlice = absl::Milliseconds(20);

// Tags in the epoll sets.
constexpr uint64_t kTagWake = 0;
constexpr uint64_t kTagListen = 1;

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

uint64_t RandomId() {
  std::random_device rd;
  uint64_t id = 0;
  while (id == 0) id = (uint64_t{rd()} << 32) ^ rd();
  return id;
}

absl::Duration Backoff(absl::Duration current) {
  return std::min(kMaxBackoff, std::max(kMinBackoff, current * 2));
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
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
  SHMESH_ASSIGN_OR_RETURN(mesh::v1::NodeConfig resolved, ResolveConfig(config, path));
  return std::unique_ptr<Node>(new Node(std::make_unique<NodeImpl>(std::move(resolved))));
}

absl::Status Node::Start() { return impl_->Start(); }
void Node::Stop() { impl_->Stop(); }
const std::string& Node::name() const { return impl_->name(); }
uint64_t Node::id() const { return impl_->id(); }
std::string Node::grpc_address() const { return impl_->grpc_address(); }
const mesh::v1::NodeConfig& Node::config() const { return impl_->config(); }
absl::Status Node::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return impl_->Send(peer, payload, deadline);
}
absl::StatusOr<std::vector<std::string>> Node::Broadcast(absl::string_view payload, absl::Time deadline) {
  return impl_->Broadcast(payload, deadline);
}
void Node::SetMessageHandler(std::function<void(const MessageView&)> handler) {
  impl_->SetMessageHandler(std::move(handler));
}
absl::StatusOr<Message> Node::Receive(absl::Time deadline) { return impl_->Receive(deadline); }
int Node::receive_fd() const { return impl_->receive_fd(); }
void Node::SetPeerUpHandler(std::function<void(const PeerInfo&)> h) { impl_->SetPeerUpHandler(std::move(h)); }
void Node::SetPeerDownHandler(std::function<void(const PeerInfo&)> h) { impl_->SetPeerDownHandler(std::move(h)); }
std::vector<std::string> Node::Peers() const { return impl_->Peers(); }
absl::Status Node::WaitForPeers(size_t n, absl::Time deadline) { return impl_->WaitForPeers(n, deadline); }
absl::StatusOr<mesh::v1::TopologySnapshot> Node::Topology(bool local_only) {
  return impl_->Topology(local_only);
}

// ---------------------------------------------------------------------------
// NodeImpl: lifecycle.

NodeImpl::NodeImpl(mesh::v1::NodeConfig resolved_config)
    : config_(std::move(resolved_config)),
      id_(RandomId()),
      log_(config_.name(), config_.log_level()) {
  link_path_ = absl::StrCat(config_.run_dir(), "/", config_.name(), ".link");
  if (absl::StartsWith(config_.grpc_listen(), "unix:")) {
    grpc_unix_path_ = config_.grpc_listen().substr(5);
  }
}

NodeImpl::~NodeImpl() { Stop(); }

std::string NodeImpl::grpc_address() const {
  absl::MutexLock lock(&mu_);
  return grpc_address_;
}

absl::Status NodeImpl::Start() {
  if (started_.exchange(true, std::memory_order_acq_rel)) {
    return absl::FailedPreconditionError(absl::StrCat("node ", name(), " was already started; create a new Node to start again"));
  }
  SHMESH_RETURN_IF_ERROR(EnsurePrivateDir(config_.run_dir()));
  SHMESH_ASSIGN_OR_RETURN(control_event_, MakeEventFd());
  SHMESH_ASSIGN_OR_RETURN(receive_wake_, MakeEventFd());
  SHMESH_ASSIGN_OR_RETURN(receive_event_, MakeEventFd());

  // The link socket doubles as the name lock in this run directory: binding
  // fails with ALREADY_EXISTS while a live node of this name listens, and a
  // stale file from a killed one is replaced.
  auto listen = fdpass::ListenSeqpacket(link_path_);
  if (!listen.ok()) {
    return absl::Status(listen.status().code(),
                        absl::StrCat("node ", name(), ": cannot listen on link socket ", link_path_, ": ",
                                     listen.status().message(),
                                     listen.status().code() == absl::StatusCode::kAlreadyExists
                                         ? " (is another node with this name running?)"
                                         : ""));
  }
  link_listen_ = std::move(*listen);
  // We hold the name now: a gRPC socket file left at our path by a killed
  // predecessor is stale.
  if (!grpc_unix_path_.empty()) RemoveFile(grpc_unix_path_);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  int selected_port = 0;
  builder.AddListeningPort(config_.grpc_listen(), grpc::InsecureServerCredentials(), &selected_port);
  services_ = MakeServices(this);
  for (auto& service : services_) builder.RegisterService(service.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) {
    link_listen_.reset();
    RemoveFile(link_path_);
    return absl::UnavailableError(absl::StrCat("node ", name(), ": gRPC server cannot listen on '", config_.grpc_listen(),
                                               "' (address in use or not allowed?); change grpc_listen"));
  }
  {
    absl::MutexLock lock(&mu_);
    grpc_address_ = config_.grpc_listen();
    if (grpc_unix_path_.empty()) {
      std::string host = config_.grpc_listen().substr(0, config_.grpc_listen().rfind(':'));
      grpc_address_ = absl::StrCat(host, ":", selected_port);
    }
    seeds_joined_ = config_.seeds().empty();
    next_seed_try_ = absl::Now();
    seed_backoff_ = kMinBackoff;
  }
  log_.Info("started: id %016x, pid %d, grpc %s, link socket %s, %d seed(s)", id_, ::getpid(), grpc_address(),
            link_path_, config_.seeds_size());
  receive_thread_ = std::thread([this] { ReceiveLoop(); });
  control_thread_ = std::thread([this] { ControlLoop(); });
  return absl::OkStatus();
}

void NodeImpl::Stop() {
  if (!started_.load(std::memory_order_acquire) || stopping_.exchange(true, std::memory_order_acq_rel)) return;
  // 1. Tell every member we leave (in parallel, bounded), so they drop us at
  //    once instead of waiting for the link EOF.
  std::vector<std::string> targets;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [n, e] : members_) targets.push_back(e.member.grpc_address());
    // Waiters (WaitForPeers, WaitForChange) re-check their conditions when
    // mu_ is released; the bump wakes watch streams too.
    BumpLocked();
  }
  { absl::MutexLock lock(&rq_mu_); }  // likewise for Receive()
  std::vector<std::thread> leavers;
  for (const std::string& target : targets) {
    leavers.emplace_back([this, target] {
      auto stub = DiscoveryStub(target);
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
      mesh::v1::LeaveRequest req;
      req.set_name(name());
      req.set_id(id_);
      mesh::v1::LeaveResponse resp;
      (void)stub->Leave(&ctx, req, &resp);
    });
  }
  for (auto& t : leavers) t.join();
  // 2. Stop serving: watch streams see the shutdown and end.
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(500));
  // 3. Stop our threads.
  if (control_event_) SignalEventFd(control_event_.get());
  if (receive_wake_) SignalEventFd(receive_wake_.get());
  if (control_thread_.joinable()) control_thread_.join();
  if (receive_thread_.joinable()) receive_thread_.join();
  if (server_) server_->Wait();
  // 4. Close every link: peers see EOF on the link sockets.
  std::map<std::string, std::shared_ptr<Link>> links;
  {
    absl::MutexLock lock(&mu_);
    links.swap(links_);
    members_.clear();
    BumpLocked();
  }
  for (auto& [n, link] : links) link->MarkDown();
  links.clear();
  {
    absl::MutexLock lock(&rq_mu_);
    rq_.clear();
    rq_bytes_ = 0;
  }
  // 5. Leave nothing on disk.
  link_listen_.reset();
  RemoveFile(link_path_);
  RemoveFile(grpc_unix_path_);
  log_.Info("stopped");
}

bool NodeImpl::stopping() const { return stopping_.load(std::memory_order_acquire); }

// ---------------------------------------------------------------------------
// Sending.

absl::Status NodeImpl::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  if (payload.size() > config_.max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", payload.size(), " bytes exceeds max_message_bytes (",
                                                   config_.max_message_bytes(), "); split it or raise the limit"));
  }
  std::shared_ptr<Link> link;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = links_.find(std::string(peer));
    if (it != links_.end()) link = it->second;
  }
  if (link == nullptr) {
    return absl::NotFoundError(absl::StrCat("no link from ", name(), " to peer '", peer,
                                            "'; check Peers() or wait for it with WaitForPeers()"));
  }
  // Wait in slices so a Send blocked on a full ring notices the link going
  // down (the peer died) and stops waiting.
  const bool wait = deadline > absl::Now();
  while (true) {
    absl::Time slice_end = wait ? std::min(deadline, absl::Now() + kSendSlice) : absl::InfinitePast();
    absl::Status s = link->Send(payload, slice_end);
    if (s.code() != absl::StatusCode::kResourceExhausted) return s;
    if (!wait) {
      return absl::ResourceExhaustedError(absl::StrCat("ring to '", peer, "' is full (", payload.size(),
                                                       " bytes did not fit); retry later or pass a deadline to wait"));
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(absl::StrCat("ring to '", peer, "' stayed full until the deadline; '", peer,
                                                      "' is not keeping up (stopped or slow?)"));
    }
  }
}

absl::StatusOr<std::vector<std::string>> NodeImpl::Broadcast(absl::string_view payload, absl::Time deadline) {
  std::vector<std::string> peers = Peers();
  std::vector<std::string> delivered;
  absl::Status first_error;
  for (const std::string& peer : peers) {
    absl::Status s = Send(peer, payload, deadline);
    if (s.ok()) {
      delivered.push_back(peer);
    } else if (first_error.ok()) {
      first_error = s;
    }
  }
  if (delivered.empty() && !first_error.ok()) return first_error;
  return delivered;
}

// ---------------------------------------------------------------------------
// Receiving.

void NodeImpl::SetMessageHandler(std::function<void(const MessageView&)> handler) {
  message_handler_ = std::move(handler);
}
void NodeImpl::SetPeerUpHandler(std::function<void(const PeerInfo&)> handler) {
  peer_up_handler_ = std::move(handler);
}
void NodeImpl::SetPeerDownHandler(std::function<void(const PeerInfo&)> handler) {
  peer_down_handler_ = std::move(handler);
}

absl::StatusOr<Message> NodeImpl::Receive(absl::Time deadline) {
  if (message_handler_) {
    return absl::FailedPreconditionError("Receive() called on a node with a message handler; use one or the other");
  }
  absl::MutexLock lock(&rq_mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(rq_mu_) { return !rq_.empty() || stopping(); };
  rq_mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (rq_.empty()) {
    if (stopping()) return absl::CancelledError(absl::StrCat("node ", name(), " is stopped"));
    return absl::DeadlineExceededError(absl::StrCat("no message for ", name(), " before the deadline"));
  }
  bool was_full = rq_.size() >= kMaxQueuedMessages || rq_bytes_ >= kMaxQueuedBytes;
  Message m = std::move(rq_.front());
  rq_.pop_front();
  rq_bytes_ -= m.payload.size();
  if (rq_.empty()) DrainEventFd(receive_event_.get());
  if (was_full) SignalEventFd(receive_wake_.get());  // the receiver paused; resume it
  return m;
}

bool NodeImpl::QueueFull() const {
  if (message_handler_) return false;
  absl::MutexLock lock(&rq_mu_);
  return rq_.size() >= kMaxQueuedMessages || rq_bytes_ >= kMaxQueuedBytes;
}

void NodeImpl::Deliver(const Link& link, absl::string_view payload) {
  if (message_handler_) {
    message_handler_(MessageView{link.peer_name(), payload});
    return;
  }
  absl::MutexLock lock(&rq_mu_);
  if (rq_.empty()) SignalEventFd(receive_event_.get());
  rq_.push_back(Message{link.peer_name(), std::string(payload)});
  rq_bytes_ += payload.size();
}

void NodeImpl::ReceiveLoop() {
  auto epoll = Epoll::Create();
  if (!epoll.ok() || !epoll->Add(receive_wake_.get(), EPOLLIN, kTagWake).ok()) {
    log_.Error("receive thread cannot start: %s; no messages will be received",
               epoll.ok() ? "epoll_ctl failed" : epoll.status().ToString());
    return;
  }
  // Tags: 2*i+2 = link i's socket, 2*i+3 = its doorbell (i indexes `active`).
  std::vector<std::shared_ptr<Link>> active;
  uint64_t seen_generation = ~uint64_t{0};
  const bool spin_forever = config_.wait().mode() == mesh::v1::WaitPolicy::SPIN;
  const absl::Duration spin = config_.wait().mode() == mesh::v1::WaitPolicy::SLEEP
                                  ? absl::ZeroDuration()
                                  : absl::Microseconds(config_.wait().spin_us());
  absl::Time last_activity = absl::Now();
  epoll_event events[64];
  uint32_t spins = 0;

  auto refresh = [&] {
    // acquire pairs with the release increment in InstallLink/RetireLinks;
    // the copy itself is taken under mu_.
    uint64_t gen = links_generation_.load(std::memory_order_acquire);
    if (gen == seen_generation) return;
    for (const auto& link : active) {
      epoll->Remove(link->socket_fd());
      epoll->Remove(link->rx_doorbell_fd());
    }
    active.clear();
    {
      absl::ReaderMutexLock lock(&mu_);
      for (const auto& [n, link] : links_) {
        if (!link->down()) active.push_back(link);
      }
      seen_generation = links_generation_.load(std::memory_order_acquire);
    }
    for (size_t i = 0; i < active.size(); ++i) {
      // The socket never carries data after the handshake: readability or
      // hang-up both mean the peer is gone (or misbehaving).
      (void)epoll->Add(active[i]->socket_fd(), EPOLLIN | EPOLLRDHUP, 2 * i + 2);
      (void)epoll->Add(active[i]->rx_doorbell_fd(), EPOLLIN, 2 * i + 3);
    }
  };

  auto fail_link = [&](const std::shared_ptr<Link>& link, const std::string& why) {
    if (link->down()) return;
    link->MarkDown();
    log_.Info("link down: %s (%s)", link->peer_name(), why);
    {
      absl::MutexLock lock(&mu_);
      dead_links_.push_back(link);
    }
    WakeControl();
  };

  auto drain_all = [&]() -> bool {
    bool any = false;
    for (const auto& link : active) {
      if (link->down()) continue;
      if (QueueFull()) return any;
      auto n = link->Drain(kDrainBatch, [&](absl::string_view payload) { Deliver(*link, payload); });
      if (!n.ok()) {
        fail_link(link, absl::StrCat("ring corrupted: ", n.status().message()));
      } else if (*n > 0) {
        any = true;
      }
    }
    return any;
  };

  auto handle_events = [&](int n) {
    for (int i = 0; i < n; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kTagWake) {
        DrainEventFd(receive_wake_.get());
        continue;
      }
      size_t index = (tag - 2) / 2;
      if (index >= active.size()) continue;
      const auto& link = active[index];
      if (tag % 2 == 0) {
        // Deliver what the peer wrote before it went away, then retire it.
        (void)link->Drain(~size_t{0} >> 1, [&](absl::string_view p) { Deliver(*link, p); });
        fail_link(link, "peer closed the link socket");
      } else {
        link->ClearDoorbell();
      }
    }
  };

  auto retire_leavers = [&] {
    // acquire pairs with the release store in HandleLeave.
    if (!leaving_pending_.exchange(false, std::memory_order_acquire)) return;
    std::vector<std::shared_ptr<Link>> leaving;
    {
      absl::MutexLock lock(&mu_);
      leaving.swap(leaving_links_);
    }
    for (const auto& link : leaving) {
      if (link->down()) continue;
      (void)link->Drain(~size_t{0} >> 1, [&](absl::string_view p) { Deliver(*link, p); });
      fail_link(link, "peer left the mesh");
    }
  };

  while (!stopping()) {
    refresh();
    retire_leavers();
    if (drain_all()) {
      last_activity = absl::Now();
      spins = 0;
      continue;
    }
    if (QueueFull()) {
      handle_events(epoll->Wait(events, 64, 10));
      continue;
    }
    // Nothing to read. Keep spinning while recently active, checking the
    // sockets for hang-ups now and then (cheap: a zero-timeout epoll).
    if (spin_forever || absl::Now() - last_activity < spin) {
      if (++spins % 1024 == 0) handle_events(epoll->Wait(events, 64, 0));
      __builtin_ia32_pause();
      continue;
    }
    // Going to sleep: announce it on every ring, then re-check; a producer
    // that wrote after our check sees the flag and rings the doorbell.
    bool data_arrived = false;
    for (const auto& link : active) {
      if (!link->down() && !link->PrepareToSleep()) data_arrived = true;
    }
    if (data_arrived) continue;
    handle_events(epoll->Wait(events, 64, -1));
    last_activity = absl::Now();  // spin again briefly after each wakeup
  }
}

// ---------------------------------------------------------------------------
// Membership.

mesh::v1::Member NodeImpl::SelfMember() const {
  mesh::v1::Member m;
  m.set_name(name());
  m.set_id(id_);
  m.set_pid(::getpid());
  m.set_uid(::getuid());
  m.set_grpc_address(grpc_address());
  m.set_link_socket(link_path_);
  m.set_state(mesh::v1::UP);
  m.set_ring_capacity_bytes(config_.ring_capacity_bytes());
  return m;
}

LinkParams NodeImpl::MakeLinkParams() const {
  LinkParams p;
  p.name = name();
  p.id = id_;
  p.ring_capacity_bytes = config_.ring_capacity_bytes();
  p.max_peer_ring_bytes = uint64_t{1} << 30;
  p.allowed_uids.assign(config_.allowed_peer_uids().begin(), config_.allowed_peer_uids().end());
  return p;
}

absl::Status NodeImpl::CheckMember(const mesh::v1::Member& m) const {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("member '", m.name(), "': ", what));
  };
  if (m.name().empty() || m.name().size() > 64) return bad("name must be 1 to 64 characters");
  for (char c : m.name()) {
    if (!(absl::ascii_isalnum(c) || c == '_' || c == '.' || c == '-')) return bad("name has characters outside [A-Za-z0-9_.-]");
  }
  if (m.id() == 0) return bad("id is 0");
  if (m.pid() <= 0) return bad("pid must be positive");
  if (m.grpc_address().empty()) return bad("grpc_address is empty");
  if (m.link_socket().empty() || m.link_socket()[0] != '/' || m.link_socket().size() > 107) {
    return bad("link_socket must be an absolute path of at most 107 bytes");
  }
  const auto& uids = config_.allowed_peer_uids();
  if (std::find(uids.begin(), uids.end(), m.uid()) == uids.end()) {
    return absl::PermissionDeniedError(absl::StrCat("member '", m.name(), "' runs as uid ", m.uid(),
                                                    ", which is not in allowed_peer_uids"));
  }
  return absl::OkStatus();
}

void NodeImpl::BumpLocked() {
  ++generation_;
}

void NodeImpl::WakeControl() {
  if (control_event_) SignalEventFd(control_event_.get());
}
void NodeImpl::WakeReceiver() {
  if (receive_wake_) SignalEventFd(receive_wake_.get());
}

absl::StatusOr<std::vector<mesh::v1::Member>> NodeImpl::HandleJoin(const mesh::v1::Member& member,
                                                                   const std::vector<mesh::v1::Member>& known) {
  if (stopping()) return absl::UnavailableError(absl::StrCat("node ", name(), " is stopping"));
  SHMESH_RETURN_IF_ERROR(CheckMember(member));
  if (member.name() == name()) {
    if (member.id() == id_) return Members();
    return absl::AlreadyExistsError(absl::StrCat("name '", name(), "' is taken by a live node (pid ", ::getpid(),
                                                 "); pick another name"));
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = members_.find(member.name());
    if (it != members_.end() && it->second.member.id() != member.id()) {
      const auto& old = it->second.member;
      if (links_.count(member.name()) > 0 || ProcessAlive(old.pid())) {
        return absl::AlreadyExistsError(absl::StrCat("name '", member.name(), "' is taken by a live node (pid ", old.pid(),
                                                     "); pick another name"));
      }
      // The old holder of the name is dead: forget it, welcome the new one.
      DropMemberLocked(member.name(), old.id());
    }
    tombstones_.erase(member.id());
    LearnLocked(member);
    auto entry = members_.find(member.name());
    if (entry != members_.end()) entry->second.knows_us = true;
    for (const auto& m : known) {
      if (CheckMember(m).ok()) LearnLocked(m);
    }
  }
  WakeControl();
  return Members();
}

void NodeImpl::HandleLeave(const std::string& leaver, uint64_t id) {
  std::shared_ptr<Link> link;
  {
    absl::MutexLock lock(&mu_);
    auto it = members_.find(leaver);
    if (it == members_.end() || it->second.member.id() != id) return;
    auto lit = links_.find(leaver);
    if (lit != links_.end()) link = lit->second;
  }
  log_.Info("member left: %s", leaver);
  if (link != nullptr) {
    // The leaver sent its last messages before calling Leave: the receive
    // thread drains them, then retires the link (as on EOF).
    {
      absl::MutexLock lock(&mu_);
      leaving_links_.push_back(link);
    }
    // release pairs with the acquire exchange in ReceiveLoop.
    leaving_pending_.store(true, std::memory_order_release);
    WakeReceiver();
  } else {
    absl::MutexLock lock(&mu_);
    DropMemberLocked(leaver, id);
    WakeControl();
  }
}

void NodeImpl::LearnLocked(const mesh::v1::Member& m) {
  if (m.name() == name() || tombstones_.count(m.id()) > 0) return;
  auto it = members_.find(m.name());
  if (it != members_.end()) {
    if (it->second.member.id() == m.id()) return;
    // A different incarnation: only replace a holder that is gone.
    if (links_.count(m.name()) > 0 || ProcessAlive(it->second.member.pid())) return;
    DropMemberLocked(m.name(), it->second.member.id());
  }
  if (!ProcessAlive(m.pid())) return;  // a stale announcement of a dead node
  MemberEntry e;
  e.member = m;
  e.member.set_state(mesh::v1::JOINING);
  e.since = absl::Now();
  e.next_announce = e.next_dial = absl::Now();
  e.announce_backoff = e.dial_backoff = kMinBackoff;
  // Everyone else we know must hear of the newcomer from us (they may have
  // joined through a node that did not know it).
  for (auto& [n, other] : members_) other.needs_sync = true;
  members_.emplace(m.name(), std::move(e));
  log_.Info("member joined: %s (pid %d, %s)", m.name(), m.pid(), m.grpc_address());
  BumpLocked();
}

void NodeImpl::Learn(const std::vector<mesh::v1::Member>& members) {
  {
    absl::MutexLock lock(&mu_);
    for (const auto& m : members) {
      if (CheckMember(m).ok()) LearnLocked(m);
    }
  }
  WakeControl();
}

void NodeImpl::DropMemberLocked(const std::string& member, uint64_t id) {
  auto it = members_.find(member);
  if (it == members_.end() || it->second.member.id() != id) return;
  members_.erase(it);
  tombstones_.insert(id);
  BumpLocked();
}

std::vector<mesh::v1::Member> NodeImpl::Members() const {
  std::vector<mesh::v1::Member> out;
  out.push_back(SelfMember());
  out.back().mutable_since()->CopyFrom(ToProto(absl::Now()));
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [n, e] : members_) {
    mesh::v1::Member m = e.member;
    m.set_state(links_.count(n) > 0 ? mesh::v1::UP : mesh::v1::JOINING);
    *m.mutable_since() = ToProto(e.since);
    out.push_back(std::move(m));
  }
  return out;
}

uint64_t NodeImpl::ChangeGeneration() const {
  absl::ReaderMutexLock lock(&mu_);
  return generation_;
}

bool NodeImpl::WaitForChange(uint64_t seen, absl::Time deadline) const {
  absl::MutexLock lock(&mu_);
  auto changed = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return generation_ != seen || stopping(); };
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  return !stopping();
}

std::vector<std::string> NodeImpl::Peers() const {
  std::vector<std::string> out;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [n, link] : links_) {
    if (!link->down()) out.push_back(n);
  }
  return out;
}

absl::Status NodeImpl::WaitForPeers(size_t n, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto enough = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return links_.size() >= n || stopping(); };
  mu_.AwaitWithDeadline(absl::Condition(&enough), deadline);
  if (links_.size() >= n) return absl::OkStatus();
  return absl::DeadlineExceededError(absl::StrCat("node ", name(), " has ", links_.size(), " peer(s), wanted ", n,
                                                  "; are the other nodes running and seeded to this mesh?"));
}

// ---------------------------------------------------------------------------
// Control thread.

std::shared_ptr<grpc::Channel> NodeImpl::Channel(const std::string& target) {
  absl::MutexLock lock(&channels_mu_);
  auto& ch = channels_[target];
  if (ch == nullptr) {
    // gRPC's default reconnect backoff grows to 120 s, which would hide a
    // seed that came back behind our own (20 ms .. 2 s) retries.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, absl::ToInt64Milliseconds(kMinBackoff));
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, absl::ToInt64Milliseconds(kMinBackoff));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, absl::ToInt64Milliseconds(kMaxBackoff));
    ch = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  }
  return ch;
}

std::shared_ptr<mesh::v1::Discovery::Stub> NodeImpl::DiscoveryStub(const std::string& target) {
  return mesh::v1::Discovery::NewStub(Channel(target));
}

std::shared_ptr<mesh::v1::Topology::Stub> NodeImpl::TopologyStub(const std::string& target) {
  return mesh::v1::Topology::NewStub(Channel(target));
}

absl::StatusOr<std::vector<mesh::v1::Member>> NodeImpl::CallJoin(const std::string& target, absl::Time deadline) {
  auto stub = DiscoveryStub(target);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(deadline));
  mesh::v1::JoinRequest req;
  *req.mutable_member() = SelfMember();
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [n, e] : members_) *req.add_known() = e.member;
  }
  mesh::v1::JoinResponse resp;
  grpc::Status s = stub->Join(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, absl::StrCat("Join at ", target));
  return std::vector<mesh::v1::Member>(resp.members().begin(), resp.members().end());
}

bool NodeImpl::TryJoinSeeds() {
  std::vector<std::string> errors;
  for (const std::string& seed : config_.seeds()) {
    auto members = CallJoin(seed, absl::Now() + kRpcTimeout);
    if (members.ok()) {
      log_.Info("joined through seed %s: %d member(s)", seed, members->size());
      {
        absl::MutexLock lock(&mu_);
        for (const auto& m : *members) {
          if (!CheckMember(m).ok()) continue;
          LearnLocked(m);
          auto it = members_.find(m.name());
          // The seed itself answered our Join, so it knows us.
          if (it != members_.end() && it->second.member.id() == m.id() && m.grpc_address() == seed) {
            it->second.knows_us = true;
          }
        }
      }
      return true;
    }
    errors.push_back(std::string(members.status().message()));
  }
  absl::MutexLock lock(&mu_);
  ++seed_failures_;
  if (seed_failures_ == 1 || seed_failures_ % 10 == 0) {
    log_.Warning("no seed reachable (attempt %d): %s; retrying in %s", seed_failures_, absl::StrJoin(errors, "; "),
                 absl::FormatDuration(seed_backoff_));
  }
  return false;
}

void NodeImpl::InstallLink(std::shared_ptr<Link> link) {
  PeerInfo info{link->peer_name(), link->peer().id(), link->peer().pid()};
  {
    absl::MutexLock lock(&mu_);
    auto member = members_.find(link->peer_name());
    if (member == members_.end() || member->second.member.id() != link->peer().id() || links_.count(link->peer_name())) {
      log_.Debug("dropping redundant or stale link to %s", link->peer_name());
      link->MarkDown();
      return;
    }
    links_[link->peer_name()] = link;
    member->second.since = absl::Now();
    member->second.failures = 0;
    BumpLocked();
    // release pairs with the receive thread's acquire load in ReceiveLoop.
    links_generation_.fetch_add(1, std::memory_order_release);
  }
  WakeReceiver();
  log_.Info("link up: %s (pid %d)", info.name, info.pid);
  if (peer_up_handler_) peer_up_handler_(info);
}

void NodeImpl::RetireLinks() {
  std::vector<std::shared_ptr<Link>> dead;
  std::vector<PeerInfo> down;
  {
    absl::MutexLock lock(&mu_);
    dead.swap(dead_links_);
    for (const auto& link : dead) {
      auto it = links_.find(link->peer_name());
      if (it != links_.end() && it->second == link) {
        links_.erase(it);
        down.push_back(PeerInfo{link->peer_name(), link->peer().id(), link->peer().pid()});
      }
      DropMemberLocked(link->peer_name(), link->peer().id());
    }
    if (!dead.empty()) {
      BumpLocked();
      links_generation_.fetch_add(1, std::memory_order_release);  // pairs as in InstallLink
    }
  }
  if (!dead.empty()) WakeReceiver();
  // The last reference to each link (and so its mappings) goes when the
  // receive thread drops its copy.
  for (const auto& info : down) {
    if (peer_down_handler_) peer_down_handler_(info);
  }
}

void NodeImpl::AcceptPending() {
  while (!stopping()) {
    auto conn = fdpass::Accept(link_listen_.get(), absl::InfinitePast());
    if (!conn.ok()) {
      if (conn.status().code() == absl::StatusCode::kResourceExhausted) {
        log_.Warning("cannot accept link connections: %s; retrying shortly", conn.status().message());
      }
      return;
    }
    auto lookup = [this](const std::string& peer, uint64_t peer_id) -> absl::StatusOr<mesh::v1::Member> {
      absl::ReaderMutexLock lock(&mu_);
      auto it = members_.find(peer);
      if (it == members_.end() || it->second.member.id() != peer_id) {
        return absl::NotFoundError(absl::StrCat("'", peer, "' (id ", absl::Hex(peer_id),
                                                ") has not joined through discovery; join first"));
      }
      return it->second.member;
    };
    auto link = Link::Accept(std::move(*conn), MakeLinkParams(), lookup, absl::Now() + kHandshakeTimeout);
    if (!link.ok()) {
      log_.Warning("refused a link connection: %s", link.status().message());
      continue;
    }
    InstallLink(std::move(*link));
  }
}

absl::Time NodeImpl::Reconcile() {
  absl::Time now = absl::Now();
  absl::Time next = now + absl::Seconds(1);
  // Seeds, until one answered.
  bool join_seeds = false;
  {
    absl::MutexLock lock(&mu_);
    if (!seeds_joined_ && now >= next_seed_try_) join_seeds = true;
  }
  if (join_seeds) {
    bool ok = TryJoinSeeds();
    absl::MutexLock lock(&mu_);
    if (ok) {
      seeds_joined_ = true;
    } else {
      next_seed_try_ = absl::Now() + seed_backoff_;
      seed_backoff_ = Backoff(seed_backoff_);
    }
  }
  // Per member: announce ourselves, then dial if our name sorts first.
  struct Todo {
    mesh::v1::Member member;
    bool announce, dial;
  };
  std::vector<Todo> todo;
  {
    absl::MutexLock lock(&mu_);
    if (!seeds_joined_) next = std::min(next, next_seed_try_);
    for (auto& [n, e] : members_) {
      bool announce = (!e.knows_us || e.needs_sync) && now >= e.next_announce;
      // Cleared before the call: news learned while it runs sets it again.
      if (announce) e.needs_sync = false;
      bool dial = e.knows_us && name() < n && links_.count(n) == 0 && now >= e.next_dial;
      if (!e.knows_us || e.needs_sync) next = std::min(next, e.next_announce);
      if (e.knows_us && name() < n && links_.count(n) == 0) next = std::min(next, e.next_dial);
      if (announce || dial) todo.push_back({e.member, announce, dial});
    }
  }
  for (const Todo& t : todo) {
    if (stopping()) break;
    const std::string& peer = t.member.name();
    if (t.announce) {
      auto members = CallJoin(t.member.grpc_address(), absl::Now() + kRpcTimeout);
      absl::MutexLock lock(&mu_);
      auto it = members_.find(peer);
      if (it == members_.end() || it->second.member.id() != t.member.id()) continue;
      if (members.ok()) {
        it->second.knows_us = true;
        it->second.announce_backoff = kMinBackoff;
        for (const auto& m : *members) {
          if (CheckMember(m).ok()) LearnLocked(m);
        }
        next = absl::Now();  // dial right away
      } else if (!ProcessAlive(t.member.pid())) {
        DropMemberLocked(peer, t.member.id());
      } else {
        it->second.needs_sync = true;
        if (++it->second.failures % 10 == 1) {
          log_.Warning("cannot announce to %s: %s; retrying", peer, members.status().message());
        }
        it->second.next_announce = absl::Now() + it->second.announce_backoff;
        it->second.announce_backoff = Backoff(it->second.announce_backoff);
        next = std::min(next, it->second.next_announce);
      }
      continue;
    }
    if (t.dial) {
      absl::Time started = absl::Now();
      auto link = Link::Dial(MakeLinkParams(), t.member, absl::Now() + kHandshakeTimeout);
      if (link.ok()) {
        log_.Debug("handshake with %s took %s", peer, absl::FormatDuration(absl::Now() - started));
        InstallLink(std::move(*link));
        continue;
      }
      absl::MutexLock lock(&mu_);
      auto it = members_.find(peer);
      if (it == members_.end() || it->second.member.id() != t.member.id()) continue;
      if (!ProcessAlive(t.member.pid())) {
        DropMemberLocked(peer, t.member.id());
        continue;
      }
      if (link.status().code() == absl::StatusCode::kAborted) {
        // The peer refused us, typically because it does not know us (yet,
        // or any more): announce ourselves again, then dial right after.
        it->second.knows_us = false;
        it->second.next_announce = absl::Now();
        it->second.dial_backoff = kMinBackoff;
        next = absl::Now();
        log_.Debug("link to %s refused (%s); announcing again", peer, link.status().message());
        continue;
      }
      if (++it->second.failures % 10 == 1) {
        log_.Warning("cannot link to %s: %s; retrying", peer, link.status().message());
      }
      it->second.next_dial = absl::Now() + it->second.dial_backoff;
      it->second.dial_backoff = Backoff(it->second.dial_backoff);
      next = std::min(next, it->second.next_dial);
    }
  }
  return next;
}

void NodeImpl::ControlLoop() {
  auto epoll = Epoll::Create();
  if (!epoll.ok() || !epoll->Add(control_event_.get(), EPOLLIN, kTagWake).ok() ||
      !epoll->Add(link_listen_.get(), EPOLLIN, kTagListen).ok()) {
    log_.Error("control thread cannot start (epoll failed); this node will not link");
    return;
  }
  epoll_event events[8];
  absl::Time next = absl::Now();
  while (!stopping()) {
    int timeout_ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
    int n = epoll->Wait(events, 8, timeout_ms);
    if (stopping()) break;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kTagWake) DrainEventFd(control_event_.get());
      if (events[i].data.u64 == kTagListen) AcceptPending();
    }
    RetireLinks();
    next = Reconcile();
    RetireLinks();
  }
}

// ---------------------------------------------------------------------------
// Topology.

mesh::v1::TopologySnapshot NodeImpl::LocalSnapshot() const {
  mesh::v1::TopologySnapshot snap;
  snap.set_reporter(name());
  *snap.mutable_taken() = ToProto(absl::Now());
  for (auto& m : Members()) *snap.add_members() = std::move(m);
  std::vector<std::shared_ptr<Link>> links;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [n, link] : links_) links.push_back(link);
  }
  for (const auto& link : links) {
    LinkStats s = link->Stats();
    mesh::v1::Link* l = snap.add_links();
    bool self_first = name() < link->peer_name();
    l->set_a(self_first ? name() : link->peer_name());
    l->set_b(self_first ? link->peer_name() : name());
    // "tx" is this node -> peer.
    if (self_first) {
      l->set_ring_bytes_a_to_b(s.tx_ring_bytes);
      l->set_ring_bytes_b_to_a(s.rx_ring_bytes);
      l->set_messages_a_to_b(s.tx_messages);
      l->set_bytes_a_to_b(s.tx_bytes);
      l->set_messages_b_to_a(s.rx_messages);
      l->set_bytes_b_to_a(s.rx_bytes);
      l->set_queued_bytes_a_to_b(s.tx_queued_bytes);
      l->set_queued_bytes_b_to_a(s.rx_queued_bytes);
      l->set_full_events_a_to_b(s.tx_full_events);
    } else {
      l->set_ring_bytes_b_to_a(s.tx_ring_bytes);
      l->set_ring_bytes_a_to_b(s.rx_ring_bytes);
      l->set_messages_b_to_a(s.tx_messages);
      l->set_bytes_b_to_a(s.tx_bytes);
      l->set_messages_a_to_b(s.rx_messages);
      l->set_bytes_a_to_b(s.rx_bytes);
      l->set_queued_bytes_b_to_a(s.tx_queued_bytes);
      l->set_queued_bytes_a_to_b(s.rx_queued_bytes);
      l->set_full_events_b_to_a(s.tx_full_events);
    }
    *l->mutable_since() = ToProto(link->since());
  }
  return snap;
}

absl::StatusOr<mesh::v1::TopologySnapshot> NodeImpl::Topology(bool local_only) {
  if (!started_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError("node not started; call Start() first");
  }
  mesh::v1::TopologySnapshot snap = LocalSnapshot();
  if (local_only) return snap;
  // Ask every member for its own links, in parallel (2 s each, within
  // meshctl's default 3 s), and merge: each direction's counters come from
  // its sender.
  std::vector<mesh::v1::Member> members(snap.members().begin() + 1, snap.members().end());
  std::vector<mesh::v1::TopologySnapshot> remote(members.size());
  // char, not bool: vector<bool> packs bits, and the askers write their
  // entries concurrently.
  std::vector<char> answered(members.size(), 0);
  std::vector<std::thread> askers;
  for (size_t i = 0; i < members.size(); ++i) {
    askers.emplace_back([&, i] {
      auto stub = TopologyStub(members[i].grpc_address());
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      mesh::v1::GetTopologyRequest req;
      req.set_local_only(true);
      answered[i] = stub->GetTopology(&ctx, req, &remote[i]).ok();
    });
  }
  for (auto& t : askers) t.join();
  std::map<std::pair<std::string, std::string>, mesh::v1::Link> merged;
  std::map<std::pair<std::string, std::string>, int> reports;
  auto merge = [&](const mesh::v1::TopologySnapshot& s) {
    for (const auto& l : s.links()) {
      auto key = std::make_pair(l.a(), l.b());
      ++reports[key];
      auto [it, inserted] = merged.emplace(key, l);
      if (inserted) continue;
      mesh::v1::Link& m = it->second;
      // The reporter's own sends are the authoritative counts.
      if (s.reporter() == l.a()) {
        m.set_messages_a_to_b(l.messages_a_to_b());
        m.set_bytes_a_to_b(l.bytes_a_to_b());
        m.set_full_events_a_to_b(l.full_events_a_to_b());
        m.set_ring_bytes_a_to_b(l.ring_bytes_a_to_b());
      } else {
        m.set_messages_b_to_a(l.messages_b_to_a());
        m.set_bytes_b_to_a(l.bytes_b_to_a());
        m.set_full_events_b_to_a(l.full_events_b_to_a());
        m.set_ring_bytes_b_to_a(l.ring_bytes_b_to_a());
      }
    }
  };
  merge(snap);
  for (size_t i = 0; i < remote.size(); ++i) {
    if (answered[i]) merge(remote[i]);
  }
  snap.clear_links();
  for (auto& [key, l] : merged) {
    l.set_confirmed_by_both(reports[key] >= 2);
    *snap.add_links() = std::move(l);
  }
  return snap;
}

}  // namespace mesh
