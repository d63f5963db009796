// Waiting policy for ring endpoints: how long to spin before sleeping on a
// doorbell, and how that budget adapts. Syscall-free (it reads a clock).
//
// Why adapt: sleeping costs a wake-up of ~10 us plus syscalls on both sides.
// In ping-pong, if each side spins for less than the other side's wake-up
// latency, every message finds the peer asleep and both sides sleep on
// every message (the "sleep cascade"): latency jumps from ~0.3 us to
// 20+ us and the extra syscalls keep it there. Spinning longer than the wake
// latency breaks the cascade, but spinning costs CPU on an idle ring. So:
//
//   * The budget starts at `spin` (default 100 us, well above the wake
//     latency), so a fresh ring in steady traffic never sleeps.
//   * A wait that slept but was satisfied within `spin` of starting (a
//     longer spin would have caught it: the peer is active) doubles the
//     budget, up to `spin`.
//   * A wait that lasted longer than `spin` (satisfied late, or timed out
//     after sleeping: the ring is idle) halves it, down to `min_spin`.
//   * A wait satisfied while spinning leaves it alone.
//
// Steady ping-pong therefore converges to the full spin within a few
// messages and stays awake; a mostly idle ring costs only `min_spin` of CPU
// per message burst before it sleeps.
#ifndef SHMESH_RINGBUF_WAIT_H_
#define SHMESH_RINGBUF_WAIT_H_

#include <chrono>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace ringbuf {

struct WaitOptions {
  // Longest spin (busy wait with a CPU pause) before sleeping on the
  // doorbell. ZeroDuration(): never spin, sleep at once.
  // InfiniteDuration(): busy-poll, never sleep (until the deadline).
  absl::Duration spin = absl::Microseconds(100);
  // Floor for the adaptive budget. Clamped to `spin`.
  absl::Duration min_spin = absl::Microseconds(2);
  // false: always spin exactly `spin`.
  bool adaptive = true;

  static WaitOptions BusyPoll() {
    WaitOptions o;
    o.spin = absl::InfiniteDuration();
    o.adaptive = false;
    return o;
  }
  static WaitOptions NoSpin() {
    WaitOptions o;
    o.spin = absl::ZeroDuration();
    o.min_spin = absl::ZeroDuration();
    o.adaptive = false;
    return o;
  }
  static WaitOptions FixedSpin(absl::Duration spin) {
    WaitOptions o;
    o.spin = spin;
    o.min_spin = spin;
    o.adaptive = false;
    return o;
  }
};

// The adaptive spin budget of one waiter (see the file comment).
// Thread contract: thread-compatible; each ring endpoint owns one and uses
// it from its one thread.
class AdaptiveSpin {
 public:
  explicit AdaptiveSpin(const WaitOptions& options = WaitOptions()) { Reset(options); }
  void Reset(const WaitOptions& options);

  // The current spin budget (InfiniteDuration() for busy-poll).
  absl::Duration budget() const;
  bool busy_poll() const { return infinite_; }

  // Outcome of one wait that did not finish in the spin phase: it slept and
  // its total duration (spin + sleep) was `waited`; `satisfied` is false
  // for a timeout.
  void OnSlept(absl::Duration waited, bool satisfied);

 private:
  bool infinite_ = false;
  bool adaptive_ = true;
  int64_t max_ns_ = 0;
  int64_t min_ns_ = 0;
  int64_t cur_ns_ = 0;
};

// Emits a CPU pause/yield hint for spin loops.
inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Calls `ready()` in a pause loop until it returns true (-> true), or
// `budget` has passed or `deadline` is reached (-> false). A zero budget
// returns false without calling `ready`. The clock is read only every few
// iterations, and never when both limits are infinite.
template <typename Ready>
bool SpinUntil(Ready&& ready, absl::Duration budget, absl::Time deadline) {
  if (budget <= absl::ZeroDuration()) return false;
  constexpr int kChecksPerClockRead = 16;
  const bool forever = budget == absl::InfiniteDuration() && deadline == absl::InfiniteFuture();
  std::chrono::steady_clock::time_point end;
  if (!forever) {
    absl::Duration limit = deadline - absl::Now();
    if (limit > budget) limit = budget;
    if (limit <= absl::ZeroDuration()) return false;
    end = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(limit);
  }
  for (;;) {
    for (int i = 0; i < kChecksPerClockRead; ++i) {
      if (ready()) return true;
      CpuRelax();
    }
    if (!forever && std::chrono::steady_clock::now() >= end) return ready();
  }
}

}  // namespace ringbuf

#endif  // SHMESH_RINGBUF_WAIT_H_
