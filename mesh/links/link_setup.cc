#include "mesh/links/link_setup.h"

#include <sys/epoll.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/epoll.h"
#include "base/eventfd.h"
#include "fdpass/socket.h"
#include "mesh/base/os.h"

namespace mesh {
namespace {

// Tags in the accept thread's epoll set.
constexpr uint64_t kTagWake = 0;
constexpr uint64_t kTagListen = 1;
// The handshakes in progress (LinkAcceptor) from this tag up.
constexpr uint64_t kTagFirstPending = 16;

}  // namespace

absl::StatusOr<std::unique_ptr<LinkSetup>> LinkSetup::Listen(std::string path, Hooks hooks,
                                                            absl::Duration handshake_timeout, const Logger* log) {
  absl::StatusOr<base::UniqueFd> wake = base::MakeEventFd();
  if (!wake.ok()) return wake.status();
  absl::StatusOr<base::Epoll> epoll = base::Epoll::Create();
  if (!epoll.ok()) return epoll.status();
  if (absl::Status added = epoll->Add(wake->get(), EPOLLIN, kTagWake); !added.ok()) return added;
  // The link socket doubles as the name lock in this run directory.
  absl::StatusOr<base::UniqueFd> listen = fdpass::ListenSeqpacket(path);
  if (!listen.ok()) {
    return absl::Status(listen.status().code(),
                        absl::StrCat("cannot listen on link socket ", path, ": ", listen.status().message(),
                                     absl::IsAlreadyExists(listen.status())
                                         ? " (is another node with this name running?)"
                                         : ""));
  }
  std::unique_ptr<LinkSetup> setup(new LinkSetup(std::move(path), std::move(hooks), log, std::move(*listen),
                                                 std::move(*wake), std::move(*epoll)));
  LinkAcceptor::Hooks acceptor_hooks;
  LinkSetup* const self = setup.get();
  acceptor_hooks.params = self->hooks_.params;
  acceptor_hooks.is_member_pid = self->hooks_.is_member_pid;
  acceptor_hooks.lookup = self->hooks_.lookup;
  acceptor_hooks.take_spare_ring = [self] { return self->TakeSpareRing(); };
  acceptor_hooks.replenish_spare_ring = [self] { self->ReplenishSpareRing(); };
  acceptor_hooks.install = self->hooks_.install;
  LinkAcceptor::Limits limits;
  limits.handshake_timeout = handshake_timeout;
  setup->acceptor_ = std::make_unique<LinkAcceptor>(setup->listen_.get(), &setup->epoll_, kTagListen,
                                                    kTagFirstPending, log, std::move(acceptor_hooks), limits);
  if (absl::Status started = setup->acceptor_->Start(); !started.ok()) return started;  // ~LinkSetup cleans up
  setup->ReplenishSpareRing();
  return setup;
}

LinkSetup::LinkSetup(std::string path, Hooks hooks, const Logger* log, base::UniqueFd listen, base::UniqueFd wake,
                     base::Epoll epoll)
    : path_(std::move(path)),
      hooks_(std::move(hooks)),
      log_(log),
      listen_(std::move(listen)),
      wake_(std::move(wake)),
      epoll_(std::move(epoll)) {}

LinkSetup::~LinkSetup() {
  Stop();
  acceptor_.reset();  // closes the handshakes in progress
  {
    absl::MutexLock lock(&spare_mu_);
    spare_ring_.reset();
  }
  // Only this node's file: Listen failed (and no object exists) when another
  // node held the name.
  listen_.reset();
  RemoveFile(path_);
}

void LinkSetup::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void LinkSetup::Stop() {
  // release: pairs with the acquire loads in Loop and ReplenishSpareRing.
  stopping_.store(true, std::memory_order_release);
  (void)base::SignalEventFd(wake_.get());
  if (thread_.joinable()) thread_.join();
}

void LinkSetup::Loop() {
  NameThisThread("mesh-accept");
  epoll_event events[16];
  // acquire: pairs with the release store in Stop.
  while (!stopping_.load(std::memory_order_acquire)) {
    const absl::Time next = acceptor_->NextTimer();
    const int timeout_ms =
        next == absl::InfiniteFuture()
            ? -1
            : static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(next - absl::Now()) + 1));
    const int n = epoll_.Wait(events, 16, timeout_ms);
    // acquire: as above.
    if (stopping_.load(std::memory_order_acquire)) break;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kTagWake) {
        (void)base::DrainEventFd(wake_.get());
      } else {
        acceptor_->OnEvent(events[i].data.u64);
      }
    }
    acceptor_->OnTimer(absl::Now());
  }
}

std::optional<ringbuf::Ring> LinkSetup::TakeSpareRing() {
  absl::MutexLock lock(&spare_mu_);
  std::optional<ringbuf::Ring> ring = std::move(spare_ring_);
  spare_ring_.reset();
  return ring;
}

void LinkSetup::ReplenishSpareRing() {
  {
    absl::MutexLock lock(&spare_mu_);
    // acquire: pairs with the release store in Stop.
    if (spare_ring_.has_value() || stopping_.load(std::memory_order_acquire)) return;
  }
  // Outside the lock: creating a ring takes a few syscalls. A race with the
  // other handshake thread at worst makes one ring too many (dropped).
  const LinkParams params = hooks_.params();
  absl::StatusOr<ringbuf::Ring> ring = ringbuf::Ring::Create(params.ring_capacity_bytes, params.wait);
  if (!ring.ok()) return;  // the next handshake creates its own (and reports)
  absl::MutexLock lock(&spare_mu_);
  if (!spare_ring_.has_value()) spare_ring_.emplace(std::move(*ring));
}

absl::StatusOr<std::shared_ptr<Link>> LinkSetup::Dial(const mesh::v1::Member& peer, absl::Time deadline) {
  const absl::Time started = absl::Now();
  absl::StatusOr<std::shared_ptr<Link>> link = Link::Dial(hooks_.params(), peer, deadline, TakeSpareRing());
  ReplenishSpareRing();
  if (link.ok()) {
    log_->Debug("handshake with %s took %s", peer.name(), absl::FormatDuration(absl::Now() - started));
  }
  return link;
}

}  // namespace mesh
