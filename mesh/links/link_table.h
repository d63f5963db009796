// LinkTable: the node's live links, one per peer name.
//
// Installing and retiring take a mutex; senders find a link without one
// while the table has not changed since their thread last looked (a
// per-thread cache validated by the table's generation, [LinkGen] below);
// the receive and health threads keep their own copies, refreshed when the
// generation moves (CopyIfChanged).
//
// Thread contract: thread-safe. Never calls out (no callbacks), so it may be
// used under the caller's own locks (the node takes its membership lock
// first, then this table's).
#ifndef SHMESH_MESH_LINKS_LINK_TABLE_H_
#define SHMESH_MESH_LINKS_LINK_TABLE_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mesh/links/transport.h"

namespace mesh {

class LinkTable {
 public:
  LinkTable();
  LinkTable(const LinkTable&) = delete;
  LinkTable& operator=(const LinkTable&) = delete;

  // Adds `link` for its peer. False (nothing changed) if the peer has a
  // link already or the table is closed.
  bool Install(std::shared_ptr<Transport> link);
  // Removes `link` if it is the one installed for its peer; true if it was.
  bool Remove(const std::shared_ptr<Transport>& link);
  // Closes the table: removes and returns every link; Install fails and
  // waiters return from now on.
  std::vector<std::shared_ptr<Transport>> Close();

  // The link to `peer`, or null. Lock-free while the table is unchanged
  // since this thread last looked `peer` up (a few peers per thread are
  // remembered).
  std::shared_ptr<Transport> Find(absl::string_view peer) const;
  bool Contains(absl::string_view peer) const;
  // Links not marked down, by peer name.
  std::vector<std::shared_ptr<Transport>> Live() const;
  std::vector<std::string> LiveNames() const;
  size_t size() const;
  // Copies the live links into `*out` (and updates `*seen`) if the table
  // changed since generation `*seen`; false (nothing touched) if not.
  bool CopyIfChanged(uint64_t* seen, std::vector<std::shared_ptr<Transport>>* out) const;
  // Waits until the table holds at least `n` links, it is closed or
  // interrupted, or `deadline`; true if it holds `n`.
  bool AwaitSize(size_t n, absl::Time deadline) const;
  // Wakes every AwaitSize for good (the node is stopping).
  void Interrupt();

 private:
  // REQUIRES: mu_ held.
  void BumpLocked();

  // Keys this table in the per-thread caches (tables are never reused).
  const uint64_t uid_;
  // A std::mutex, not an absl::Mutex: ThreadSanitizer sees through
  // libstdc++'s pthread mutexes but not through Debian's uninstrumented
  // Abseil, and the lock-free lookup below is tested under TSAN.
  mutable std::mutex mu_;
  mutable std::condition_variable grown_;  // links_ grew, or closed/interrupted
  // Guarded by mu_.
  std::map<std::string, std::shared_ptr<Transport>, std::less<>> links_;
  bool closed_ = false;
  bool interrupted_ = false;
  // [LinkGen] Bumped (under mu_, release) whenever links_ changes. Readers
  // load it with acquire: CopyIfChanged compares it with the generation of
  // the caller's copy; Find trusts a cached lookup only while it still has
  // the value read under mu_ when the entry was cached, i.e. links_ has not
  // changed since (the cached weak_ptr's lock() keeps the link alive).
  std::atomic<uint64_t> generation_{1};
};

}  // namespace mesh

#endif  // SHMESH_MESH_LINKS_LINK_TABLE_H_
