// HealthMonitor: the node's health thread ("mesh-health"). Every interval
// it beats the heartbeat of every link this node reads (so peers see that
// it runs) and checks each peer's heartbeat (Transport::CheckPeerLiveness,
// a LivenessTracker per link), reporting peers that stop beating for
// unresponsive_after (and that start again) through `on_change`. It never
// waits on anything but its own wake-up, so a control thread stuck in a
// slow gRPC call cannot make this node look unresponsive.
//
// Tick() is the whole of one period and takes the time as an argument, so
// tests drive it with a fake clock.
//
// Thread contract: Start/Stop from the node's lifecycle; Tick() from the
// health thread (or a test, with the thread not started). `on_change` runs
// on the health thread and must not block.
#ifndef SHMESH_MESH_HEALTH_HEALTH_MONITOR_H_
#define SHMESH_MESH_HEALTH_HEALTH_MONITOR_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "mesh/links/link_table.h"
#include "mesh/links/transport.h"

namespace mesh {
namespace health {

class HealthMonitor {
 public:
  struct Options {
    absl::Duration interval = absl::Milliseconds(500);
    absl::Duration unresponsive_after = absl::Seconds(2);
  };
  // A peer became unresponsive (true) or responsive again (false).
  using OnChange = std::function<void(const std::shared_ptr<Transport>&, bool unresponsive)>;

  // `table` is borrowed and must outlive the monitor.
  static absl::StatusOr<std::unique_ptr<HealthMonitor>> Create(Options options, const LinkTable* table,
                                                               OnChange on_change);
  ~HealthMonitor();

  void Start();
  void Stop();  // idempotent
  // One period at `now`: beat, check, report. Returns how many peers
  // changed state.
  int Tick(absl::Time now);

 private:
  HealthMonitor(Options options, const LinkTable* table, OnChange on_change, base::UniqueFd wake);
  void Loop();

  const Options options_;
  const LinkTable* const table_;
  const OnChange on_change_;
  const base::UniqueFd wake_;
  // The thread's copy of the link set, refreshed when the table changes.
  std::vector<std::shared_ptr<Transport>> links_;
  uint64_t seen_generation_ = 0;
  std::thread thread_;
  // release in Stop pairs with acquire in Loop.
  std::atomic<bool> stopping_{false};
};

}  // namespace health
}  // namespace mesh

#endif  // SHMESH_MESH_HEALTH_HEALTH_MONITOR_H_
