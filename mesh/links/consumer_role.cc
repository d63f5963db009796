#include "mesh/links/consumer_role.h"

namespace mesh {

// The failure order of every compare-exchange here is relaxed: a failed
// exchange only re-reads the word to decide again, and each path that then
// touches the RingConsumer goes through a successful acquire first.

bool ConsumerRole::TakeToDrain() {
  uint32_t word = word_.load(std::memory_order_relaxed);
  for (;;) {
    if ((word & kOwned) != 0) {
      if ((word & kArmed) == 0) return false;  // lent: its borrower takes the frames
      // relaxed: this publishes nothing (the receive thread did not touch
      // the RingConsumer), and every change to the word is a
      // read-modify-write, so the borrower's give-back sees it (or fails
      // and reads it) whatever the order.
      if (word_.compare_exchange_weak(word, word & ~kArmed, std::memory_order_relaxed,
                                      std::memory_order_relaxed)) {
        return false;
      }
      continue;
    }
    // acquire: see what the last owner (a borrower) did to the RingConsumer.
    if (word_.compare_exchange_weak(word, kOwned, std::memory_order_acquire, std::memory_order_relaxed)) {
      return true;
    }
  }
}

void ConsumerRole::Release() {
  // release: the next owner sees this drain. A plain store: while we own
  // the role nobody else changes the word (a borrower's exchange needs it
  // free; kArmed and the sleep count change only while it is lent).
  word_.store(0, std::memory_order_release);
}

bool ConsumerRole::TakeToSleep() {
  uint32_t word = word_.load(std::memory_order_relaxed);
  for (;;) {
    if ((word & kOwned) != 0) {
      // Lent: count this sleep and mark it; the borrower arms for it when
      // it gives the role back (relaxed: as in TakeToDrain; the arming
      // itself is the ring's seq_cst pair with the producer).
      if (word_.compare_exchange_weak(word, (word | kArmed) + kSleepStep, std::memory_order_relaxed,
                                      std::memory_order_relaxed)) {
        return false;
      }
      continue;
    }
    // acquire: as in TakeToDrain.
    if (word_.compare_exchange_weak(word, kOwned | kArmed, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
      return true;
    }
  }
}

void ConsumerRole::ReleaseAfterSleep(bool sleeping) {
  // release: as in Release (the word is ours alone while we own the role).
  word_.store(sleeping ? kArmed : 0, std::memory_order_release);
}

ConsumerRole::Borrowed ConsumerRole::Borrow() {
  uint32_t word = word_.load(std::memory_order_relaxed);
  do {
    if ((word & kOwned) != 0) return Borrowed::kNo;
    // acquire: see what the last owner did to the RingConsumer.
  } while (!word_.compare_exchange_weak(word, word | kOwned, std::memory_order_acquire,
                                        std::memory_order_relaxed));
  return (word & kArmed) != 0 ? Borrowed::kYesReceiverAsleep : Borrowed::kYes;
}

bool ConsumerRole::Return(absl::FunctionRef<bool()> arm) {
  bool wake = false;
  bool armed = false;
  uint32_t armed_for = 0;  // the sleep count we armed for
  uint32_t word = word_.load(std::memory_order_relaxed);
  for (;;) {
    // The receive thread sleeps counting on us, and we have not armed for
    // this sleep of it: arm (we still own the role, so the RingConsumer is
    // ours to use).
    if ((word & kArmed) != 0 && (!armed || (word & ~kFlags) != armed_for)) {
      armed = true;
      armed_for = word & ~kFlags;
      if (!arm()) wake = true;  // frames wait for it
    }
    // release: the next owner sees what we did to the RingConsumer. The
    // exchange fails if the receive thread changed the word since we read
    // it (it woke, or slept again), and we decide again on the new value.
    if (word_.compare_exchange_weak(word, word & ~kOwned, std::memory_order_release,
                                    std::memory_order_relaxed)) {
      return wake;
    }
  }
}

bool ConsumerRole::lent() const {
  // relaxed: advisory (the receive thread's doorbell bookkeeping).
  return (word_.load(std::memory_order_relaxed) & kOwned) != 0;
}

}  // namespace mesh
