// The shmesh C API (shmesh.h) over mesh::Node: the node, sending,
// receiving, peers and topology (topics and services: shmesh_pubsub.cc).
// Handles own the C++ objects; every entry point runs in Guard, which turns
// the absl::Status into a shmesh_status_code plus the caller's shmesh_error,
// and stops every exception.
//
// Thread contract: as shmesh.h; nothing here keeps state beyond the
// handles, and each handle's C++ object is itself thread-safe.
#include "shmesh/shmesh.h"

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "capi/shmesh_internal.h"
#include "google/protobuf/util/json_util.h"
#include "mesh/config.h"
#include "mesh/node.h"

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
using shmesh_capi::PeerView;

constexpr char kVersion[] = SHMESH_VERSION;

// ---------------------------------------------------------------------------
// Config text.

// The config parser of meshd and Node::CreateFromFile: errors name the
// line, the field, a close match of a misspelled field, and config.proto.
absl::StatusOr<mesh::v1::NodeConfig> ParseConfigText(const char* text) { return mesh::ParseConfig(text, "<text>"); }

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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(path);
    return AdoptNode(mesh::Node::CreateFromFile(path), out);
  });
}

shmesh_status_code shmesh_node_create_from_text(const char* config_text, shmesh_node** out,
                                                shmesh_error* err) {
  return Guard(err, [&, entry = __func__]() -> absl::Status {
    SHMESH_REQUIRE(out);
    *out = nullptr;
    SHMESH_REQUIRE(config_text);
    absl::StatusOr<mesh::v1::NodeConfig> config = ParseConfigText(config_text);
    if (!config.ok()) return config.status();
    return AdoptNode(mesh::Node::Create(*config), out);
  });
}

shmesh_status_code shmesh_node_start(shmesh_node* node, shmesh_error* err) {
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
    SHMESH_REQUIRE(node);
    SHMESH_REQUIRE(fn);
    return node->node->SetMessageHandler(WrapMessageFn(fn, user_data));
  });
}

shmesh_status_code shmesh_node_receive(shmesh_node* node, int64_t timeout_ms,
                                       shmesh_message_owned* out, shmesh_error* err) {
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
    SHMESH_REQUIRE(node);
    return node->node->WaitForPeers(n, Deadline(timeout_ms));
  });
}

shmesh_status_code shmesh_node_topology(shmesh_node* node, int local_only, void** out,
                                        size_t* out_len, shmesh_error* err) {
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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
  return Guard(err, [&, entry = __func__]() -> absl::Status {
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

}  // extern "C"
