// ConsumerRole: who may consume a link's receiving ring right now, and who
// re-arms its doorbell for the receive thread.
//
// A ring has one consumer at a time (its RingConsumer keeps process-local
// state). Normally that is the node's receive thread; another thread (an
// RPC caller waiting for its response) can borrow the role for a while and
// take its own frames with no hand-off. While the role is lent the receive
// thread leaves the ring alone and may go to sleep; the borrower, which
// polls, first stops the peer's doorbell (no syscall on the peer's side, no
// wake-up here) and, when it gives the role back, re-arms the doorbell for
// the sleeping receive thread, or asks for a Wake() if frames wait.
//
// One atomic word holds it all, and every change is a read-modify-write of
// that word, so a borrower's give-back and the receive thread's decisions
// are ordered:
//   kOwned   a thread has the role (the receive thread inside a drain or
//            its sleep check, or a borrower);
//   kArmed   the receive thread sleeps (or is about to) counting on the
//            ring's doorbell;
//   the rest counts the times the receive thread went to sleep while the
//            role was lent. A borrower arms the doorbell for one such sleep;
//            if the receive thread woke and slept again meanwhile (a ring it
//            took while lent consumed the borrower's arming: the peer rang
//            once, the receive thread found the ring lent and slept again),
//            the word has changed and the borrower arms again. Without the
//            count, "woke, cleared kArmed, slept, set kArmed" returns the
//            word to the value the borrower read (ABA), its give-back
//            succeeds, and a frame written in between waits with no
//            doorbell armed and the receive thread asleep: a lost wake-up
//            (found by a CI run of tests/hostile_frames_test: an RPC
//            response sat unread until the call's deadline).
//
// Taking the role is acquire and giving it back release: the next owner
// sees what the last one did to the RingConsumer. The ring's own arming
// (RingConsumer::PrepareToSleep, a seq_cst Dekker pair with the producer)
// is the caller's, passed to Return as `arm`.
//
// Thread contract: TakeToDrain/Release and TakeToSleep/ReleaseAfterSleep:
// the receive thread only. Borrow/Return: any other thread (one borrower at
// a time: Borrow fails while the role is taken). lent(): any thread.
#ifndef SHMESH_MESH_LINKS_CONSUMER_ROLE_H_
#define SHMESH_MESH_LINKS_CONSUMER_ROLE_H_

#include <atomic>
#include <cstdint>

#include "absl/functional/function_ref.h"

namespace mesh {

class ConsumerRole {
 public:
  // Receive thread, before a drain. True: the role is ours until Release().
  // False: it is lent (the borrower takes the frames); this thread is
  // awake, so the borrower need not arm the doorbell for it any more.
  bool TakeToDrain();
  // Receive thread, after TakeToDrain() returned true.
  void Release();

  // Receive thread, about to sleep. False: the role is lent; the borrower
  // now arms the doorbell when it gives the role back, so the receive
  // thread may sleep without looking at the ring. True: the role is ours;
  // check the ring (arming its doorbell), then ReleaseAfterSleep(whether
  // it armed and will sleep).
  bool TakeToSleep();
  void ReleaseAfterSleep(bool sleeping);

  // Any thread but the receive thread.
  enum class Borrowed {
    kNo,                 // someone has the role
    kYes,                // ours
    kYesReceiverAsleep,  // ours; the receive thread sleeps on the doorbell,
                         // which the caller may now stop (we poll)
  };
  Borrowed Borrow();
  // The borrower gives the role back. `arm` re-arms the doorbell for the
  // sleeping receive thread and returns false if frames already wait; it is
  // called (by this thread, still owning the role) once per sleep of the
  // receive thread that counts on it, and not at all if it is awake.
  // Returns true if the receive thread sleeps while frames wait: the caller
  // must wake it.
  bool Return(absl::FunctionRef<bool()> arm);

  // Whether a borrower has the role now. Advisory (it may change at once).
  bool lent() const;

 private:
  static constexpr uint32_t kOwned = 1;
  static constexpr uint32_t kArmed = 2;
  static constexpr uint32_t kSleepStep = 4;  // the count of sleeps while lent
  static constexpr uint32_t kFlags = kOwned | kArmed;

  // Only kOwned's holder stores to it plainly; everyone else changes it
  // with compare-exchange. Each access says its order.
  std::atomic<uint32_t> word_{0};
};

}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_CONSUMER_ROLE_H_
