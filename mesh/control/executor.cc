#include "mesh/control/executor.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mesh/base/os.h"

namespace mesh {
namespace control {

Executor::Executor(Options options) : options_(std::move(options)) {
  const int n = options_.threads < 1 ? 1 : options_.threads;
  workers_.reserve(n);
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { Work(); });
}

Executor::~Executor() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    wake_.SignalAll();
  }
  for (auto& t : workers_) t.join();
  // No worker is left: the queues are ours. Destroy the tasks outside mu_
  // (their captures may do anything but use this executor).
  std::deque<std::function<void()>> ready;
  std::map<std::pair<absl::Time, uint64_t>, std::function<void()>> delayed;
  {
    absl::MutexLock lock(&mu_);
    ready.swap(ready_);
    delayed.swap(delayed_);
  }
}

absl::Status Executor::Schedule(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stop_) return absl::UnavailableError(absl::StrCat(options_.name, " is stopping"));
  if (static_cast<int>(ready_.size()) >= options_.max_queued) {
    return absl::ResourceExhaustedError(absl::StrCat(options_.max_queued, " tasks already wait for the ",
                                                     options_.threads, " threads of ", options_.name,
                                                     " (the limit); retry shortly"));
  }
  ready_.push_back(std::move(task));
  wake_.Signal();
  return absl::OkStatus();
}

void Executor::RunAt(absl::Time when, std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  delayed_.emplace(std::make_pair(when, next_seq_++), std::move(task));
  // Any worker may be waiting for a later timer: let all re-check theirs.
  wake_.SignalAll();
}

void Executor::Work() {
  NameThisThread(options_.name.c_str());
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    const absl::Time now = absl::Now();
    while (!delayed_.empty() && delayed_.begin()->first.first <= now) {
      ready_.push_back(std::move(delayed_.begin()->second));
      delayed_.erase(delayed_.begin());
    }
    if (!ready_.empty()) {
      std::function<void()> task = std::move(ready_.front());
      ready_.pop_front();
      mu_.Unlock();
      task();
      task = nullptr;  // its captures go before the lock is taken again
      mu_.Lock();
      continue;
    }
    if (delayed_.empty()) {
      wake_.Wait(&mu_);
    } else {
      wake_.WaitWithDeadline(&mu_, delayed_.begin()->first.first);
    }
  }
}

}  // namespace control
}  // namespace mesh
