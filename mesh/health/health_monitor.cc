#include "mesh/health/health_monitor.h"

#include <poll.h>

#include <utility>

#include "base/eventfd.h"
#include "mesh/base/os.h"

namespace mesh {
namespace health {

absl::StatusOr<std::unique_ptr<HealthMonitor>> HealthMonitor::Create(Options options, const LinkTable* table,
                                                                     OnChange on_change) {
  absl::StatusOr<base::UniqueFd> wake = base::MakeEventFd();
  if (!wake.ok()) return wake.status();
  return std::unique_ptr<HealthMonitor>(
      new HealthMonitor(options, table, std::move(on_change), std::move(*wake)));
}

HealthMonitor::HealthMonitor(Options options, const LinkTable* table, OnChange on_change, base::UniqueFd wake)
    : options_(options), table_(table), on_change_(std::move(on_change)), wake_(std::move(wake)) {}

HealthMonitor::~HealthMonitor() { Stop(); }

void HealthMonitor::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void HealthMonitor::Stop() {
  // release: pairs with the acquire load in Loop.
  stopping_.store(true, std::memory_order_release);
  (void)base::SignalEventFd(wake_.get());
  if (thread_.joinable()) thread_.join();
}

int HealthMonitor::Tick(absl::Time now) {
  // A tick costs a few shared-memory accesses per link: the link set is
  // copied only when it changed.
  (void)table_->CopyIfChanged(&seen_generation_, &links_);
  int changed = 0;
  for (const auto& link : links_) {
    if (link->down()) continue;
    link->BeatHeartbeat();
    if (!link->CheckPeerLiveness(now, options_.unresponsive_after)) continue;
    ++changed;
    on_change_(link, link->unresponsive());
  }
  return changed;
}

void HealthMonitor::Loop() {
  NameThisThread("mesh-health");
  pollfd wake = {wake_.get(), POLLIN, 0};
  const int interval_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.interval));
  // acquire: pairs with the release store in Stop.
  while (!stopping_.load(std::memory_order_acquire)) {
    Tick(absl::Now());
    if (::poll(&wake, 1, interval_ms) > 0) (void)base::DrainEventFd(wake_.get());
  }
}

}  // namespace health
}  // namespace mesh
