// The shmesh C API (shmesh.h) over mesh::Node: handles own the C++ objects,
// every entry point converts absl::Status to a shmesh_status_code plus the
// caller's shmesh_error, and no exception leaves an entry point (Guard).
//
// Thread contract: as shmesh.h; this file keeps no state of its own beyond
// the handles, and each handle's C++ object is itself thread-safe.
#include "shmesh/shmesh.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
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
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "mesh/node.h"

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

namespace {

// The codes must keep absl's numbers: they are cast both ways.
static_assert(SHMESH_OK == static_cast<int>(absl::StatusCode::kOk), "code numbers");
static_assert(SHMESH_NOT_FOUND == static_cast<int>(absl::StatusCode::kNotFound), "code numbers");
static_assert(SHMESH_INTERNAL == static_cast<int>(absl::StatusCode::kInternal), "code numbers");
static_assert(SHMESH_UNAUTHENTICATED == static_cast<int>(absl::StatusCode::kUnauthenticated),
              "code numbers");

constexpr char kVersion[] = "0.1.0";

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

absl::Status NullArg(const char* function, const char* arg) {
  return absl::InvalidArgumentError(
      absl::StrCat(function, ": argument `", arg, "` is NULL; pass a valid pointer"));
}

#define SHMESH_REQUIRE(arg)                                   \
  do {                                                        \
    if ((arg) == nullptr) return NullArg(__func__, #arg);     \
  } while (0)

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
  char* payload = CopyWithNul(m.payload);
  out->from = from.release();
  out->topic = topic.release();
  out->payload = payload;
  out->payload_len = m.payload.size();
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

// ---------------------------------------------------------------------------
// Config text.

// Collects the text parser's errors as "<text>:LINE:COL: message" lines.
class TextErrors : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!text_.empty()) text_ += "; ";
    absl::StrAppend(&text_, "<text>:", line + 1, ":", column + 1, ": ", message);
  }
  const std::string& text() const { return text_; }

 private:
  std::string text_;
};

absl::StatusOr<mesh::v1::NodeConfig> ParseConfigText(const char* text) {
  mesh::v1::NodeConfig config;
  TextErrors errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &config)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config text does not parse: ", errors.text().empty() ? "syntax error" : errors.text(),
        ". Fix the text (protobuf text format; the fields are in proto/mesh/v1/config.proto)"));
  }
  return config;
}

absl::Status AdoptNode(absl::StatusOr<std::unique_ptr<mesh::Node>> node, shmesh_node** out) {
  if (!node.ok()) return node.status();
  auto handle = std::make_unique<shmesh_node>();
  handle->node = std::move(*node);
  *out = handle.release();
  return absl::OkStatus();
}

}  // namespace

// ===========================================================================
// The entry points.

extern "C" {

const char* shmesh_version(void) { return kVersion; }

const char* shmesh_status_code_name(shmesh_status_code code) {
  switch (code) {
    case SHMESH_OK: return "OK";
    case SHMESH_CANCELLED: return "CANCELLED";
    case SHMESH_UNKNOWN: return "UNKNOWN";
    case SHMESH_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case SHMESH_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case SHMESH_NOT_FOUND: return "NOT_FOUND";
    case SHMESH_ALREADY_EXISTS: return "ALREADY_EXISTS";
    case SHMESH_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case SHMESH_RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case SHMESH_FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case SHMESH_ABORTED: return "ABORTED";
    case SHMESH_OUT_OF_RANGE: return "OUT_OF_RANGE";
    case SHMESH_UNIMPLEMENTED: return "UNIMPLEMENTED";
    case SHMESH_INTERNAL: return "INTERNAL";
    case SHMESH_UNAVAILABLE: return "UNAVAILABLE";
    case SHMESH_DATA_LOSS: return "DATA_LOSS";
    case SHMESH_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case SHMESH_STATUS_CODE_MAX_ENUM_: break;
  }
  return "UNKNOWN_CODE";
}

void shmesh_free(void* p) { std::free(p); }

void shmesh_message_owned_free(shmesh_message_owned* msg) {
  if (msg == nullptr) return;
  std::free(msg->from);
  std::free(msg->topic);
  std::free(msg->payload);
  msg->from = nullptr;
  msg->topic = nullptr;
  msg->payload = nullptr;
  msg->payload_len = 0;
}

// --- Node lifecycle --------------------------------------------------------

shmesh_status_code shmesh_node_create_from_file(const char* path, shmesh_node** out,
                                                shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(path);
    return AdoptNode(mesh::Node::CreateFromFile(path), out);
  });
}

shmesh_status_code shmesh_node_create_from_text(const char* config_text, shmesh_node** out,
                                                shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(config_text);
    absl::StatusOr<mesh::v1::NodeConfig> config = ParseConfigText(config_text);
    if (!config.ok()) return config.status();
    return AdoptNode(mesh::Node::Create(*config), out);
  });
}

shmesh_status_code shmesh_node_start(shmesh_node* node, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(node);
    return node->node->Start();
  });
}

void shmesh_node_stop(shmesh_node* node) {
  if (node == nullptr) return;
  try {
    node->node->Stop();
  } catch (...) {
  }
}

void shmesh_node_destroy(shmesh_node* node) {
  if (node == nullptr) return;
  try {
    delete node;
  } catch (...) {
  }
}

const char* shmesh_node_name(const shmesh_node* node) {
  return node == nullptr ? nullptr : node->node->name().c_str();
}

uint64_t shmesh_node_id(const shmesh_node* node) { return node == nullptr ? 0 : node->node->id(); }

shmesh_status_code shmesh_node_grpc_address(const shmesh_node* node, char** out,
                                            shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(node);
    *out = CopyWithNul(node->node->grpc_address());
    return absl::OkStatus();
  });
}

// --- Sending ---------------------------------------------------------------

shmesh_status_code shmesh_node_send(shmesh_node* node, const char* peer, const void* payload,
                                    size_t len, int64_t timeout_ms, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(peer);
    if (len > 0) SHMESH_REQUIRE(payload);
    return node->node->Send(peer, Bytes(payload, len), Deadline(timeout_ms));
  });
}

shmesh_status_code shmesh_node_send_batch(shmesh_node* node, const char* peer,
                                          const void* const* payloads, const size_t* lens,
                                          size_t count, int64_t timeout_ms, size_t* out_sent,
                                          shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_sent != nullptr) *out_sent = 0;
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(peer);
    if (count > 0) {
      SHMESH_REQUIRE(payloads);
      SHMESH_REQUIRE(lens);
    }
    std::vector<absl::string_view> views;
    views.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      if (lens[i] > 0 && payloads[i] == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "shmesh_node_send_batch: payloads[", i, "] is NULL with lens[", i, "] = ", lens[i],
            "; pass the bytes or a length of 0"));
      }
      views.push_back(Bytes(payloads[i], lens[i]));
    }
    absl::StatusOr<size_t> sent = node->node->SendBatch(peer, views, Deadline(timeout_ms));
    if (!sent.ok()) return sent.status();
    if (out_sent != nullptr) *out_sent = *sent;
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_node_broadcast(shmesh_node* node, const void* payload, size_t len,
                                         int64_t timeout_ms, shmesh_delivery_report** out_report,
                                         shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_report != nullptr) *out_report = nullptr;
    SHMESH_REQUIRE(node);
    if (len > 0) SHMESH_REQUIRE(payload);
    absl::StatusOr<mesh::BroadcastResult> r =
        node->node->Broadcast(Bytes(payload, len), Deadline(timeout_ms));
    if (!r.ok()) return r.status();
    if (out_report != nullptr) {
      *out_report = PackReport(r->delivered.size(), &r->delivered, r->not_reached);
    }
    return absl::OkStatus();
  });
}

// --- Receiving -------------------------------------------------------------

shmesh_status_code shmesh_node_set_message_handler(shmesh_node* node, shmesh_message_fn fn,
                                                   void* user_data, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(fn);
    return node->node->SetMessageHandler(WrapMessageFn(fn, user_data));
  });
}

shmesh_status_code shmesh_node_receive(shmesh_node* node, int64_t timeout_ms,
                                       shmesh_message_owned* out, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = shmesh_message_owned{nullptr, nullptr, nullptr, 0};
    SHMESH_REQUIRE(node);
    absl::StatusOr<mesh::Message> m = node->node->Receive(Deadline(timeout_ms));
    if (!m.ok()) return m.status();
    FillOwned(*m, out);
    return absl::OkStatus();
  });
}

int shmesh_node_receive_fd(const shmesh_node* node) {
  return node == nullptr ? -1 : node->node->receive_fd();
}

// --- Peers -----------------------------------------------------------------

shmesh_status_code shmesh_node_set_peer_up_handler(shmesh_node* node, shmesh_peer_fn fn,
                                                   void* user_data, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(fn);
    return node->node->SetPeerUpHandler([fn, user_data](const mesh::PeerInfo& p) {
      const shmesh_peer_info info = PeerView(p);
      fn(&info, user_data);
    });
  });
}

shmesh_status_code shmesh_node_set_peer_down_handler(shmesh_node* node, shmesh_peer_fn fn,
                                                     void* user_data, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(fn);
    return node->node->SetPeerDownHandler([fn, user_data](const mesh::PeerInfo& p) {
      const shmesh_peer_info info = PeerView(p);
      fn(&info, user_data);
    });
  });
}

shmesh_status_code shmesh_node_set_peer_unresponsive_handler(shmesh_node* node,
                                                             shmesh_peer_unresponsive_fn fn,
                                                             void* user_data, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(fn);
    return node->node->SetPeerUnresponsiveHandler(
        [fn, user_data](const mesh::PeerInfo& p, bool unresponsive) {
          const shmesh_peer_info info = PeerView(p);
          fn(&info, unresponsive ? 1 : 0, user_data);
        });
  });
}

shmesh_status_code shmesh_node_peers(const shmesh_node* node, char*** out_names,
                                     size_t* out_count, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_count != nullptr) *out_count = 0;
    SHMESH_REQUIRE(out_names);
    *out_names = nullptr;
    SHMESH_REQUIRE(node);
    const std::vector<std::string> peers = node->node->Peers();
    *out_names = PackStrings(peers);
    if (out_count != nullptr) *out_count = peers.size();
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_node_wait_for_peers(shmesh_node* node, size_t n, int64_t timeout_ms,
                                              shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(node);
    return node->node->WaitForPeers(n, Deadline(timeout_ms));
  });
}

shmesh_status_code shmesh_node_topology(shmesh_node* node, int local_only, void** out,
                                        size_t* out_len, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_len != nullptr) *out_len = 0;
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(out_len);
    SHMESH_REQUIRE(node);
    auto snapshot = node->node->Topology(local_only != 0);
    if (!snapshot.ok()) return snapshot.status();
    std::string bytes;
    if (!snapshot->SerializeToString(&bytes)) {
      return absl::InternalError("shmesh_node_topology: the snapshot does not serialize (a bug)");
    }
    *out = CopyWithNul(bytes);
    *out_len = bytes.size();
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_node_topology_json(shmesh_node* node, int local_only, char** out,
                                             size_t* out_len, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_len != nullptr) *out_len = 0;
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(node);
    auto snapshot = node->node->Topology(local_only != 0);
    if (!snapshot.ok()) return snapshot.status();
    std::string json;
    const auto st = google::protobuf::util::MessageToJsonString(*snapshot, &json);
    if (!st.ok()) {
      return absl::InternalError(
          absl::StrCat("shmesh_node_topology_json: JSON conversion failed: ", st.ToString()));
    }
    *out = CopyWithNul(json);
    if (out_len != nullptr) *out_len = json.size();
    return absl::OkStatus();
  });
}

// --- Topics ----------------------------------------------------------------

shmesh_status_code shmesh_node_advertise(shmesh_node* node, const char* topic,
                                         const shmesh_publisher_options* options,
                                         shmesh_publisher** out, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(topic);
    mesh::PublisherOptions opts;
    if (options != nullptr) {
      opts.history = options->history;
      // Read as the int C stored: a C caller may put any value there, and
      // loading one outside the enum's values as the enum is undefined in C++.
      int32_t reliability;
      static_assert(sizeof(reliability) == sizeof(options->reliability), "enum width");
      std::memcpy(&reliability, &options->reliability, sizeof(reliability));
      switch (reliability) {
        case SHMESH_RELIABLE:
          opts.reliability = mesh::PublisherOptions::Reliability::kReliable;
          break;
        case SHMESH_BEST_EFFORT:
          opts.reliability = mesh::PublisherOptions::Reliability::kBestEffort;
          break;
        default:
          return absl::InvalidArgumentError(absl::StrCat(
              "shmesh_node_advertise: options->reliability is ", reliability,
              "; use SHMESH_RELIABLE or SHMESH_BEST_EFFORT"));
      }
      if (options->on_matched != nullptr) {
        shmesh_matched_fn fn = options->on_matched;
        void* user_data = options->on_matched_user_data;
        opts.on_matched = [fn, user_data](size_t matched) { fn(matched, user_data); };
      }
    }
    auto pub = node->node->Advertise(topic, std::move(opts));
    if (!pub.ok()) return pub.status();
    auto handle = std::make_unique<shmesh_publisher>();
    handle->pub = std::move(*pub);
    *out = handle.release();
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_publisher_publish(shmesh_publisher* pub, const void* payload,
                                            size_t len, int64_t timeout_ms,
                                            shmesh_delivery_report** out_report,
                                            shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_report != nullptr) *out_report = nullptr;
    SHMESH_REQUIRE(pub);
    if (len > 0) SHMESH_REQUIRE(payload);
    absl::StatusOr<mesh::PublishResult> r =
        pub->pub->Publish(Bytes(payload, len), Deadline(timeout_ms));
    if (!r.ok()) return r.status();
    if (out_report != nullptr) *out_report = PackReport(r->delivered, nullptr, r->not_reached);
    return absl::OkStatus();
  });
}

size_t shmesh_publisher_matched(const shmesh_publisher* pub) {
  return pub == nullptr ? 0 : pub->pub->matched();
}

shmesh_status_code shmesh_publisher_wait_for_subscribers(shmesh_publisher* pub, size_t n,
                                                         int64_t timeout_ms, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(pub);
    return pub->pub->WaitForSubscribers(n, Deadline(timeout_ms));
  });
}

void shmesh_publisher_destroy(shmesh_publisher* pub) {
  if (pub == nullptr) return;
  try {
    delete pub;
  } catch (...) {
  }
}

shmesh_status_code shmesh_node_subscribe(shmesh_node* node, const char* pattern,
                                         shmesh_message_fn fn, void* user_data,
                                         shmesh_subscription** out, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(pattern);
    SHMESH_REQUIRE(fn);
    auto sub = node->node->Subscribe(pattern, WrapMessageFn(fn, user_data));
    if (!sub.ok()) return sub.status();
    auto handle = std::make_unique<shmesh_subscription>();
    handle->sub = std::move(*sub);
    *out = handle.release();
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_node_subscribe_pull(shmesh_node* node, const char* pattern,
                                              size_t queue_depth, shmesh_subscription** out,
                                              shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(pattern);
    mesh::SubscribeOptions opts;
    if (queue_depth != 0) opts.queue_depth = queue_depth;
    auto sub = node->node->Subscribe(pattern, opts);
    if (!sub.ok()) return sub.status();
    auto handle = std::make_unique<shmesh_subscription>();
    handle->sub = std::move(*sub);
    *out = handle.release();
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_subscription_receive(shmesh_subscription* sub, int64_t timeout_ms,
                                               shmesh_message_owned* out, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = shmesh_message_owned{nullptr, nullptr, nullptr, 0};
    SHMESH_REQUIRE(sub);
    absl::StatusOr<mesh::Message> m = sub->sub->Receive(Deadline(timeout_ms));
    if (!m.ok()) return m.status();
    FillOwned(*m, out);
    return absl::OkStatus();
  });
}

int shmesh_subscription_ready_fd(const shmesh_subscription* sub) {
  return sub == nullptr ? -1 : sub->sub->ready_fd();
}

uint64_t shmesh_subscription_received(const shmesh_subscription* sub) {
  return sub == nullptr ? 0 : sub->sub->received();
}

void shmesh_subscription_unsubscribe(shmesh_subscription* sub) {
  if (sub == nullptr) return;
  try {
    sub->sub->Unsubscribe();
  } catch (...) {
  }
}

void shmesh_subscription_destroy(shmesh_subscription* sub) {
  if (sub == nullptr) return;
  try {
    delete sub;
  } catch (...) {
  }
}

// --- Services --------------------------------------------------------------

shmesh_status_code shmesh_responder_write(shmesh_responder* r, const void* data, size_t len,
                                          shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(r);
    if (len > 0) SHMESH_REQUIRE(data);
    r->response.append(Bytes(data, len).data(), len);
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_responder_set_error_message(shmesh_responder* r, const char* message,
                                                      shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(r);
    SHMESH_REQUIRE(message);
    r->error_message = message;
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_node_serve(shmesh_node* node, const char* service, shmesh_service_fn fn,
                                     void* user_data, shmesh_service** out, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(service);
    SHMESH_REQUIRE(fn);
    auto reg = node->node->Serve(service, [fn, user_data](const mesh::RequestView& r) {
      return RunService(fn, user_data, r);
    });
    if (!reg.ok()) return reg.status();
    auto handle = std::make_unique<shmesh_service>();
    handle->reg = std::move(*reg);
    *out = handle.release();
    return absl::OkStatus();
  });
}

uint64_t shmesh_service_handled(const shmesh_service* svc) {
  return svc == nullptr ? 0 : svc->reg->handled();
}

void shmesh_service_destroy(shmesh_service* svc) {
  if (svc == nullptr) return;
  try {
    delete svc;
  } catch (...) {
  }
}

shmesh_status_code shmesh_node_call(shmesh_node* node, const char* service, const void* request,
                                    size_t request_len, int64_t timeout_ms, const char* server,
                                    void** out_response, size_t* out_len, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_len != nullptr) *out_len = 0;
    SHMESH_REQUIRE(out_response);
    *out_response = nullptr;
    SHMESH_REQUIRE(out_len);
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(service);
    if (request_len > 0) SHMESH_REQUIRE(request);
    mesh::CallOptions options;
    if (server != nullptr) options.server = server;
    absl::StatusOr<std::string> response =
        node->node->Call(service, Bytes(request, request_len), Deadline(timeout_ms), options);
    if (!response.ok()) return response.status();
    *out_response = CopyWithNul(*response);
    *out_len = response->size();
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_node_servers(const shmesh_node* node, const char* service,
                                       char*** out_names, size_t* out_count, shmesh_error* err) {
  return Guard(err, [&]() -> absl::Status {
    if (out_count != nullptr) *out_count = 0;
    SHMESH_REQUIRE(out_names);
    *out_names = nullptr;
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(service);
    const std::vector<std::string> servers = node->node->Servers(service);
    *out_names = PackStrings(servers);
    if (out_count != nullptr) *out_count = servers.size();
    return absl::OkStatus();
  });
}

}  // extern "C"
