// mesh_worker's service mode (tests/README.md, "mesh_worker: services"):
// services the worker's node serves and calls it makes, driven by flags and
// stdin commands, with every answer checked.
//
// A served service answers request R with "<server>|<hex FNV-1a of R>|<R
// reversed>", so a caller can tell a correct answer from one meant for
// another request or made up, and which server gave it. --serve_delay_ms
// makes the handler slow (it prints HANDLING first, so a test can kill the
// server mid-call); --serve_error makes it return an error instead.
//
// Thread contract: thread-safe. Start, HandleCommand and Shutdown are
// called from mesh_worker's threads (main, stdin); service handlers run on
// the node's receive thread; each `call` command and each --call_threads
// caller runs on a thread of its own. State is under `mu_`.
#ifndef SHMESH_TESTS_WORKER_RPC_H_
#define SHMESH_TESTS_WORKER_RPC_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "mesh/node.h"

namespace meshworker {

class RpcAgent {
 public:
  // Reads the service flags (--serve, --call, ...; see the .cc). The node
  // (borrowed) must outlive the agent. INVALID_ARGUMENT for a malformed flag.
  static absl::StatusOr<std::unique_ptr<RpcAgent>> FromFlags(mesh::Node* node);
  ~RpcAgent();

  // After Node::Start: serves, then starts the --call callers.
  absl::Status Start();
  // One stdin command ("call SERVICE DEADLINE_MS [SERVER|-] [PAYLOAD]", or
  // "servers SERVICE": a SERVERS line); false if it is not one.
  bool HandleCommand(const std::string& cmd);
  // SERVED lines.
  void Report();
  // Waits for the callers, reports, stops serving (before Node::Stop).
  void Shutdown();

  // The answer a correct server `server` gives to `request`.
  static std::string Answer(absl::string_view server, absl::string_view request);

 private:
  struct Served;
  explicit RpcAgent(mesh::Node* node);
  // One checked call: OK, the call's error, or DATA_LOSS for a wrong
  // answer. Sets *server to who answered.
  absl::Status CheckedCall(const std::string& service, const std::string& request, absl::Time deadline,
                           const mesh::CallOptions& options, std::string* server);
  void RunCallers();

  mesh::Node* const node_;
  std::vector<std::unique_ptr<Served>> served_;
  std::string call_service_;

  absl::Mutex mu_;
  bool quit_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshworker

#endif  // SHMESH_TESTS_WORKER_RPC_H_
