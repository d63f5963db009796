#include "mesh/node.h"

#include <poll.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fdpass/socket.h"
#include "fdpass/status_macros.h"
#include "google/protobuf/util/time_util.h"
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
// A configured seed that is not a member (dead, or in a mesh we have not
// merged with) is asked again at most this often.
constexpr absl::Duration kStraySeedMaxBackoff = absl::Seconds(5);
// The control thread's wake-up period when nothing is pending (it is woken
// at once by anything that makes work). Each wake-up costs an idle node CPU.
constexpr absl::Duration kIdleReconcile = absl::Seconds(10);
// The health thread's period, how often a node bumps its heartbeats and
// checks its peers', is this fraction of unresponsive_after_ms, at most
// kMaxHeartbeatInterval. Each tick wakes the node: about 0.1 ms of CPU on a
// busy 2-core machine, so the default (every 500 ms) costs an idle node
// ~0.02% of a core.
constexpr int kBeatsPerUnresponsive = 4;
constexpr absl::Duration kMaxHeartbeatInterval = absl::Seconds(10);

// A spinning receive thread reads the clock once per this many idle
// iterations (a clock read costs about as much as an iteration).
constexpr uint32_t kSpinsPerClockRead = 16;
// A spinning receive thread checks the link sockets for hang-ups (one
// zero-timeout epoll_wait, a syscall) at most this often. A sleeping one
// is woken by the hang-up itself.
constexpr int64_t kHangupCheckNs = 2'000'000;

// Doorbell spam guard (ReceiveLoop). A peer rings our doorbell only after
// publishing data while we sleep, so a wake-up that finds nothing new is
// rare for an honest peer (a ring that raced with our going to sleep). A
// peer whose doorbell wakes us for nothing this many times within one
// window gets its doorbell muted: removed from the epoll set for
// kDoorbellMute, while its ring is polled every kMutedPollMs instead (its
// messages still arrive, up to kMutedPollMs late).
constexpr uint32_t kDoorbellSpamWakes = 256;
constexpr int64_t kDoorbellSpamWindowNs = 100'000'000;
constexpr int64_t kDoorbellMuteNs = 1'000'000'000;
constexpr int kMutedPollMs = 10;

// Broadcast: how long one wait for room in one full peer's ring may take
// before the next full peer gets its turn.
constexpr absl::Duration kBroadcastSlice = absl::Milliseconds(1);

// Tags in the epoll sets.
constexpr uint64_t kTagWake = 0;
constexpr uint64_t kTagListen = 1;
// The link thread's handshakes in progress (LinkAcceptor) from this tag up.
constexpr uint64_t kTagFirstPending = 16;

// What the peer up/down/unresponsive handlers are told about a link's peer.
PeerInfo PeerInfoOf(const Link& link) {
  return PeerInfo{link.peer_name(), link.peer().id(), link.peer().pid(), link.handshake()};
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

// Source of NodeImpl::uid_. relaxed: only uniqueness matters.
std::atomic<uint64_t> g_next_node_uid{1};

// CLOCK_MONOTONIC in nanoseconds: about half the cost of absl::Now() with
// Debian's Abseil, for the receive thread's spin bookkeeping.
int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Per-thread cache of FindLink's lookups: (node, peer) -> link, valid while
// the node's links_generation_ still has the value it had when the entry
// was filled ([LinkGen] in node_impl.h). It holds weak_ptrs, so a cached
// link never outlives its node or keeps its fds and mappings open; a few
// entries, so a thread that alternates between some peers keeps hitting.
struct LinkCacheEntry {
  uint64_t node = 0;  // NodeImpl::uid_; 0: empty
  uint64_t generation = 0;
  std::string peer;
  std::weak_ptr<Link> link;
};
constexpr size_t kLinkCacheEntries = 8;
struct LinkCache {
  LinkCacheEntry entries[kLinkCacheEntries];
  size_t next = 0;      // round-robin replacement
  size_t last_hit = 0;  // checked first
};
thread_local LinkCache t_link_cache;

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
absl::Status Node::RestartControlServer() { return impl_->RestartControlServer(); }
const std::string& Node::name() const { return impl_->name(); }
uint64_t Node::id() const { return impl_->id(); }
std::string Node::grpc_address() const { return impl_->grpc_address(); }
const mesh::v1::NodeConfig& Node::config() const { return impl_->config(); }
absl::Status Node::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  return impl_->Send(peer, payload, deadline);
}
absl::StatusOr<size_t> Node::SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                       absl::Time deadline) {
  return impl_->SendBatch(peer, payloads, deadline);
}
absl::StatusOr<BroadcastResult> Node::Broadcast(absl::string_view payload, absl::Time deadline) {
  return impl_->Broadcast(payload, deadline);
}
void Node::SetMessageHandler(std::function<void(const MessageView&)> handler) {
  impl_->SetMessageHandler(std::move(handler));
}
absl::StatusOr<Message> Node::Receive(absl::Time deadline) { return impl_->Receive(deadline); }
int Node::receive_fd() const { return impl_->receive_fd(); }
void Node::SetPeerUpHandler(std::function<void(const PeerInfo&)> h) { impl_->SetPeerUpHandler(std::move(h)); }
void Node::SetPeerDownHandler(std::function<void(const PeerInfo&)> h) { impl_->SetPeerDownHandler(std::move(h)); }
void Node::SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool)> h) {
  impl_->SetPeerUnresponsiveHandler(std::move(h));
}
std::vector<std::string> Node::Peers() const { return impl_->Peers(); }
std::vector<std::string> Node::UnresponsivePeers() const { return impl_->UnresponsivePeers(); }
absl::Status Node::WaitForPeers(size_t n, absl::Time deadline) { return impl_->WaitForPeers(n, deadline); }
absl::StatusOr<mesh::v1::TopologySnapshot> Node::Topology(bool local_only) {
  return impl_->Topology(local_only);
}

// ---------------------------------------------------------------------------
// NodeImpl: lifecycle.

NodeImpl::NodeImpl(mesh::v1::NodeConfig resolved_config)
    : config_(std::move(resolved_config)),
      id_(RandomId()),
      // relaxed: a unique number is all that is needed (see g_next_node_uid).
      uid_(g_next_node_uid.fetch_add(1, std::memory_order_relaxed)),
      log_(config_.name(), config_.log_level()),
      control_server_(config_.grpc_listen(),
                      std::vector<uint32_t>(config_.allowed_peer_uids().begin(), config_.allowed_peer_uids().end()),
                      [this] { return MakeServices(this); }, &log_) {
  link_path_ = absl::StrCat(config_.run_dir(), "/", config_.name(), ".link");
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
  SHMESH_ASSIGN_OR_RETURN(link_wake_, MakeEventFd());
  SHMESH_ASSIGN_OR_RETURN(receive_wake_, MakeEventFd());
  SHMESH_ASSIGN_OR_RETURN(receive_event_, MakeEventFd());
  SHMESH_ASSIGN_OR_RETURN(health_wake_, MakeEventFd());
  // Every descriptor the threads need is made here, so that running out of
  // descriptors fails Start() instead of leaving a thread that cannot work.
  {
    SHMESH_ASSIGN_OR_RETURN(Epoll control, Epoll::Create());
    SHMESH_RETURN_IF_ERROR(control.Add(control_event_.get(), EPOLLIN, kTagWake));
    SHMESH_ASSIGN_OR_RETURN(Epoll link, Epoll::Create());
    SHMESH_RETURN_IF_ERROR(link.Add(link_wake_.get(), EPOLLIN, kTagWake));
    SHMESH_ASSIGN_OR_RETURN(Epoll receive, Epoll::Create());
    SHMESH_RETURN_IF_ERROR(receive.Add(receive_wake_.get(), EPOLLIN, kTagWake));
    control_epoll_.emplace(std::move(control));
    link_epoll_.emplace(std::move(link));
    receive_epoll_.emplace(std::move(receive));
  }

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
  link_acceptor_ = MakeLinkAcceptor();
  if (absl::Status added = link_acceptor_->Start(); !added.ok()) {
    link_acceptor_.reset();
    link_listen_.reset();
    RemoveFile(link_path_);
    return absl::Status(added.code(), absl::StrCat("node ", name(), ": ", added.message()));
  }
  // We hold the name now: a gRPC socket file left at our path by a killed
  // predecessor is stale, and the control server replaces it.
  absl::Status served = control_server_.Start();
  if (!served.ok()) {
    link_acceptor_.reset();
    link_listen_.reset();
    RemoveFile(link_path_);
    return absl::Status(served.code(), absl::StrCat("node ", name(), ": ", served.message()));
  }
  {
    absl::MutexLock lock(&mu_);
    grpc_address_ = control_server_.address();
    seeds_joined_ = config_.seeds().empty();
    next_seed_try_ = absl::Now();
    seed_backoff_ = kMinBackoff;
  }
  ReplenishSpareRing();
  log_.Info("started: id %016x, pid %d, grpc %s, link socket %s, %d seed(s)", id_, ::getpid(), grpc_address(),
            link_path_, config_.seeds_size());
  receive_thread_ = std::thread([this] { ReceiveLoop(); });
  control_thread_ = std::thread([this] { ControlLoop(); });
  link_thread_ = std::thread([this] { LinkLoop(); });
  health_thread_ = std::thread([this] { HealthLoop(); });
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
  // 2. Stop serving: watch streams see the shutdown and end; the socket
  //    file goes.
  control_server_.Stop();
  // 3. Stop our threads.
  if (control_event_) SignalEventFd(control_event_.get());
  if (link_wake_) SignalEventFd(link_wake_.get());
  if (receive_wake_) SignalEventFd(receive_wake_.get());
  if (health_wake_) SignalEventFd(health_wake_.get());
  if (health_thread_.joinable()) health_thread_.join();
  if (control_thread_.joinable()) control_thread_.join();
  if (link_thread_.joinable()) link_thread_.join();
  link_acceptor_.reset();  // closes the handshakes in progress
  if (receive_thread_.joinable()) receive_thread_.join();
  // 4. Close every link: peers see EOF on the link sockets.
  std::map<std::string, std::shared_ptr<Link>> links;
  {
    absl::MutexLock lock(&mu_);
    links.swap(links_);
    members_.clear();
    BumpLocked();
    // [LinkGen] release: cached lookups of these links are stale now.
    links_generation_.fetch_add(1, std::memory_order_release);
  }
  for (auto& [n, link] : links) (void)link->MarkDown();
  links.clear();
  {
    absl::MutexLock lock(&rq_mu_);
    rq_.clear();
    rq_bytes_ = 0;
    UpdateQueueFullLocked();
  }
  {
    absl::MutexLock lock(&spare_mu_);
    spare_ring_.reset();
  }
  // 5. Leave nothing on disk, but remove only what this node created: after
  //    a Start that failed because another node holds the name, the files
  //    are that node's.
  if (link_listen_) {
    link_listen_.reset();
    RemoveFile(link_path_);
  }
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

// ---------------------------------------------------------------------------
// Sending.

std::shared_ptr<Link> NodeImpl::FindLink(absl::string_view peer) {
  LinkCache& cache = t_link_cache;
  // [LinkGen] acquire: pairs with the release increments in InstallLink,
  // RetireLinks and Stop. An entry cached at this generation was read from
  // links_ under mu_ when links_ was as it is now, so it is still the link
  // installed for `peer`. If its lock() fails the link is gone: look again.
  const uint64_t generation = links_generation_.load(std::memory_order_acquire);
  for (size_t i = 0; i < kLinkCacheEntries; ++i) {
    // The last hit first: a thread usually sends to one peer at a time.
    const size_t index = (cache.last_hit + i) % kLinkCacheEntries;
    LinkCacheEntry& e = cache.entries[index];
    if (e.node == uid_ && e.generation == generation && e.peer == peer) {
      cache.last_hit = index;
      if (std::shared_ptr<Link> link = e.link.lock()) return link;
      break;
    }
  }
  std::shared_ptr<Link> link;
  uint64_t cached_generation = 0;
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = links_.find(std::string(peer));
    if (it == links_.end()) return nullptr;
    link = it->second;
    // relaxed: every writer changes it under mu_, which we hold, so this is
    // the generation of the links_ we just read.
    cached_generation = links_generation_.load(std::memory_order_relaxed);
  }
  LinkCacheEntry* slot = nullptr;
  for (LinkCacheEntry& e : cache.entries) {
    if (e.node == uid_ && e.peer == peer) slot = &e;
  }
  if (slot == nullptr) {
    slot = &cache.entries[cache.next];
    cache.next = (cache.next + 1) % kLinkCacheEntries;
  }
  slot->node = uid_;
  slot->generation = cached_generation;
  slot->peer.assign(peer.data(), peer.size());
  slot->link = link;
  return link;
}

absl::Status NodeImpl::ExplainSendError(const absl::Status& status, const Link& link, size_t bytes) const {
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
      return absl::ResourceExhaustedError(absl::StrCat("ring to '", peer, "' is full (", bytes, " bytes did not fit); ",
                                                       why, "; retry later or pass a deadline to wait"));
    case absl::StatusCode::kDeadlineExceeded:
      return absl::DeadlineExceededError(absl::StrCat("ring to '", peer, "' stayed full until the deadline; ", why));
    default:
      return status;
  }
}

// The send path, step by step: size check; FindLink (per-thread cache, no
// lock while the link set is unchanged); Link::Send (the link's send mutex,
// a copy into the ring, one tail store; a doorbell write only if the peer's
// receive thread sleeps). No clock is read and nothing is allocated unless
// the ring is full or something fails.
absl::Status NodeImpl::Send(absl::string_view peer, absl::string_view payload, absl::Time deadline) {
  if (payload.size() > config_.max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", payload.size(), " bytes exceeds max_message_bytes (",
                                                   config_.max_message_bytes(), "); split it or raise the limit"));
  }
  std::shared_ptr<Link> link = FindLink(peer);
  if (link == nullptr) {
    return absl::NotFoundError(absl::StrCat("no link from ", name(), " to peer '", peer,
                                            "'; check Peers() or wait for it with WaitForPeers()"));
  }
  absl::Status s = link->Send(payload, deadline);
  if (s.ok()) return s;
  NoteSendFailure(link, s);
  return ExplainSendError(s, *link, payload.size());
}

absl::StatusOr<size_t> NodeImpl::SendBatch(absl::string_view peer, absl::Span<const absl::string_view> payloads,
                                           absl::Time deadline) {
  for (absl::string_view payload : payloads) {
    if (payload.size() > config_.max_message_bytes()) {
      return absl::InvalidArgumentError(absl::StrCat("message of ", payload.size(), " bytes exceeds max_message_bytes (",
                                                     config_.max_message_bytes(), "); split it or raise the limit"));
    }
  }
  if (payloads.empty()) return 0;
  std::shared_ptr<Link> link = FindLink(peer);
  if (link == nullptr) {
    return absl::NotFoundError(absl::StrCat("no link from ", name(), " to peer '", peer,
                                            "'; check Peers() or wait for it with WaitForPeers()"));
  }
  size_t written = 0;
  absl::Status s = link->SendBatch(payloads, deadline, &written);
  if (!s.ok()) NoteSendFailure(link, s);
  if (written > 0 || s.ok()) return written;
  return ExplainSendError(s, *link, payloads[0].size());
}

void NodeImpl::NoteSendFailure(const std::shared_ptr<Link>& link, const absl::Status& status) {
  // DATA_LOSS: the peer corrupted the ring we write into. UNAVAILABLE: the
  // link is down already (then this is a no-op), or the peer hung up its
  // doorbell while we waited for room. Either way the link is finished.
  if (status.code() == absl::StatusCode::kDataLoss || status.code() == absl::StatusCode::kUnavailable) {
    LinkFailed(link, absl::StrCat("send failed: ", status.message()));
  }
}

// Broadcast, step by step: (1) one pass writes to every peer whose ring
// has room, without waiting; (2) the peers left (full rings) are retried
// in turn, each for at most kBroadcastSlice at a time, until each is
// written or `deadline` passes; peers reported unresponsive are not waited
// for (their process does not run: it will not make room). So one full or
// stopped peer never delays the others' copies, and the call returns at
// `deadline` at the latest.
absl::StatusOr<BroadcastResult> NodeImpl::Broadcast(absl::string_view payload, absl::Time deadline) {
  if (!started_.load(std::memory_order_acquire) || stopping()) {
    return absl::FailedPreconditionError(absl::StrCat("node ", name(), " is not running; Broadcast() needs a started node"));
  }
  if (payload.size() > config_.max_message_bytes()) {
    return absl::InvalidArgumentError(absl::StrCat("message of ", payload.size(), " bytes exceeds max_message_bytes (",
                                                   config_.max_message_bytes(), "); split it or raise the limit"));
  }
  // One lookup of the whole link set, then a send on each link.
  std::vector<std::shared_ptr<Link>> links;
  {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [n, link] : links_) {
      if (!link->down()) links.push_back(link);
    }
  }
  BroadcastResult result;
  auto give_up = [&](const std::shared_ptr<Link>& link, const absl::Status& s) {
    NoteSendFailure(link, s);
    result.not_reached.emplace_back(link->peer_name(), ExplainSendError(s, *link, payload.size()));
  };
  std::vector<std::shared_ptr<Link>> full;
  for (const auto& link : links) {
    absl::Status s = link->Send(payload, absl::InfinitePast());
    if (s.ok()) {
      result.delivered.push_back(link->peer_name());
    } else if (s.code() == absl::StatusCode::kResourceExhausted && deadline > absl::Now() && !link->unresponsive()) {
      full.push_back(link);
    } else {
      give_up(link, s);
    }
  }
  while (!full.empty()) {
    std::vector<std::shared_ptr<Link>> still_full;
    for (const auto& link : full) {
      const absl::Time now = absl::Now();
      absl::Status s = link->Send(payload, std::min(deadline, now + kBroadcastSlice));
      if (s.ok()) {
        result.delivered.push_back(link->peer_name());
      } else if ((s.code() == absl::StatusCode::kDeadlineExceeded ||
                  s.code() == absl::StatusCode::kResourceExhausted) &&
                 absl::Now() < deadline && !link->unresponsive()) {
        still_full.push_back(link);
      } else {
        give_up(link, s.code() == absl::StatusCode::kResourceExhausted
                          ? absl::DeadlineExceededError(s.message())
                          : s);
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
void NodeImpl::SetPeerUnresponsiveHandler(std::function<void(const PeerInfo&, bool)> handler) {
  peer_unresponsive_handler_ = std::move(handler);
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
  // relaxed: we hold rq_mu_, under which every store to it is made.
  const bool was_full = rq_full_.load(std::memory_order_relaxed);
  Message m = std::move(rq_.front());
  rq_.pop_front();
  rq_bytes_ -= m.payload.size();
  UpdateQueueFullLocked();
  if (rq_.empty()) DrainEventFd(receive_event_.get());
  if (was_full) SignalEventFd(receive_wake_.get());  // the receiver paused; resume it
  return m;
}

void NodeImpl::UpdateQueueFullLocked() {
  // [QueueFull] release: pairs with the acquire load in QueueFull().
  rq_full_.store(rq_.size() >= kMaxQueuedMessages || rq_bytes_ >= kMaxQueuedBytes, std::memory_order_release);
}

bool NodeImpl::QueueFull() const {
  if (message_handler_) return false;
  // [QueueFull] acquire: pairs with the release store in
  // UpdateQueueFullLocked; no lock on the receive loop's path.
  return rq_full_.load(std::memory_order_acquire);
}

void NodeImpl::Deliver(const Link& link, absl::string_view payload, std::vector<Message>* queued) {
  if (message_handler_) {
    message_handler_(MessageView{link.peer_name(), payload});
    return;
  }
  queued->push_back(Message{link.peer_name(), std::string(payload)});
}

void NodeImpl::FlushQueued(std::vector<Message>* queued) {
  if (queued->empty()) return;
  absl::MutexLock lock(&rq_mu_);
  if (rq_.empty()) SignalEventFd(receive_event_.get());
  for (Message& m : *queued) {
    rq_bytes_ += m.payload.size();
    rq_.push_back(std::move(m));
  }
  UpdateQueueFullLocked();
  queued->clear();
}

void NodeImpl::ReceiveLoop() {
  NameThisThread("mesh-recv");
  Epoll* const epoll = &*receive_epoll_;  // made in Start()
  // Tags: 2*i+2 = link i's socket, 2*i+3 = its doorbell (i indexes `active`).
  std::vector<std::shared_ptr<Link>> active;
  // Per link: the doorbell spam guard (see kDoorbellSpamWakes), kept across
  // refreshes of `active`; and whether its doorbell rang since its last
  // drain (indexes `active`).
  struct DoorbellGuard {
    int64_t window_start_ns = 0;
    uint32_t idle_wakes = 0;  // wake-ups for nothing in this window
    int64_t muted_until_ns = 0;  // 0: not muted
    uint64_t mutes = 0;
  };
  std::map<const Link*, DoorbellGuard> guards;
  std::vector<char> rang;
  uint64_t seen_generation = ~uint64_t{0};
  const bool spin_forever = config_.wait().mode() == mesh::v1::WaitPolicy::SPIN;
  const int64_t spin_ns = config_.wait().mode() == mesh::v1::WaitPolicy::SLEEP
                              ? 0
                              : int64_t{config_.wait().spin_us()} * 1000;
  epoll_event events[64];
  // Spin bookkeeping without a clock read per message: the clock is read
  // once per kSpinsPerClockRead idle iterations, and `idle_since_ns` is set
  // at the first read after the last message (-1: not idle yet).
  uint32_t spins = 0;
  int64_t idle_since_ns = -1;
  int64_t next_hangup_check_ns = 0;
  // Without a handler: the messages of one drain pass, queued under one lock.
  std::vector<Message> queued;

  auto refresh = [&] {
    std::vector<std::shared_ptr<Link>> fresh;
    if (!CopyLinksIfChanged(&seen_generation, &fresh)) return;
    for (const auto& link : active) {
      epoll->Remove(link->socket_fd());
      epoll->Remove(link->rx_doorbell_fd());
    }
    active.swap(fresh);
    rang.assign(active.size(), 0);
    std::map<const Link*, DoorbellGuard> kept;
    for (size_t i = 0; i < active.size(); ++i) {
      // A link that is down waits for its retirement; watching it would
      // only wake us again and again (level-triggered) for nothing.
      if (active[i]->down()) continue;
      // The socket never carries data after the handshake: readability or
      // hang-up both mean the peer is gone (or misbehaving).
      (void)epoll->Add(active[i]->socket_fd(), EPOLLIN | EPOLLRDHUP, 2 * i + 2);
      auto g = guards.find(active[i].get());
      if (g != guards.end()) {
        kept.insert(*g);
        if (g->second.muted_until_ns != 0) continue;  // polled until the mute ends
      }
      (void)epoll->Add(active[i]->rx_doorbell_fd(), EPOLLIN, 2 * i + 3);
    }
    guards.swap(kept);  // forgets links that are gone
  };

  auto any_muted = [&] {
    return std::any_of(guards.begin(), guards.end(), [](const auto& g) { return g.second.muted_until_ns != 0; });
  };

  // A wake-up by link i's doorbell that found nothing to read.
  auto note_idle_wake = [&](size_t i) {
    DoorbellGuard& g = guards[active[i].get()];
    const int64_t now = SteadyNowNs();
    if (now - g.window_start_ns > kDoorbellSpamWindowNs) {
      g.window_start_ns = now;
      g.idle_wakes = 0;
    }
    if (++g.idle_wakes < kDoorbellSpamWakes || g.muted_until_ns != 0) return;
    g.muted_until_ns = now + kDoorbellMuteNs;
    epoll->Remove(active[i]->rx_doorbell_fd());
    if (g.mutes++ % 60 == 0) {
      log_.Warning("peer %s rang our doorbell %u times in %d ms without sending anything; ignoring its doorbell "
                   "for %d ms at a time (its ring is polled every %d ms meanwhile; %u time(s) so far)",
                   active[i]->peer_name(), g.idle_wakes, static_cast<int>(kDoorbellSpamWindowNs / 1'000'000),
                   static_cast<int>(kDoorbellMuteNs / 1'000'000), kMutedPollMs, g.mutes);
    }
  };

  // Ends the mutes that are over.
  auto unmute_expired = [&] {
    const int64_t now = SteadyNowNs();
    for (size_t i = 0; i < active.size(); ++i) {
      auto g = guards.find(active[i].get());
      if (g == guards.end() || g->second.muted_until_ns == 0 || now < g->second.muted_until_ns) continue;
      g->second.muted_until_ns = 0;
      g->second.idle_wakes = 0;
      g->second.window_start_ns = now;
      (void)epoll->Add(active[i]->rx_doorbell_fd(), EPOLLIN, 2 * i + 3);
    }
  };

  auto fail_link = [&](const std::shared_ptr<Link>& link, const std::string& why) {
    // Stop watching it at once: its socket or doorbell would keep waking
    // this level-triggered epoll until the link is retired.
    epoll->Remove(link->socket_fd());
    epoll->Remove(link->rx_doorbell_fd());
    LinkFailed(link, why);
  };

  // Everything the peer wrote, for a link that is going away.
  auto drain_rest = [&](const std::shared_ptr<Link>& link) {
    (void)link->Drain(~size_t{0} >> 1, [&](absl::string_view p) { Deliver(*link, p, &queued); });
    FlushQueued(&queued);
  };

  auto drain_all = [&]() -> bool {
    bool any = false;
    for (size_t i = 0; i < active.size(); ++i) {
      const auto& link = active[i];
      if (link->down()) continue;
      if (QueueFull()) break;
      auto n = link->Drain(kDrainBatch, [&](absl::string_view payload) { Deliver(*link, payload, &queued); });
      FlushQueued(&queued);
      if (!n.ok()) {
        fail_link(link, absl::StrCat("ring corrupted: ", n.status().message()));
      } else if (*n > 0) {
        any = true;
      }
      if (rang[i]) {  // rare: only after a wake-up by this doorbell
        if (n.ok() && *n == 0) note_idle_wake(i);
        rang[i] = 0;
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
        if (!link->down()) drain_rest(link);
        fail_link(link, "peer closed the link socket");
      } else if (absl::Status cleared = link->ClearDoorbell(); !cleared.ok()) {
        // The peer's end of the doorbell is gone: it exited (its link socket
        // says so too, maybe in this same batch) or hung up its doorbell.
        if (!link->down()) drain_rest(link);
        fail_link(link, std::string(cleared.message()));
      } else {
        rang[index] = 1;
      }
    }
  };

  auto retire_leavers = [&] {
    // acquire pairs with the release store in HandleLeave. A plain load
    // first: the exchange (a locked read-modify-write) only when set.
    if (!leaving_pending_.load(std::memory_order_acquire)) return;
    // acquire: as above; the exchange claims the batch of leavers.
    if (!leaving_pending_.exchange(false, std::memory_order_acquire)) return;
    std::vector<std::shared_ptr<Link>> leaving;
    {
      absl::MutexLock lock(&mu_);
      leaving.swap(leaving_links_);
    }
    for (const auto& link : leaving) {
      if (link->down()) continue;
      drain_rest(link);
      fail_link(link, "peer left the mesh");
    }
  };

  while (!stopping()) {
    refresh();
    retire_leavers();
    if (drain_all()) {
      spins = 0;
      idle_since_ns = -1;
      continue;
    }
    if (QueueFull()) {
      handle_events(epoll->Wait(events, 64, 10));
      continue;
    }
    // Nothing to read. Keep spinning while recently active (or forever with
    // SPIN), checking the sockets for hang-ups now and then.
    if (spin_forever || spin_ns > 0) {
      bool spin = true;
      if (spins++ % kSpinsPerClockRead == 0) {
        const int64_t now = SteadyNowNs();
        if (idle_since_ns < 0) idle_since_ns = now;
        if (!spin_forever && now - idle_since_ns >= spin_ns) {
          spin = false;
        } else if (now >= next_hangup_check_ns) {
          next_hangup_check_ns = now + kHangupCheckNs;
          handle_events(epoll->Wait(events, 64, 0));
        }
      }
      if (spin) {
        ringbuf::CpuRelax();
        continue;
      }
    }
    // Going to sleep: announce it on every ring, then re-check; a producer
    // that wrote after our check sees the flag and rings the doorbell.
    bool data_arrived = false;
    for (const auto& link : active) {
      if (!link->down() && !link->PrepareToSleep()) data_arrived = true;
    }
    if (data_arrived) continue;
    // With a muted doorbell, poll: its ring is drained at least every
    // kMutedPollMs.
    const bool polling = any_muted();
    handle_events(epoll->Wait(events, 64, polling ? kMutedPollMs : -1));
    if (polling) unmute_expired();
    // Look at the clock first thing after the wake-up: `idle_since_ns`
    // still dates from before the sleep, so a wake-up that brings nothing
    // (a spurious or hostile doorbell) goes straight back to sleep instead
    // of spinning again; one that brings data resets it in drain_all.
    spins = 0;
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

bool NodeImpl::CopyLinksIfChanged(uint64_t* seen_generation, std::vector<std::shared_ptr<Link>>* out) const {
  // [LinkGen] acquire: pairs with the release increments in InstallLink,
  // RetireLinks and Stop; the copy itself is taken under mu_.
  if (links_generation_.load(std::memory_order_acquire) == *seen_generation) return false;
  out->clear();
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [n, link] : links_) {
    if (!link->down()) out->push_back(link);
  }
  // relaxed: written only under mu_, which we hold.
  *seen_generation = links_generation_.load(std::memory_order_relaxed);
  return true;
}

std::vector<std::string> NodeImpl::UnresponsivePeers() const {
  std::vector<std::string> out;
  absl::ReaderMutexLock lock(&mu_);
  for (const auto& [n, link] : links_) {
    if (!link->down() && link->unresponsive()) out.push_back(n);
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

std::optional<ringbuf::Ring> NodeImpl::TakeSpareRing() {
  absl::MutexLock lock(&spare_mu_);
  std::optional<ringbuf::Ring> ring = std::move(spare_ring_);
  spare_ring_.reset();
  return ring;
}

void NodeImpl::ReplenishSpareRing() {
  {
    absl::MutexLock lock(&spare_mu_);
    if (spare_ring_.has_value() || stopping()) return;
  }
  // Outside the lock: creating a ring takes a few syscalls. A race with the
  // other handshake thread at worst makes one ring too many (dropped).
  const LinkParams params = MakeLinkParams();
  absl::StatusOr<ringbuf::Ring> ring = ringbuf::Ring::Create(params.ring_capacity_bytes, params.wait);
  if (!ring.ok()) return;  // the next handshake creates its own (and reports)
  absl::MutexLock lock(&spare_mu_);
  if (!spare_ring_.has_value() && !stopping()) spare_ring_.emplace(std::move(*ring));
}

void NodeImpl::InstallLink(std::shared_ptr<Link> link) {
  // Held from registration through the handler call: RetireLinks holds it
  // too, so a link's peer-down cannot be reported before its peer-up, and
  // handlers never run concurrently.
  absl::MutexLock handlers(&handlers_mu_);
  const PeerInfo info = PeerInfoOf(*link);
  {
    absl::MutexLock lock(&mu_);
    auto member = members_.find(link->peer_name());
    if (member == members_.end() || member->second.member.id() != link->peer().id() || links_.count(link->peer_name())) {
      log_.Debug("dropping redundant or stale link to %s", link->peer_name());
      (void)link->MarkDown();
      return;
    }
    links_[link->peer_name()] = link;
    member->second.since = absl::Now();
    member->second.failures = 0;
    BumpLocked();
    // [LinkGen] release: pairs with the acquire loads in ReceiveLoop and
    // FindLink (a read-modify-write, but off the data path).
    links_generation_.fetch_add(1, std::memory_order_release);
  }
  WakeReceiver();
  log_.Info("link up: %s (pid %d)", info.name, info.pid);
  if (peer_up_handler_) peer_up_handler_(info);
}

void NodeImpl::RetireLinks() {
  absl::MutexLock handlers(&handlers_mu_);  // see InstallLink
  std::vector<std::shared_ptr<Link>> dead;
  std::vector<PeerInfo> down;
  {
    absl::MutexLock lock(&mu_);
    dead.swap(dead_links_);
    for (const auto& link : dead) {
      auto it = links_.find(link->peer_name());
      if (it != links_.end() && it->second == link) {
        links_.erase(it);
        down.push_back(PeerInfoOf(*link));
      }
      DropMemberLocked(link->peer_name(), link->peer().id());
    }
    if (!dead.empty()) {
      BumpLocked();
      // [LinkGen] release: pairs as in InstallLink.
      links_generation_.fetch_add(1, std::memory_order_release);
    }
  }
  if (!dead.empty()) WakeReceiver();
  // The last reference to each link (and so its mappings) goes when the
  // receive thread drops its copy.
  for (const auto& info : down) {
    if (peer_down_handler_) peer_down_handler_(info);
  }
}

void NodeImpl::LinkFailed(const std::shared_ptr<Link>& link, absl::string_view why) {
  if (!link->MarkDown()) return;  // someone else noticed first and queued it
  log_.Info("link down: %s (%s)", link->peer_name(), why);
  {
    absl::MutexLock lock(&mu_);
    dead_links_.push_back(link);
  }
  WakeControl();
}

std::unique_ptr<LinkAcceptor> NodeImpl::MakeLinkAcceptor() {
  LinkAcceptor::Hooks hooks;
  hooks.params = [this] { return MakeLinkParams(); };
  hooks.is_member_pid = [this](pid_t pid) {
    absl::ReaderMutexLock lock(&mu_);
    for (const auto& [n, e] : members_) {
      if (e.member.pid() == pid) return true;
    }
    return false;
  };
  hooks.lookup = [this](const std::string& peer, uint64_t peer_id) -> absl::StatusOr<mesh::v1::Member> {
    absl::ReaderMutexLock lock(&mu_);
    auto it = members_.find(peer);
    if (it == members_.end() || it->second.member.id() != peer_id) {
      return absl::NotFoundError(absl::StrCat("'", absl::CHexEscape(peer), "' (id ", absl::Hex(peer_id),
                                              ") has not joined through discovery; join first"));
    }
    return it->second.member;
  };
  hooks.take_spare_ring = [this] { return TakeSpareRing(); };
  hooks.replenish_spare_ring = [this] { ReplenishSpareRing(); };
  hooks.install = [this](std::shared_ptr<Link> link) { InstallLink(std::move(link)); };
  LinkAcceptor::Limits limits;
  limits.handshake_timeout = kHandshakeTimeout;
  return std::make_unique<LinkAcceptor>(link_listen_.get(), &*link_epoll_, kTagListen, kTagFirstPending, &log_,
                                        std::move(hooks), limits);
}

absl::Time NodeImpl::Reconcile() {
  absl::Time now = absl::Now();
  // Every retry below sets its own time, and every event that makes work
  // (a Join or Leave served, a link accepted or lost) wakes the thread, so
  // an idle node only looks again after kIdleReconcile.
  absl::Time next = now + kIdleReconcile;
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
  // Configured seeds that are not (or no longer) members, once joined:
  // asked again now and then. Nodes that start together can otherwise form
  // separate meshes that never merge: each joins the first seed that
  // answers (say n2 and n3 join each other while n0 is still starting) and
  // never hears of the others. An answer merges the two member lists (and
  // the sync of `known` spreads the news to everyone).
  std::vector<std::string> stray;
  {
    absl::MutexLock lock(&mu_);
    if (seeds_joined_) {
      std::set<std::string> known_addresses = {grpc_address_};
      for (const auto& [n, e] : members_) known_addresses.insert(e.member.grpc_address());
      for (const std::string& seed : config_.seeds()) {
        if (known_addresses.count(seed)) continue;
        SeedRetry& r = stray_seeds_[seed];
        if (now >= r.next_try) {
          stray.push_back(seed);
        } else {
          next = std::min(next, r.next_try);
        }
      }
    }
  }
  for (const std::string& seed : stray) {
    if (stopping()) break;
    auto members = CallJoin(seed, absl::Now() + kRpcTimeout);
    absl::MutexLock lock(&mu_);
    SeedRetry& r = stray_seeds_[seed];
    if (members.ok()) {
      log_.Debug("seed %s answered again: %d member(s)", seed, members->size());
      for (const auto& m : *members) {
        if (CheckMember(m).ok()) LearnLocked(m);
      }
      r.backoff = kMinBackoff;
      next = absl::Now();
    } else {
      r.backoff = std::min(Backoff(r.backoff), kStraySeedMaxBackoff);
    }
    r.next_try = absl::Now() + r.backoff;
    next = std::min(next, r.next_try);
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
      auto link = Link::Dial(MakeLinkParams(), t.member, absl::Now() + kHandshakeTimeout, TakeSpareRing());
      if (link.ok()) {
        log_.Debug("handshake with %s took %s", peer, absl::FormatDuration(absl::Now() - started));
        InstallLink(std::move(*link));
        ReplenishSpareRing();
        continue;
      }
      ReplenishSpareRing();
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
  NameThisThread("mesh-control");
  Epoll* const epoll = &*control_epoll_;  // made in Start()
  epoll_event events[8];
  absl::Time next = absl::Now();
  while (!stopping()) {
    int timeout_ms = static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
    int n = epoll->Wait(events, 8, timeout_ms);
    if (stopping()) break;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kTagWake) DrainEventFd(control_event_.get());
    }
    RetireLinks();
    next = Reconcile();
    RetireLinks();
  }
}

void NodeImpl::HealthLoop() {
  NameThisThread("mesh-health");
  const absl::Duration unresponsive_after = absl::Milliseconds(config_.unresponsive_after_ms());
  // A tick costs one poll() and a few shared-memory accesses per link: the
  // link set is copied only when it changed (as in ReceiveLoop).
  std::vector<std::shared_ptr<Link>> links;
  uint64_t seen_generation = ~uint64_t{0};
  pollfd wake = {health_wake_.get(), POLLIN, 0};
  const int interval_ms = static_cast<int>(absl::ToInt64Milliseconds(HeartbeatInterval()));
  while (!stopping()) {
    (void)CopyLinksIfChanged(&seen_generation, &links);
    const absl::Time now = absl::Now();
    for (const auto& link : links) {
      if (link->down()) continue;
      link->BeatHeartbeat();
      if (!link->CheckPeerLiveness(now, unresponsive_after)) continue;
      const absl::Time since = link->unresponsive_since();
      const bool unresponsive = since != absl::InfiniteFuture();
      if (unresponsive) {
        log_.Warning("peer %s (pid %d) is unresponsive: its process has not run for %s (stopped or hung?); sends to "
                     "it queue in its ring until the ring is full, then fail",
                     link->peer_name(), link->peer().pid(),
                     absl::FormatDuration(absl::Trunc(now - since, absl::Milliseconds(1))));
      } else {
        log_.Info("peer %s is responsive again", link->peer_name());
      }
      if (peer_unresponsive_handler_) {
        // Serialized with the up/down handlers (see InstallLink).
        absl::MutexLock handlers(&handlers_mu_);
        if (!link->down()) {
          peer_unresponsive_handler_(PeerInfoOf(*link), unresponsive);
        }
      }
    }
    if (::poll(&wake, 1, interval_ms) > 0) DrainEventFd(health_wake_.get());
  }
}

void NodeImpl::LinkLoop() {
  NameThisThread("mesh-link");
  Epoll* const epoll = &*link_epoll_;  // made in Start()
  epoll_event events[16];
  while (!stopping()) {
    const absl::Time next = link_acceptor_->NextTimer();
    const int timeout_ms =
        next == absl::InfiniteFuture()
            ? -1
            : static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
    const int n = epoll->Wait(events, 16, timeout_ms);
    if (stopping()) break;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kTagWake) {
        DrainEventFd(link_wake_.get());
      } else {
        link_acceptor_->OnEvent(events[i].data.u64);
      }
    }
    link_acceptor_->OnTimer(absl::Now());
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
      l->set_b_unresponsive(link->unresponsive());
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
      l->set_a_unresponsive(link->unresponsive());
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
      // Each end reports whether the *other* end is unresponsive.
      if (s.reporter() == l.a()) {
        m.set_b_unresponsive(l.b_unresponsive());
        m.set_messages_a_to_b(l.messages_a_to_b());
        m.set_bytes_a_to_b(l.bytes_a_to_b());
        m.set_full_events_a_to_b(l.full_events_a_to_b());
        m.set_ring_bytes_a_to_b(l.ring_bytes_a_to_b());
      } else {
        m.set_a_unresponsive(l.a_unresponsive());
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
