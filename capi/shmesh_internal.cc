// The helpers shared by the C API's entry points (shmesh_internal.h).
#include "capi/shmesh_internal.h"

#include <cstdlib>
#include <cstring>

namespace shmesh_capi {

// The codes must keep absl's numbers: they are cast both ways.
static_assert(SHMESH_OK == static_cast<int>(absl::StatusCode::kOk), "code numbers");
static_assert(SHMESH_NOT_FOUND == static_cast<int>(absl::StatusCode::kNotFound), "code numbers");
static_assert(SHMESH_INTERNAL == static_cast<int>(absl::StatusCode::kInternal), "code numbers");
static_assert(SHMESH_UNAUTHENTICATED == static_cast<int>(absl::StatusCode::kUnauthenticated),
              "code numbers");

// ---------------------------------------------------------------------------
// Errors.

// Copies `st` into `err` (when given) and returns its code. Allocates
// nothing and cannot throw.
shmesh_status_code Fill(shmesh_error* err, const absl::Status& st) noexcept {
  const auto code = static_cast<shmesh_status_code>(st.code());
  if (err == nullptr) return code;
  err->code = code;
  const absl::string_view msg = st.message();
  constexpr size_t kMax = SHMESH_ERROR_MESSAGE_SIZE - 1;
  if (msg.size() <= kMax) {
    // (An OK status's message may have a null data(): no memcpy then.)
    if (!msg.empty()) std::memcpy(err->message, msg.data(), msg.size());
    err->message[msg.size()] = '\0';
  } else {
    std::memcpy(err->message, msg.data(), kMax - 3);
    std::memcpy(err->message + kMax - 3, "...", 4);
  }
  return code;
}

absl::Status NullArg(const char* function, const char* arg) {
  return absl::InvalidArgumentError(
      absl::StrCat(function, ": argument `", arg, "` is NULL; pass a valid pointer"));
}

// A relative timeout (shmesh.h: negative forever, 0 no wait) as a deadline.
absl::Time Deadline(int64_t timeout_ms) {
  if (timeout_ms < 0) return absl::InfiniteFuture();
  if (timeout_ms == 0) return absl::InfinitePast();
  return absl::Now() + absl::Milliseconds(timeout_ms);
}

absl::string_view Bytes(const void* data, size_t len) {
  return len == 0 ? absl::string_view() : absl::string_view(static_cast<const char*>(data), len);
}

// ---------------------------------------------------------------------------
// Buffers handed to the caller: malloc'd (shmesh_free is free()).

void* Malloc(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

// `data` with a NUL after it (not counted).
char* CopyWithNul(absl::string_view data) {
  char* p = static_cast<char*>(Malloc(data.size() + 1));
  if (!data.empty()) std::memcpy(p, data.data(), data.size());
  p[data.size()] = '\0';
  return p;
}

// One block: an array of names.size() + 1 pointers (the last NULL), then
// the strings.
char** PackStrings(const std::vector<std::string>& names) {
  size_t total = (names.size() + 1) * sizeof(char*);
  for (const auto& s : names) total += s.size() + 1;
  char* block = static_cast<char*>(Malloc(total));
  char** array = reinterpret_cast<char**>(block);
  char* p = block + (names.size() + 1) * sizeof(char*);
  for (size_t i = 0; i < names.size(); ++i) {
    array[i] = p;
    std::memcpy(p, names[i].data(), names[i].size());
    p[names[i].size()] = '\0';
    p += names[i].size() + 1;
  }
  array[names.size()] = nullptr;
  return array;
}

// One block: the report, the delivered names' pointers, the failures, then
// every string.
static_assert(sizeof(shmesh_delivery_report) % alignof(char*) == 0, "layout");
static_assert(sizeof(shmesh_delivery_report) % alignof(shmesh_failure) == 0, "layout");
static_assert(sizeof(char*) % alignof(shmesh_failure) == 0, "layout");
shmesh_delivery_report* PackReport(size_t delivered_count, const std::vector<std::string>* delivered,
                                   const std::vector<std::pair<std::string, absl::Status>>& failed) {
  const size_t names = delivered != nullptr ? delivered->size() : 0;
  size_t total = sizeof(shmesh_delivery_report) + names * sizeof(char*) +
                 failed.size() * sizeof(shmesh_failure);
  for (size_t i = 0; i < names; ++i) total += (*delivered)[i].size() + 1;
  for (const auto& f : failed) total += f.first.size() + 1 + f.second.message().size() + 1;
  char* block = static_cast<char*>(Malloc(total));
  auto* report = reinterpret_cast<shmesh_delivery_report*>(block);
  char* p = block + sizeof(shmesh_delivery_report);
  auto** name_array = reinterpret_cast<const char**>(p);
  p += names * sizeof(char*);
  auto* failures = reinterpret_cast<shmesh_failure*>(p);
  p += failed.size() * sizeof(shmesh_failure);
  auto put = [&p](absl::string_view s) {
    char* start = p;
    if (!s.empty()) std::memcpy(p, s.data(), s.size());
    p[s.size()] = '\0';
    p += s.size() + 1;
    return start;
  };
  for (size_t i = 0; i < names; ++i) name_array[i] = put((*delivered)[i]);
  for (size_t i = 0; i < failed.size(); ++i) {
    failures[i].name = put(failed[i].first);
    failures[i].code = static_cast<shmesh_status_code>(failed[i].second.code());
    failures[i].message = put(failed[i].second.message());
  }
  report->delivered_count = delivered_count;
  report->delivered_names = delivered != nullptr ? name_array : nullptr;
  report->failed_count = failed.size();
  report->failed = failed.empty() ? nullptr : failures;
  return report;
}

// Moves `m` into the caller's struct (three allocations; all or none).
void FillOwned(const mesh::Message& m, shmesh_message_owned* out) {
  std::unique_ptr<char, decltype(&std::free)> from(CopyWithNul(m.from), &std::free);
  std::unique_ptr<char, decltype(&std::free)> topic(CopyWithNul(m.topic), &std::free);
  char* payload = CopyWithNul(m.data());
  out->from = from.release();
  out->topic = topic.release();
  out->payload = payload;
  out->payload_len = m.data().size();
}

// ---------------------------------------------------------------------------
// Callbacks: C function pointers wrapped for mesh/. The views' strings are
// not NUL-terminated, so they are copied into per-thread buffers that keep
// their capacity (no allocation per message once warm).

struct ViewBuffers {
  std::string from;
  std::string topic;
};

ViewBuffers& ThreadBuffers() {
  thread_local ViewBuffers buffers;
  return buffers;
}

std::function<void(const mesh::MessageView&)> WrapMessageFn(shmesh_message_fn fn, void* user_data) {
  return [fn, user_data](const mesh::MessageView& v) {
    try {
      ViewBuffers& b = ThreadBuffers();
      b.from.assign(v.from.data(), v.from.size());
      b.topic.assign(v.topic.data(), v.topic.size());
      shmesh_message m;
      m.from = b.from.c_str();
      m.topic = b.topic.c_str();
      m.payload = v.payload.empty() ? "" : v.payload.data();
      m.payload_len = v.payload.size();
      fn(&m, user_data);
    } catch (...) {
      // Only the copies above can throw (out of memory): the message cannot
      // be shown to C, and an exception must not unwind the receive thread.
    }
  };
}

shmesh_peer_info PeerView(const mesh::PeerInfo& p) {
  shmesh_peer_info info;
  info.name = p.name.c_str();
  info.id = p.id;
  info.pid = p.pid;
  info.handshake_us = absl::ToInt64Microseconds(p.handshake);
  return info;
}

// Runs a C service handler: its code and message, or the bytes it wrote.
absl::StatusOr<std::string> RunService(shmesh_service_fn fn, void* user_data,
                                       const mesh::RequestView& r) {
  try {
    const std::string service(r.service);
    const std::string from(r.from);
    shmesh_request req;
    req.service = service.c_str();
    req.from = from.c_str();
    req.payload = r.payload.empty() ? "" : r.payload.data();
    req.payload_len = r.payload.size();
    shmesh_responder resp;
    const int code = static_cast<int>(fn(&req, &resp, user_data));
    if (code == SHMESH_OK) return std::move(resp.response);
    if (code < 0 || code > SHMESH_UNAUTHENTICATED) {
      return absl::UnknownError(absl::StrCat("service ", service, ": the handler returned ", code,
                                             ", which is not a shmesh_status_code (0..16)"));
    }
    std::string message = resp.error_message.empty()
                              ? absl::StrCat("service ", service, ": the handler returned ",
                                             shmesh_status_code_name(static_cast<shmesh_status_code>(code)))
                              : std::move(resp.error_message);
    return absl::Status(static_cast<absl::StatusCode>(code), message);
  } catch (const std::bad_alloc&) {
    return absl::ResourceExhaustedError("service handler: out of memory on the server");
  } catch (...) {
    return absl::InternalError("service handler: unexpected C++ exception on the server");
  }
}

}  // namespace shmesh_capi
