#ifndef SHMESH_MESH_DATAPLANE_IDLE_WAIT_H_
#define SHMESH_MESH_DATAPLANE_IDLE_WAIT_H_

#include <cstdint>

#include "proto/mesh/v1/config.pb.h"

namespace mesh {

// CLOCK_MONOTONIC in nanoseconds: about half the cost of absl::Now() with
// Debian's Abseil, for the spin bookkeeping.
int64_t SteadyNowNs();

// What the receive thread does after a pass that found nothing to read,
// under the node's WaitPolicy (config.proto):
//   SPIN      pause and poll again, forever;
//   SLEEP     sleep on the doorbells at once;
//   ADAPTIVE  pause and poll for the first kPauseSpinNs after the last
//             frame, then poll with a sched_yield between polls until
//             spin_us have passed, then sleep.
// The yielding phase is what keeps ADAPTIVE receive threads from taking
// the CPU from threads with work when there are more runnable threads
// than CPUs (a publisher and 8 subscriber processes on 2 CPUs: 2.6x the
// msgs/s per subscriber, bench/README.md). On an idle machine a yield
// returns at once, so a frame that comes in that phase is seen at most one
// syscall (under 1 us) late. A stream or ping-pong whose gaps stay under
// kPauseSpinNs never yields.
//
// The clock is read once per kSpinsPerClockRead pauses (a read costs about
// as much as a poll), and at every yielding poll (a yield may last a time
// slice). One thread only.
class IdleWait {
 public:
  static constexpr int64_t kPauseSpinNs = 5'000;
  static constexpr uint32_t kSpinsPerClockRead = 16;

  enum class Action { kPause, kYield, kSleep };
  struct Step {
    Action action;
    // How long the links have been quiet, and the clock then; -1 (both)
    // when this step did not read the clock.
    int64_t quiet_ns;
    int64_t now_ns;
  };

  // `clock` returns nanoseconds of a monotonic clock (tests pass a fake).
  explicit IdleWait(const mesh::v1::WaitPolicy& policy, int64_t (*clock)() = SteadyNowNs);

  // Whether the policy spins at all (false: SLEEP; Next would say kSleep).
  bool spins() const { return spin_forever_ || spin_ns_ > 0; }

  // A pass found nothing to read: what to do before the next pass.
  Step Next();
  // A pass found frames: the quiet time starts again at the next Next().
  void Busy();
  // Back from sleeping. The quiet time still counts from before the sleep,
  // so a wake-up that brings nothing (spurious, or a hostile doorbell)
  // sleeps again at once instead of spinning; one that brings data calls
  // Busy.
  void WokeUp();

 private:
  int64_t (*const clock_)();
  const bool spin_forever_;
  const int64_t spin_ns_;
  uint32_t spins_ = 0;
  int64_t idle_since_ns_ = -1;  // -1: not quiet yet
  bool yielding_ = false;
};

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_IDLE_WAIT_H_
