// The shmesh C API's topics and services (shmesh.h) over mesh::Publisher,
// mesh::Subscription and mesh::ServiceRegistration; the conventions are
// shmesh.cc's (Guard around every entry point).
//
// Thread contract: as shmesh.h.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "capi/shmesh_internal.h"
#include "mesh/node.h"
#include "shmesh/shmesh.h"

namespace {
using shmesh_capi::Bytes;
using shmesh_capi::CopyWithNul;
using shmesh_capi::Deadline;
using shmesh_capi::FillOwned;
using shmesh_capi::Guard;
using shmesh_capi::NullArg;
using shmesh_capi::PackReport;
using shmesh_capi::PackStrings;
using shmesh_capi::WrapMessageFn;
using shmesh_capi::RunService;
}  // namespace

extern "C" {

// --- Topics ----------------------------------------------------------------

namespace {

// shmesh_node_advertise and shmesh_node_advertise_shared (`shared`:
// PublisherOptions::shared_ring); `entry` names the C function in errors.
shmesh_status_code Advertise(shmesh_node* node, const char* topic, const shmesh_publisher_options* options,
                             bool shared, shmesh_publisher** out, shmesh_error* err, const char* entry) {
  return Guard(err, [&]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(topic);
    mesh::PublisherOptions opts;
    opts.shared_ring = shared;
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
              entry, ": options->reliability is ", reliability,
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

}  // namespace

shmesh_status_code shmesh_node_advertise(shmesh_node* node, const char* topic,
                                         const shmesh_publisher_options* options,
                                         shmesh_publisher** out, shmesh_error* err) {
  return Advertise(node, topic, options, /*shared=*/false, out, err, __func__);
}

shmesh_status_code shmesh_node_advertise_shared(shmesh_node* node, const char* topic,
                                                const shmesh_publisher_options* options,
                                                shmesh_publisher** out, shmesh_error* err) {
  return Advertise(node, topic, options, /*shared=*/true, out, err, __func__);
}

shmesh_status_code shmesh_publisher_publish(shmesh_publisher* pub, const void* payload,
                                            size_t len, int64_t timeout_ms,
                                            shmesh_delivery_report** out_report,
                                            shmesh_error* err) {
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
    SHMESH_REQUIRE(r);
    if (len > 0) SHMESH_REQUIRE(data);
    r->response.append(Bytes(data, len).data(), len);
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_responder_set_error_message(shmesh_responder* r, const char* message,
                                                      shmesh_error* err) {
  return Guard(err, [&, entry = __func__]() -> absl::Status {
    SHMESH_REQUIRE(r);
    SHMESH_REQUIRE(message);
    r->error_message = message;
    return absl::OkStatus();
  });
}

shmesh_status_code shmesh_node_serve(shmesh_node* node, const char* service, shmesh_service_fn fn,
                                     void* user_data, shmesh_service** out, shmesh_error* err) {
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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

