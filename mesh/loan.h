// mesh::Loan: a writable buffer in this node's shared-memory pool, to fill
// in place and send without a copy (zero-copy). Get one from Node::Loan or
// Publisher::Loan, write the payload into data(), then hand it to
// Node::Send, Node::Broadcast or Publisher::Publish: the receivers read
// the very bytes you wrote, in place, and the pool reuses the buffer once
// every receiver has released it. Dropping a Loan without sending it
// gives the buffer back.
//
//   auto loan = node->Loan(frame_bytes);           // waits for pool memory
//   FillCameraFrame(loan->data(), loan->size());   // in shared memory
//   node->Send("planner", std::move(*loan));       // a 32-byte reference
//
// One Loan can go to many peers at once (Broadcast, a topic with several
// subscribers): the payload is written once, whatever the fan-out. Any
// size up to max_message_bytes (1 GiB by default), whatever the ring size.
//
// Thread contract: a Loan is a move-only value; use it from one thread at
// a time. Writing to it after handing it to a send is not possible (the
// send empties it); the receivers' view of the bytes is only stable if
// nobody writes them meanwhile.
#ifndef SHMESH_MESH_LOAN_H_
#define SHMESH_MESH_LOAN_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/types/span.h"

namespace mesh {
namespace pool {
class BlockHandle;
}  // namespace pool

class Loan {
 public:
  // An empty loan (what a send leaves behind).
  Loan();
  Loan(Loan&&) noexcept;
  Loan& operator=(Loan&&) noexcept;
  Loan(const Loan&) = delete;
  Loan& operator=(const Loan&) = delete;
  // Gives the buffer back unless it was sent.
  ~Loan();

  explicit operator bool() const { return block_ != nullptr; }
  // The payload: size() bytes at data(), writable (null when empty).
  uint8_t* data();
  const uint8_t* data() const;
  size_t size() const;
  absl::Span<uint8_t> span() { return absl::Span<uint8_t>(data(), size()); }
  // The bytes the buffer has room for (size() rounded up to the pool's
  // block size, at least 4 KiB).
  size_t capacity() const;
  // Makes the payload `n` bytes (at most capacity(); larger is clamped):
  // loan the most you may need, then send only what you wrote.
  void resize(size_t n);

 private:
  friend class NodeImpl;
  friend class Publisher;
  explicit Loan(pool::BlockHandle block);
  // The block (null: empty). Internal.
  const pool::BlockHandle* block() const { return block_.get(); }
  // Empties the loan (the send took it).
  void Consume();
  std::unique_ptr<pool::BlockHandle> block_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_LOAN_H_
