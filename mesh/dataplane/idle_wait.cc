#include "mesh/dataplane/idle_wait.h"

#include <chrono>

namespace mesh {

int64_t SteadyNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

IdleWait::IdleWait(const mesh::v1::WaitPolicy& policy, int64_t (*clock)())
    : clock_(clock),
      spin_forever_(policy.mode() == mesh::v1::WaitPolicy::SPIN),
      spin_ns_(policy.mode() == mesh::v1::WaitPolicy::SLEEP ? 0 : int64_t{policy.spin_us()} * 1000) {}

IdleWait::Step IdleWait::Next() {
  if (!spins()) return {Action::kSleep, -1, -1};
  Step step{Action::kPause, -1, -1};
  if (yielding_ || spins_++ % kSpinsPerClockRead == 0) {
    const int64_t now = clock_();
    if (idle_since_ns_ < 0) idle_since_ns_ = now;
    step.now_ns = now;
    step.quiet_ns = now - idle_since_ns_;
    if (!spin_forever_ && step.quiet_ns >= spin_ns_) {
      step.action = Action::kSleep;
      return step;
    }
    yielding_ = !spin_forever_ && step.quiet_ns >= kPauseSpinNs;
  }
  if (yielding_) step.action = Action::kYield;
  return step;
}

void IdleWait::Busy() {
  spins_ = 0;
  idle_since_ns_ = -1;
  yielding_ = false;
}

void IdleWait::WokeUp() {
  spins_ = 0;
  yielding_ = false;
}

}  // namespace mesh
