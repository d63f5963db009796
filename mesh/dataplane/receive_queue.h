// ReceiveQueue: the messages waiting for Node::Receive() when the
// application set no message handler, and the descriptor that says so.
//
// The receive thread appends a drain pass's messages under one lock
// (PushBatch); Receive() pops one, waiting until a deadline. The queue is
// bounded (messages and bytes): once full, the receive thread stops
// draining rings (it asks full() on every pass, without a lock), which
// backpressures the senders; Receive() rings `resume_fd` when it makes room
// in a full queue so that the receiver starts again at once.
//
// Thread contract: thread-safe. PushBatch and full() are meant for the
// receive thread, Receive() for any application thread.
#ifndef SHMESH_MESH_DATAPLANE_RECEIVE_QUEUE_H_
#define SHMESH_MESH_DATAPLANE_RECEIVE_QUEUE_H_

#include <atomic>
#include <cstddef>
#include <deque>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "mesh/message.h"

namespace mesh {

class ReceiveQueue {
 public:
  struct Limits {
    size_t max_messages = 65536;
    size_t max_bytes = 64 << 20;
  };
  // `owner` names the node in errors.
  static absl::StatusOr<std::unique_ptr<ReceiveQueue>> Create(std::string owner, Limits limits);
  // The eventfd (borrowed) signalled when Receive() makes room in a full
  // queue: the receiver's wake-up. REQUIRES: before the first PushBatch.
  void set_resume_fd(int fd) { resume_fd_ = fd; }

  // Appends `batch` (emptied) in order, under one lock.
  void PushBatch(std::vector<Message>* batch);
  // The oldest message, waiting until `deadline`. DEADLINE_EXCEEDED if none
  // came, CANCELLED once Close() was called and the queue is empty.
  absl::StatusOr<Message> Receive(absl::Time deadline);
  // Readable (an eventfd) while the queue is not empty; borrowed.
  int ready_fd() const { return ready_.get(); }
  // At or over its bounds: the receiver should stop draining. Lock-free.
  bool full() const;
  // Wakes every Receive() for good; the queue is emptied.
  void Close();
  size_t size() const;

 private:
  ReceiveQueue(std::string owner, Limits limits, base::UniqueFd ready);
  void UpdateFullLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string owner_;
  const Limits limits_;
  int resume_fd_ = -1;
  const base::UniqueFd ready_;
  mutable absl::Mutex mu_;
  std::deque<Message> queue_ ABSL_GUARDED_BY(mu_);
  size_t bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  // [QueueFull] "queue_ is at or over its bounds", stored (release) under
  // mu_ whenever queue_ changes, loaded (acquire) by full() without taking
  // mu_ on every receive pass. A stale value costs at most one batch more
  // or one pause less: Receive() also rings resume_fd_ after it makes room
  // in a full queue, and the receiver loads the flag again after that.
  std::atomic<bool> full_{false};
};

}  // namespace mesh

#endif  // SHMESH_MESH_DATAPLANE_RECEIVE_QUEUE_H_
