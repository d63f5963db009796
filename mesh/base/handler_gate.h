// HandlerGate: the guard around a user handler that can be closed from any
// thread (a subscription's, a service's). Run() calls the handler unless
// the gate is closed, one call at a time; Close() returns once no call is
// in progress and none will start again, except when Close() is called from
// inside the handler (then it returns at once: the call in progress is its
// caller). The first Close() also runs the gate's on-close action, outside
// any lock of the gate; Detach() drops that action first (its owner is
// going away) and closes.
//
// Thread contract: thread-safe.
#ifndef SHMESH_MESH_BASE_HANDLER_GATE_H_
#define SHMESH_MESH_BASE_HANDLER_GATE_H_

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace mesh {

class HandlerGate {
 public:
  explicit HandlerGate(std::function<void()> on_close = nullptr) {
    absl::MutexLock lock(&close_mu_);
    on_close_ = std::move(on_close);
  }
  HandlerGate(const HandlerGate&) = delete;
  HandlerGate& operator=(const HandlerGate&) = delete;

  // Calls fn() unless closed; false (fn not called) once closed.
  template <typename Fn>
  bool Run(Fn&& fn) {
    std::lock_guard<std::mutex> lock(call_mu_);
    // acquire: pairs with the release half of the exchange in Close.
    if (closed_.load(std::memory_order_acquire)) return false;
    running_.store(std::this_thread::get_id(), std::memory_order_relaxed);
    std::forward<Fn>(fn)();
    running_.store(std::thread::id(), std::memory_order_relaxed);
    return true;
  }

  // Closes the gate (see above). True for the call that closed it.
  bool Close() {
    // acq_rel: the release half pairs with the acquire load in Run.
    if (closed_.exchange(true, std::memory_order_acq_rel)) return false;
    // relaxed: only this thread's own store can match its id.
    if (running_.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
      std::lock_guard<std::mutex> wait_for_call(call_mu_);
    }
    std::function<void()> on_close;
    {
      absl::MutexLock lock(&close_mu_);
      on_close.swap(on_close_);
    }
    if (on_close) on_close();
    return true;
  }

  // Drops the on-close action, then closes.
  void Detach() {
    {
      absl::MutexLock lock(&close_mu_);
      on_close_ = nullptr;
    }
    Close();
  }

  // acquire: as in Run.
  bool closed() const { return closed_.load(std::memory_order_acquire); }

 private:
  // Held around each call, so that Close() can wait for one in progress.
  // A std::mutex: it is taken once per delivered message, and Debian's
  // Abseil is built with deadlock detection, which makes an absl::Mutex
  // Lock/Unlock pair cost 40-70 ns here against 5-10 ns.
  std::mutex call_mu_;
  // The thread inside fn() (std::thread::id() when none): written under
  // call_mu_, read by Close() before it takes call_mu_.
  std::atomic<std::thread::id> running_{};
  std::atomic<bool> closed_{false};
  absl::Mutex close_mu_;
  std::function<void()> on_close_ ABSL_GUARDED_BY(close_mu_);
};

}  // namespace mesh

#endif  // SHMESH_MESH_BASE_HANDLER_GATE_H_
