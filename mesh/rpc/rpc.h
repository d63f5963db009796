// Rpc: the node's request/response component (mesh/rpc.h is the API).
//
// Serving: a ServiceCore per served name, with a node-unique id that the
// interest exchange tells every linked peer; a kRequest frame names the
// service by that id (envelope channel) and the call by its correlation id.
// The handler runs on the receive thread; its result goes back in a
// kResponse frame with the same correlation id, whose payload is a 4-byte
// little-endian status code, then the response bytes (OK) or the error
// message.
//
// Calling: a table of the calls in flight (correlation id -> the waiting
// caller and the link it went out on). A caller first spins for its
// response (RpcContext::call_spin), taking response frames from the link's
// ring itself (Transport::BorrowConsumer: no hand-off between threads, which
// costs a wake-up of ~10 us); a frame of any other kind at the head of the
// ring, or a caller that stopped spinning, leaves the work to the receive
// thread. Either thread completes the calls;
// a response whose id is not in the table (late: its caller gave up at the
// deadline; or made up), or that comes on another link than its request
// went out on (forged), is counted and dropped. When a link goes down, the
// calls in flight on it fail at once with UNAVAILABLE.
//
// Thread contract: thread-safe. OnRequest/OnResponse on the receive
// thread; LinkDown from whichever thread retires a link. Detach() once,
// before the borrowed pieces go.
#ifndef SHMESH_MESH_RPC_RPC_H_
#define SHMESH_MESH_RPC_RPC_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mesh/base/handler_gate.h"
#include "mesh/base/log.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/interest/interest.h"
#include "mesh/links/transport.h"
#include "mesh/rpc.h"
#include "mesh/v1/mesh.pb.h"

namespace mesh {
namespace rpc {

// Bytes of the status code at the start of a response payload.
inline constexpr size_t kStatusBytes = 4;
// How long the receive thread waits for ring room to write a response
// before dropping it (counted; the caller then times out).
inline constexpr absl::Duration kResponseWait = absl::Milliseconds(100);
// Services whose servers a node remembers between calls (all are
// forgotten when one more is called).
inline constexpr size_t kServerCacheEntries = 256;
// Tries a caller makes to take its link's consumer role before it sends.
inline constexpr int kBorrowTries = 4;
// A spinning caller that found the role taken this many times in a row
// yields its CPU at each further try (the holder may be preempted there).
inline constexpr uint32_t kBusyBeforeYield = 32;
// Response frames a spinning caller takes from the ring at a time.
inline constexpr size_t kAsideBatch = 16;

// The response payload's status prefix, and its decoding. A code outside
// the canonical set decodes as an INTERNAL error saying so.
std::string EncodeStatusPrefix(absl::StatusCode code);
absl::StatusOr<std::string> DecodeResponse(absl::string_view payload);

class ServiceCore {
 public:
  ServiceCore(std::string name, uint32_t id, ServiceHandler handler, std::function<void()> on_close);
  ~ServiceCore();
  const std::string& name() const { return name_; }
  uint32_t id() const { return id_; }
  uint64_t handled() const { return handled_.load(std::memory_order_relaxed); }
  // Runs the handler (receive thread); NOT_FOUND once closed.
  absl::StatusOr<std::string> Handle(const RequestView& request);
  // Stops serving: returns once the handler is not running (unless called
  // from inside it) and will not run again.
  void Close() { gate_.Close(); }
  void Detach() { gate_.Detach(); }

 private:
  const std::string name_;
  const uint32_t id_;
  const ServiceHandler handler_;
  HandlerGate gate_;  // around each call; closing it runs the owner's on_close
  std::atomic<uint64_t> handled_{0};  // relaxed: statistics
};

struct RpcContext {
  size_t max_message_bytes = 0;
  std::function<absl::Status(absl::string_view what)> check_running;
  std::function<void(const std::shared_ptr<Transport>&, absl::string_view why)> link_failed;
  // True on the node's receive thread, which delivers responses: a Call
  // from there could never get its own and fails at once instead.
  std::function<bool()> on_receive_thread;
  // How long a caller spins for its response (taking it from the ring
  // itself) before it sleeps until the receive thread completes the call:
  // the node's adaptive spin (a round trip on a spinning server takes
  // microseconds, a sleep and wake-up ~10 us each way); zero for SLEEP.
  absl::Duration call_spin = absl::ZeroDuration();
  // Wakes the node's receive thread (Receiver::Wake): a spinning caller
  // left frames that are not its responses in a ring the thread sleeps on.
  std::function<void()> wake_receiver;
};

class Rpc {
 public:
  struct Counters {
    uint64_t late_responses = 0;      // no call waits with that id (gave up, or never asked)
    uint64_t forged_responses = 0;    // the id is a call sent on another link
    uint64_t unknown_service = 0;     // requests for an id we do not serve (answered NOT_FOUND)
    uint64_t responses_unsent = 0;    // the caller's ring stayed full past kResponseWait
    uint64_t malformed = 0;           // a response too short for its status
  };

  // `exchange` and `log` are borrowed until Detach().
  Rpc(RpcContext context, interest::Exchange* exchange, const Logger* log);
  ~Rpc();

  absl::StatusOr<std::shared_ptr<ServiceCore>> Serve(absl::string_view name, ServiceHandler handler);
  absl::StatusOr<std::string> Call(absl::string_view service, absl::string_view request, absl::Time deadline,
                                   const CallOptions& options);
  std::vector<std::string> Servers(absl::string_view service) const;

  void OnRequest(const std::shared_ptr<Transport>& link, const FrameHeader& header, absl::string_view payload);
  void OnResponse(const Transport& link, const FrameHeader& header, absl::string_view payload);
  // `link` is down: its calls in flight fail now.
  void LinkDown(const Transport* link, absl::string_view why);
  void Detach();

  Counters counters() const;
  void Report(mesh::v1::NodeTopics* out) const;

 private:
  struct Pending {
    const Transport* link = nullptr;
    std::string server;
    // std::mutex (and condition variable) rather than absl::Mutex here:
    // taken a few times per call, and Debian's Abseil is built with
    // deadlock detection, which makes an absl::Mutex Lock/Unlock pair cost
    // 40-70 ns here against 5-10 ns. Likewise Registry::mu and calls_mu_.
    std::mutex mu;
    std::condition_variable cv;  // the sleeping caller waits for `done`
    bool done ABSL_GUARDED_BY(mu) = false;
    bool sleeping ABSL_GUARDED_BY(mu) = false;  // the caller stopped spinning
    absl::StatusOr<std::string> result ABSL_GUARDED_BY(mu);
    // [CallReady] release store after `done` is set (under mu); the
    // caller's spin loads it with acquire, then reads under mu.
    std::atomic<bool> ready{false};
  };
  // The linked servers of `service` (by name), as Exchange::Servers, kept
  // per service until the interest exchange changes or one goes down:
  // looking them up again takes the exchange's lock, a copy and a sort.
  // INVALID_ARGUMENT for a name that is not a valid service name.
  using ServerList = std::vector<std::pair<std::shared_ptr<Transport>, uint32_t>>;
  absl::StatusOr<std::shared_ptr<const ServerList>> ServersOf(absl::string_view service);
  struct CachedServers {
    uint64_t generation = 0;  // of the interest exchange when looked up
    std::shared_ptr<const ServerList> list;
  };
  std::mutex servers_mu_;
  std::map<std::string, CachedServers, std::less<>> servers_ ABSL_GUARDED_BY(servers_mu_);

  // Returns whether the caller was asleep (then it is woken).
  static bool Complete(Pending* p, absl::StatusOr<std::string> result);
  // A spinning caller: its slot among the spinners (only as many spin at
  // once as there are CPUs besides one: a spinner would otherwise take the
  // CPU its server or another spinner needs), and whether it holds its
  // link's consumer role (Transport::BorrowConsumer).
  struct Spin {
    bool active = false;
    bool held = false;
  };
  // Before the request goes out: a slot (if spinning is on and one is
  // free), and the consumer role (a few tries).
  Spin BeginSpin(Transport& link);
  // Gives the role and the slot back (waking the receive thread if frames
  // wait for it).
  void EndSpin(Transport& link, Spin* spin);
  // The spin: takes response frames from `link`'s ring until `pending` is
  // done, for RpcContext::call_spin (at most until `deadline`); then
  // EndSpin.
  void SpinForResponse(Transport& link, const Pending& pending, absl::Time deadline, Spin* spin);
  // A frame a spinning caller found at the head of the ring: true if it was
  // a response (completed as OnResponse does); false leaves it, and what
  // is wrong with it, to the receive thread.
  bool TakeResponse(const Transport& link, absl::string_view frame);
  std::shared_ptr<Pending> TakePending(uint64_t id);
  struct Registry {
    mutable std::mutex mu;
    interest::Exchange* exchange ABSL_GUARDED_BY(mu) = nullptr;
    std::map<uint32_t, std::shared_ptr<ServiceCore>> by_id ABSL_GUARDED_BY(mu);
    std::map<std::string, uint32_t> by_name ABSL_GUARDED_BY(mu);
  };

  const RpcContext context_;
  const Logger* const log_;
  interest::Exchange* const exchange_;  // for Servers(): valid until Detach
  const std::shared_ptr<Registry> registry_;
  std::atomic<uint32_t> next_service_id_{1};
  std::atomic<uint64_t> next_call_{1};
  std::atomic<uint64_t> round_robin_{0};
  const int max_spinning_callers_;
  // Callers spinning now (SpinForResponse). acq_rel/relaxed would both do:
  // it only limits how many spin, and publishes no other memory (relaxed).
  std::atomic<int> spinning_callers_{0};

  std::mutex calls_mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<Pending>> calls_ ABSL_GUARDED_BY(calls_mu_);
  bool detached_ ABSL_GUARDED_BY(calls_mu_) = false;

  LogLimiter drop_log_{absl::Seconds(1)};  // receive thread
  // Relaxed: statistics.
  std::atomic<uint64_t> late_{0}, forged_{0}, unknown_service_{0}, unsent_{0}, malformed_{0};
};

}  // namespace rpc
}  // namespace mesh

#endif  // SHMESH_MESH_RPC_RPC_H_
