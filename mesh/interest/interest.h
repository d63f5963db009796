// Interest: who subscribes to what and serves what, exchanged between the
// two ends of every link over its control channel (LinkControl.Interest in
// proto/mesh/v1/mesh.proto), never through the rings.
//
// Each node keeps its own interest (LocalInterest: subscription patterns
// with reference counts, services with their ids) and tells every linked
// peer: all of it when the link comes up (`reset`, split to fit the
// control channel's size limit), then each change. Each node also keeps
// what every linked peer told it (by link), which is what publishers match
// topics against and callers look services up in. A link that goes away
// takes its peer's interest with it; a restarted peer comes back with a
// new link and tells its interest again, so nothing is ever stale by more
// than one control message in flight.
//
// Why the link's control channel and not a gRPC push: it is ordered with
// the link's own life (the interest is sent on the link it describes, after
// the link exists and before any frame that relies on it), needs no retries
// across restarts and no (name, incarnation) bookkeeping, and a peer that
// is not linked is a peer nobody publishes to anyway. The gRPC topology
// still shows every node's interest (TopologySnapshot.topics).
//
// Limits (a peer's interest is untrusted input): at most kMaxPatternsPerPeer
// patterns and kMaxServicesPerPeer services per peer, names per
// mesh/pubsub/topic_name.h, service ids nonzero. A message that breaks them
// is a protocol violation: Apply fails and the node fails the link.
//
// Thread contract: thread-safe. Apply and LinkGone are called by the
// receive thread; the rest by any thread.
#ifndef SHMESH_MESH_INTEREST_INTEREST_H_
#define SHMESH_MESH_INTEREST_INTEREST_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "mesh/base/log.h"
#include "mesh/links/link_table.h"
#include "mesh/links/transport.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace interest {

inline constexpr size_t kMaxPatternsPerPeer = 4096;
inline constexpr size_t kMaxServicesPerPeer = 1024;

using InterestMsg = mesh::v1::LinkControl::Interest;

// What one peer subscribes to and serves.
struct PeerInterest {
  std::set<std::string> patterns;
  std::map<std::string, uint32_t> services;  // name -> the id its requests carry
};

// Applies `msg` to `into` in order (reset, subscribe, unsubscribe, serve,
// unserve). INVALID_ARGUMENT, naming the field, for a malformed message;
// `into` is then unchanged.
absl::Status ApplyInterest(const InterestMsg& msg, PeerInterest* into);

// This node's interest. Not thread-safe (Exchange holds it under its lock).
class LocalInterest {
 public:
  // Reference-counted: only the first Add and the last Remove of a pattern
  // change what peers see (then true).
  bool AddPattern(const std::string& pattern);
  bool RemovePattern(const std::string& pattern);
  void AddService(const std::string& name, uint32_t id) { services_[name] = id; }
  void RemoveService(const std::string& name) { services_.erase(name); }
  // All of it, as messages under the control channel's size limit; the
  // first has `reset` set (one message with only `reset` when empty).
  std::vector<InterestMsg> Full() const;
  std::vector<std::string> Patterns() const;

 private:
  std::map<std::string, int> patterns_;
  std::map<std::string, uint32_t> services_;
};

class Exchange {
 public:
  // `links` and `log` are borrowed and must outlive the exchange.
  Exchange(const LinkTable* links, const Logger* log);

  // Our side: changes what we subscribe to / serve and tells every linked
  // peer (before returning: a control message each, never waiting).
  void Subscribe(const std::string& pattern);
  void Unsubscribe(const std::string& pattern);
  void Serve(const std::string& name, uint32_t id);
  void Unserve(const std::string& name);
  // A link came up: tell its peer all of our interest.
  void LinkUp(const std::shared_ptr<Transport>& link);
  // Resends all of our interest to the peers whose control socket was full
  // when a change was due (they were not reading: stopped, or slow).
  void RetryUnsent();

  // Their side (receive thread): `link`'s peer told us of a change.
  absl::Status Apply(const std::shared_ptr<Transport>& link, const InterestMsg& msg);
  // The link is gone: forget what its peer said.
  void LinkGone(const Transport* link);

  // Bumped (release) after every change of a peer's interest: publishers
  // re-match when it moved (acquire).
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // Whether `link`'s peer subscribes to a pattern matching `topic`.
  bool PeerMatches(const Transport* link, absl::string_view topic) const;
  // The linked peers that serve `service`, with its id there, by name.
  std::vector<std::pair<std::shared_ptr<Transport>, uint32_t>> Servers(absl::string_view service) const;
  // Our own subscription patterns (for the topology).
  std::vector<std::string> LocalPatterns() const;

 private:
  void SendLocked(const std::shared_ptr<Transport>& link, const std::vector<InterestMsg>& msgs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BroadcastLocked(const InterestMsg& delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const LinkTable* const links_;
  const Logger* const log_;

  // Ours, and the links whose peer missed a change (their control socket
  // was full): they get all of it again (reset) next time.
  mutable absl::Mutex mu_;
  LocalInterest local_ ABSL_GUARDED_BY(mu_);
  std::set<const Transport*> unsent_ ABSL_GUARDED_BY(mu_);

  // Theirs, by link. The weak pointer tells a live entry from one whose
  // link was freed and its address reused (LinkGone runs first anyway).
  mutable absl::Mutex peers_mu_;
  struct Entry {
    std::weak_ptr<Transport> link;
    PeerInterest interest;
  };
  std::map<const Transport*, Entry> peers_ ABSL_GUARDED_BY(peers_mu_);
  // [InterestGen] release increments under peers_mu_ after a change;
  // acquire loads in generation().
  std::atomic<uint64_t> generation_{1};
};

}  // namespace interest
}  // namespace mesh

#endif  // SHMESH_MESH_INTEREST_INTEREST_H_
