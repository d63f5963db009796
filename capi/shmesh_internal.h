// Private to //capi:shmesh_c: the handles' definitions and the helpers that
// shmesh.cc and shmesh_pubsub.cc share (errors, timeouts, buffers handed to
// C, callback wrappers). Not installed.
//
// Thread contract: free functions, thread-safe; the handles are as
// shmesh.h says.
#ifndef SHMESH_CAPI_SHMESH_INTERNAL_H_
#define SHMESH_CAPI_SHMESH_INTERNAL_H_

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mesh/node.h"
#include "shmesh/shmesh.h"

// The handles: each owns one C++ object of mesh/. (Global namespace: the
// header declares them as C structs.)
struct shmesh_node {
  std::unique_ptr<mesh::Node> node;
};
struct shmesh_publisher {
  std::unique_ptr<mesh::Publisher> pub;
};
struct shmesh_subscription {
  std::unique_ptr<mesh::Subscription> sub;
};
struct shmesh_service {
  std::unique_ptr<mesh::ServiceRegistration> reg;
};
// Lives on the receive thread's stack for one handler call.
struct shmesh_responder {
  std::string response;
  std::string error_message;
};

namespace shmesh_capi {

// Copies `st` into `err` (when given) and returns its code. Allocates
// nothing and cannot throw.
shmesh_status_code Fill(shmesh_error* err, const absl::Status& st) noexcept;

// Runs `f` (returning absl::Status) and turns any exception into a status:
// the one place where C++ exceptions stop.
template <typename F>
shmesh_status_code Guard(shmesh_error* err, F&& f) noexcept {
  try {
    return Fill(err, f());
  } catch (const std::bad_alloc&) {
    return Fill(err, absl::ResourceExhaustedError(
                         "shmesh: out of memory; free memory or lower the load and retry"));
  } catch (const std::exception& e) {
    return Fill(err, absl::InternalError(
                         absl::StrCat("shmesh: unexpected C++ exception (a bug; please report it): ",
                                      e.what())));
  } catch (...) {
    return Fill(err, absl::InternalError(
                         "shmesh: unexpected C++ exception (a bug; please report it)"));
  }
}

// INVALID_ARGUMENT: `function`'s argument `arg` is NULL.
absl::Status NullArg(const char* function, const char* arg);

// In an entry point's Guard lambda, which captures `entry = __func__` (the
// entry point's name: inside the lambda __func__ is "operator()"): returns
// INVALID_ARGUMENT naming the function and `arg` when it is NULL.
#define SHMESH_REQUIRE(arg)                                \
  do {                                                     \
    if ((arg) == nullptr) return NullArg(entry, #arg);     \
  } while (0)

// A relative timeout (shmesh.h: negative forever, 0 no wait) as a deadline.
absl::Time Deadline(int64_t timeout_ms);

// `len` bytes at `data` (which may be NULL when len is 0).
absl::string_view Bytes(const void* data, size_t len);

// Buffers handed to the caller: malloc'd (shmesh_free is free()); each
// throws std::bad_alloc (which Guard turns into RESOURCE_EXHAUSTED).
void* Malloc(size_t n);
// `data` with a NUL after it (not counted).
char* CopyWithNul(absl::string_view data);
// One block: an array of names.size() + 1 pointers (the last NULL), then
// the strings.
char** PackStrings(const std::vector<std::string>& names);
// One block: the report, the delivered names' pointers (only when
// `delivered` is given), the failures, then every string.
shmesh_delivery_report* PackReport(size_t delivered_count, const std::vector<std::string>* delivered,
                                   const std::vector<std::pair<std::string, absl::Status>>& failed);
// Copies `m` into the caller's struct (three allocations; all or none).
void FillOwned(const mesh::Message& m, shmesh_message_owned* out);

// A C message callback as mesh/ wants it (strings made NUL-terminated in
// per-thread buffers; an exception never escapes into the node's thread).
std::function<void(const mesh::MessageView&)> WrapMessageFn(shmesh_message_fn fn, void* user_data);
// `p` as C sees it (borrowing p's strings).
shmesh_peer_info PeerView(const mesh::PeerInfo& p);
// Runs a C service handler: its code and message, or the bytes it wrote.
absl::StatusOr<std::string> RunService(shmesh_service_fn fn, void* user_data,
                                       const mesh::RequestView& r);

}  // namespace shmesh_capi

#endif  // SHMESH_CAPI_SHMESH_INTERNAL_H_
