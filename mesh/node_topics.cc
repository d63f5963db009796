// NodeImpl: topics and services. The wiring between the Receiver (frames
// and control messages it does not handle itself, via FrameRouter), the
// interest exchange (what peers subscribe to and serve), and the Topics and
// Rpc components; plus the public API's handles. Lifecycle is in node.cc.
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "mesh/node_impl.h"

namespace mesh {

// ---------------------------------------------------------------------------
// Public handles (mesh/topic.h, mesh/rpc.h): thin owners of their cores.

Publisher::Publisher(std::shared_ptr<pubsub::PublisherCore> core) : core_(std::move(core)) {}
Publisher::~Publisher() { core_->Detach(); }
const std::string& Publisher::topic() const { return core_->topic(); }
absl::StatusOr<PublishResult> Publisher::Publish(absl::string_view payload, absl::Time deadline) {
  return core_->Publish(payload, deadline);
}
absl::StatusOr<mesh::Loan> Publisher::Loan(size_t bytes, absl::Time deadline) {
  absl::StatusOr<pool::BlockHandle> block = core_->AllocateBlock(bytes, deadline);
  if (!block.ok()) return block.status();
  return mesh::Loan(std::move(*block));
}
absl::StatusOr<PublishResult> Publisher::Publish(mesh::Loan&& loan, absl::Time deadline) {
  if (loan.block() == nullptr) return absl::InvalidArgumentError("the loan is empty (already sent, or moved from)");
  absl::StatusOr<PublishResult> result = core_->PublishBlock(*loan.block(), deadline);
  if (result.ok()) loan.Consume();
  return result;
}
size_t Publisher::matched() const { return core_->matched(); }
std::vector<std::string> Publisher::subscribers() const { return core_->subscribers(); }
absl::Status Publisher::WaitForSubscribers(size_t n, absl::Time deadline) {
  return core_->WaitForSubscribers(n, deadline);
}
uint64_t Publisher::published_messages() const { return core_->published_messages(); }
uint64_t Publisher::published_bytes() const { return core_->published_bytes(); }

Subscription::Subscription(std::shared_ptr<pubsub::SubscriptionCore> core) : core_(std::move(core)) {}
Subscription::~Subscription() { core_->Close(); }
void Subscription::Unsubscribe() { core_->Close(); }
const std::string& Subscription::pattern() const { return core_->pattern(); }
absl::StatusOr<Message> Subscription::Receive(absl::Time deadline) { return core_->Receive(deadline); }
int Subscription::ready_fd() const { return core_->ready_fd(); }
uint64_t Subscription::received() const { return core_->received(); }

ServiceRegistration::ServiceRegistration(std::shared_ptr<rpc::ServiceCore> core) : core_(std::move(core)) {}
ServiceRegistration::~ServiceRegistration() { core_->Close(); }
const std::string& ServiceRegistration::service() const { return core_->name(); }
uint64_t ServiceRegistration::handled() const { return core_->handled(); }

// ---------------------------------------------------------------------------
// Wiring.

void NodeImpl::MakeTopicsAndServices() {
  pubsub::PublisherContext pc;
  pc.links = &links_;
  pc.interest = &interest_;
  pc.max_message_bytes = config_.max_message_bytes();
  pc.check_running = [this](absl::string_view what) { return CheckRunning(what); };
  pc.link_failed = [this](const std::shared_ptr<Transport>& link, absl::string_view why) { LinkFailed(link, why); };
  pc.post_event = [this](std::function<void()> fn) { events_.Post(std::move(fn)); };
  pc.pool = pool_;
  pc.pool_threshold = config_.pool().threshold_bytes();
  pc.shared_ring_bytes = config_.ring_capacity_bytes();
  topics_ = std::make_unique<pubsub::Topics>(std::move(pc), &interest_, &log_, /*resume_fd=*/-1);
  rpc::RpcContext rc;
  rc.max_message_bytes = config_.max_message_bytes();
  rc.check_running = [this](absl::string_view what) { return CheckRunning(what); };
  rc.link_failed = [this](const std::shared_ptr<Transport>& link, absl::string_view why) { LinkFailed(link, why); };
  // Compares with the table, not receiver_ (made by Start, maybe while a Call runs).
  rc.on_receive_thread = [this] { return Receiver::CurrentThreadTable() == &links_; };
  rc.call_spin = config_.wait().mode() == mesh::v1::WaitPolicy::SLEEP
                     ? absl::ZeroDuration()
                     : absl::Microseconds(config_.wait().spin_us());
  rc.wake_receiver = [this] {
    // Set in Start(), before any link (and so any call) exists.
    if (receiver_ != nullptr) receiver_->Wake();
  };
  rpc_ = std::make_unique<rpc::Rpc>(std::move(rc), &interest_, &log_);
}

void NodeImpl::TopicsLinkUp(const std::shared_ptr<Transport>& link) {
  interest_.LinkUp(link);  // the peer learns what we subscribe to and serve
  interest_.RetryUnsent();
}

void NodeImpl::TopicsLinkDown(const Transport* link, absl::string_view why) {
  interest_.LinkGone(link);
  rpc_->LinkDown(link, why);
  PostRematch();  // matched counts drop, on_matched callbacks
}

void NodeImpl::PostRematch() {
  // One queued at a time: it re-matches everything when it runs.
  if (rematch_queued_.exchange(true, std::memory_order_acq_rel)) return;
  events_.Post([this] {
    // release: a change after this point queues another rematch.
    rematch_queued_.store(false, std::memory_order_release);
    interest_.RetryUnsent();
    topics_->RematchAll();
  });
}

mesh::v1::NodeTopics NodeImpl::TopicsReport() const {
  mesh::v1::NodeTopics out = topics_->Report(name());
  rpc_->Report(&out);
  return out;
}

bool NodeImpl::RouteFrame(const std::shared_ptr<Transport>& link, const FrameHeader& header,
                          absl::string_view payload, const std::shared_ptr<const SharedPayload>& pooled) {
  switch (header.frame_kind()) {
    case FrameKind::kTopic:
      return topics_->router().OnFrame(*link, header, payload, pooled);
    case FrameKind::kRequest:
      rpc_->OnRequest(link, header, payload);
      return true;
    case FrameKind::kResponse:
      rpc_->OnResponse(*link, header, payload);
      return true;
    default:
      return true;  // the Receiver routes no other kind here
  }
}

bool NodeImpl::RouteShared(const std::shared_ptr<Transport>& link, uint32_t channel, absl::string_view topic,
                           absl::string_view payload) {
  return topics_->router().OnSharedFrame(*link, channel, topic, payload);
}

absl::Status NodeImpl::RouteControl(const std::shared_ptr<Transport>& link, const mesh::v1::LinkControl& msg) {
  if (msg.body_case() != mesh::v1::LinkControl::kInterest) {
    return absl::UnimplementedError("unknown control message");
  }
  SHMESH_RETURN_IF_ERROR(interest_.Apply(link, msg.interest()));
  PostRematch();
  return absl::OkStatus();
}

void NodeImpl::LinksChanged(absl::Span<const std::shared_ptr<Transport>> active) {
  topics_->router().LinksChanged(active);
}

// ---------------------------------------------------------------------------
// The API.

absl::StatusOr<std::unique_ptr<Publisher>> NodeImpl::Advertise(absl::string_view topic, PublisherOptions options) {
  if (stopping()) return absl::FailedPreconditionError(absl::StrCat("node ", name(), " is stopped"));
  SHMESH_ASSIGN_OR_RETURN(std::shared_ptr<pubsub::PublisherCore> core, topics_->Advertise(topic, std::move(options)));
  return std::unique_ptr<Publisher>(new Publisher(std::move(core)));
}

absl::StatusOr<std::unique_ptr<Subscription>> NodeImpl::Subscribe(absl::string_view pattern,
                                                                  std::function<void(const MessageView&)> handler,
                                                                  SubscribeOptions options) {
  if (stopping()) return absl::FailedPreconditionError(absl::StrCat("node ", name(), " is stopped"));
  SHMESH_ASSIGN_OR_RETURN(std::shared_ptr<pubsub::SubscriptionCore> core,
                          topics_->Subscribe(pattern, std::move(handler), options));
  return std::unique_ptr<Subscription>(new Subscription(std::move(core)));
}

absl::StatusOr<std::unique_ptr<ServiceRegistration>> NodeImpl::Serve(absl::string_view service,
                                                                     ServiceHandler handler) {
  if (stopping()) return absl::FailedPreconditionError(absl::StrCat("node ", name(), " is stopped"));
  SHMESH_ASSIGN_OR_RETURN(std::shared_ptr<rpc::ServiceCore> core, rpc_->Serve(service, std::move(handler)));
  return std::unique_ptr<ServiceRegistration>(new ServiceRegistration(std::move(core)));
}

absl::StatusOr<std::string> NodeImpl::Call(absl::string_view service, absl::string_view request, absl::Time deadline,
                                           const CallOptions& options) {
  return rpc_->Call(service, request, deadline, options);
}

std::vector<std::string> NodeImpl::Servers(absl::string_view service) const { return rpc_->Servers(service); }

}  // namespace mesh
