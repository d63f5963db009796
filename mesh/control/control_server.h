// ControlServer: a node's gRPC server (the control plane: Discovery,
// Topology, Messaging, health, reflection), kept apart from the data plane so that it
// can be restarted, or be flooded with calls, while links and messages flow
// on untouched. Internal to //mesh; the node owns one.
//
// On a "unix:/path" address gRPC never listens itself. ControlServer binds
// the SOCK_STREAM socket (mode 0600; a stale file is replaced the way the
// link socket's is, a live listener is ALREADY_EXISTS) and runs an accept
// thread that, for each connection:
//   1. reads the connecting process's pid and uid with SO_PEERCRED;
//   2. if the uid is not in `allowed_uids`, closes the connection at once
//      (the client's call fails with UNAVAILABLE) and logs a WARNING naming
//      the pid and uid, at most one line per kRefusalLogInterval (the next
//      line counts the ones left out);
//   3. otherwise hands it to the current grpc::Server, which was built with
//      no listening port, with grpc::AddInsecureChannelFromFd (gRPC owns it
//      from then on).
// On "host:port" gRPC listens on TCP itself: a TCP peer has no uid, so
// such a server cannot be restricted (see SECURITY.md).
//
// Every server it builds has the limits below; the services (built anew by
// the factory for each server) bound what is left (mesh/control/services.cc).
//
// Restart() replaces the grpc::Server: calls in flight get kShutdownGrace to
// finish and are then cancelled (watch streams end), connections close, and
// a new server starts on the same address. On a Unix socket the listening
// socket stays open throughout, so clients that connect meanwhile wait in
// its backlog instead of being refused.
//
// Thread contract: thread-safe. Start, Restart and Stop serialize on an
// internal mutex (Restart and Stop may block up to about kShutdownGrace
// plus the longest call a service does not cancel). The accept thread is the
// only one that hands connections to a server, and it is stopped while the
// server is replaced.
#ifndef SHMESH_MESH_CONTROL_CONTROL_SERVER_H_
#define SHMESH_MESH_CONTROL_CONTROL_SERVER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/service_type.h"
#include "mesh/base/log.h"

namespace mesh {
namespace control {

class ControlServer {
 public:
  // Largest request message a client may send; larger ones fail with
  // RESOURCE_EXHAUSTED before any service sees them. The largest legitimate
  // request is a Messaging.Send payload (max_message_bytes is at most a
  // quarter of a 1 GiB ring, but sending bulk data through gRPC is a
  // debugging aid only) or a Join listing every member.
  static constexpr int kMaxRequestBytes = 4 << 20;
  // Concurrent calls on one client connection (HTTP/2 streams).
  static constexpr int kMaxStreamsPerConnection = 128;
  // How long Restart and Stop let calls in flight finish before cancelling.
  static constexpr absl::Duration kShutdownGrace = absl::Milliseconds(500);
  // At most one refusal WARNING per this interval.
  static constexpr absl::Duration kRefusalLogInterval = absl::Seconds(1);
  // How long the accept thread waits when out of descriptors.
  static constexpr absl::Duration kAcceptBackoff = absl::Milliseconds(100);

  // Makes the services of one server; called once per Start and Restart.
  // What they borrow must outlive this ControlServer.
  using ServiceFactory =
      std::function<std::vector<std::unique_ptr<grpc::Service>>()>;

  // `listen`: "unix:/abs/path" or "host:port" (port 0: any free port, kept
  // across restarts). `allowed_uids`: who may connect on a Unix socket.
  // `log` is borrowed. Nothing is opened until Start.
  ControlServer(std::string listen, std::vector<uint32_t> allowed_uids,
                ServiceFactory make_services, const Logger* log);
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;
  // Stops the server if it runs.
  ~ControlServer();

  // Opens the address and starts serving. ALREADY_EXISTS: a live process
  // listens on the Unix path. UNAVAILABLE: gRPC cannot listen on the TCP
  // address (in use?). FAILED_PRECONDITION: called twice, or after Stop.
  // On error nothing is left open or on disk.
  absl::Status Start();

  // Shuts the current server down (see the header comment) and starts a new
  // one on the same address. FAILED_PRECONDITION before Start or after Stop.
  // UNAVAILABLE if the new server cannot start (e.g. the TCP port was taken
  // meanwhile): nothing serves then, and a later Restart tries again.
  absl::Status Restart();

  // Shuts the server down and removes the socket file this object created.
  // Idempotent; Start and Restart fail afterwards.
  void Stop();

  // The address clients dial: "unix:/path", or "host:port" with the real
  // port. Empty before a successful Start.
  std::string address() const;

 private:
  enum class State { kNew, kServing, kDown, kStopped };

  // Builds and starts a server with fresh services; on a Unix socket also
  // starts the accept thread for it.
  absl::Status BuildServerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops the accept thread, then shuts the server down and destroys it and
  // its services. No-op without a server.
  void ShutdownServerLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Accept thread: waits on `listen_fd` and `wake_fd` (borrowed: the thread
  // is joined before they close) until stopped, handing connections to
  // `server` (which outlives the thread the same way).
  void AcceptLoop(grpc::Server* server, int listen_fd, int wake_fd);
  // Accepts the connections pending on `listen_fd`.
  void AcceptPending(grpc::Server* server, int listen_fd, int wake_fd);
  // Logs (rate-limited) and closes a connection from a disallowed uid.
  void Refuse(base::UniqueFd conn, const fdpass::PeerCred& cred);
  bool AcceptStopRequested() const;

  const std::string listen_;
  const std::string unix_path_;  // empty for TCP
  const std::vector<uint32_t> allowed_uids_;
  const ServiceFactory make_services_;
  const Logger* const log_;

  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kNew;
  std::string address_ ABSL_GUARDED_BY(mu_);
  // TCP: the host:port to listen on at the next build (the real port once
  // the first build picked one).
  std::string tcp_listen_ ABSL_GUARDED_BY(mu_);
  base::UniqueFd listen_fd_ ABSL_GUARDED_BY(mu_);    // Unix only
  base::UniqueFd accept_wake_ ABSL_GUARDED_BY(mu_);  // eventfd, Unix only
  // Declared before server_: destroyed after it.
  std::vector<std::unique_ptr<grpc::Service>> services_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<grpc::Server> server_ ABSL_GUARDED_BY(mu_);
  std::thread accept_thread_ ABSL_GUARDED_BY(mu_);
  // [AcceptStop] Set (release) by ShutdownServerLocked before it rings
  // accept_wake_ and joins; read (acquire) by the accept thread after each
  // wake-up. The join orders everything the thread did before the next one
  // starts; the flag is cleared only while no accept thread runs.
  std::atomic<bool> accept_stop_{false};

  // Accept thread only (one at a time; each starts after the previous one
  // was joined, which orders their accesses): log rate limits.
  LogLimiter refusal_log_{kRefusalLogInterval};
  LogLimiter exhausted_log_{kRefusalLogInterval};
};

}  // namespace control
}  // namespace mesh

#endif  // SHMESH_MESH_CONTROL_CONTROL_SERVER_H_
