// _shmesh: the pybind11 extension under the `shmesh` Python package. It
// binds mesh::Node (mesh/node.h) directly; shmesh/__init__.py adds the
// exceptions, the asyncio helpers and the context managers. The GIL and
// callback rules are in py_support.h and python/README.md.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "mesh/node.h"
#include "python/py_node.h"
#include "python/py_support.h"

namespace shmesh_py {
namespace {

// Collects text-format parse errors as "<string>:LINE:COL: message".
class ErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (!errors.empty()) errors += "; ";
    errors += "<config_text>:" + std::to_string(line + 1) + ":" + std::to_string(column + 1) + ": " + message;
  }
  std::string errors;
};

std::unique_ptr<PyNode> MakeNode(const py::object& path, const py::object& text) {
  if (path.is_none() == text.is_none()) {
    throw py::value_error("shmesh.Node: give exactly one of config_path and config_text");
  }
  absl::StatusOr<std::unique_ptr<mesh::Node>> node;
  if (!path.is_none()) {
    const std::string p = py::str(path);
    node = mesh::Node::CreateFromFile(p);
  } else {
    const std::string t = text.cast<std::string>();
    mesh::v1::NodeConfig config;
    google::protobuf::TextFormat::Parser parser;
    ErrorCollector errors;
    parser.RecordErrorsTo(&errors);
    if (!parser.ParseFromString(t, &config)) {
      ThrowIfError(absl::InvalidArgumentError(errors.errors.empty() ? "<config_text>: cannot parse" : errors.errors));
    }
    node = mesh::Node::Create(config);
  }
  auto out = std::make_unique<PyNode>();
  out->node = ValueOrThrow(std::move(node));
  return out;
}

struct PyPeerInfo {
  std::string name;
  uint64_t id;
  int32_t pid;
  double handshake_s;
};

PyPeerInfo ToPy(const mesh::PeerInfo& p) {
  return PyPeerInfo{p.name, p.id, p.pid, absl::ToDoubleSeconds(p.handshake)};
}

struct PyBroadcastResult {
  std::vector<std::string> delivered;
  py::list not_reached;
};

py::object TryReceive(mesh::Node& node) {
  absl::StatusOr<mesh::Message> m = node.Receive(absl::InfinitePast());
  if (m.status().code() == absl::StatusCode::kDeadlineExceeded) return py::none();
  mesh::Message msg = ValueOrThrow(std::move(m));
  return OwnedMessage(std::move(msg.from), std::move(msg.topic), msg.shared ? msg.CopyData() : std::move(msg.payload));
}

}  // namespace

void BindNode(py::module_& m) {
  py::class_<PyPeerInfo>(m, "PeerInfo", "A peer as passed to the peer up/down/unresponsive callbacks.")
      .def_readonly("name", &PyPeerInfo::name, "The peer's node name.")
      .def_readonly("id", &PyPeerInfo::id, "The peer's node id.")
      .def_readonly("pid", &PyPeerInfo::pid, "The peer's process id.")
      .def_readonly("handshake", &PyPeerInfo::handshake_s, "Seconds spent on the link handshake (diagnostics).")
      .def("__repr__", [](const PyPeerInfo& p) {
        return "PeerInfo(name='" + p.name + "', id=" + std::to_string(p.id) + ", pid=" + std::to_string(p.pid) + ")";
      });

  py::class_<PyBroadcastResult>(m, "BroadcastResult", "What Node.broadcast did.")
      .def_readonly("delivered", &PyBroadcastResult::delivered, "Names of the peers that got the message.")
      .def_readonly("not_reached", &PyBroadcastResult::not_reached,
                    "[(peer name, shmesh.Error)] for the peers that did not.");

  py::class_<PyNode> node(m, "_Node", py::dynamic_attr(),
                          "The C++ mesh::Node; use shmesh.Node (a subclass) instead.");
  node.def(py::init(&MakeNode), py::arg("config_path") = py::none(), py::arg("config_text") = py::none(),
           "Builds a stopped node from a config file (text format, or JSON for *.json) or config text.")
      .def(
          "start",
          [](PyNode& self) {
            mesh::Node& n = self.get();
            absl::Status s;
            {
              ReleasedGil nogil;
              s = n.Start();
            }
            ThrowIfError(s);
          },
          "Starts the node (joins through its seeds in the background; see wait_for_peers).\n"
          "Raises AlreadyExistsError if a live node already uses the name in the run directory,\n"
          "FailedPreconditionError if called twice.")
      .def(
          "stop",
          [](PyNode& self) {
            if (!self.node) return;
            if (InNodeCallback()) {
              // Stop waits for the node's callbacks: from one of them (of
              // this node or, on a thread we cannot tell apart, another) it
              // could wait for itself.
              ThrowIfError(absl::FailedPreconditionError(
                  "stop() cannot be called from a shmesh callback; stop the node from another thread"));
            }
            mesh::Node& n = *self.node;
            ReleasedGil nogil;
            n.Stop();
          },
          "Leaves the mesh, closes every link and stops the node's threads. Idempotent.\n"
          "Waits for a callback in progress (releasing the GIL). FailedPreconditionError when\n"
          "called from inside a callback (of any node).")
      .def_property_readonly(
          "name", [](PyNode& self) { return self.get().name(); }, "This node's name.")
      .def_property_readonly(
          "id", [](PyNode& self) { return self.get().id(); }, "This node's 64-bit id.")
      .def_property_readonly(
          "grpc_address", [](PyNode& self) { return self.get().grpc_address(); },
          "This node's gRPC target (a seed for other nodes), with the real port if it was 0.")
      .def_property_readonly(
          "config_text",
          [](PyNode& self) {
            std::string out;
            google::protobuf::TextFormat::PrintToString(self.get().config(), &out);
            return out;
          },
          "The resolved config (defaults filled in), in protobuf text format.")
      .def(
          "send",
          [](PyNode& self, const std::string& peer, const py::handle& data, const py::object& timeout) {
            mesh::Node& n = self.get();
            BytesArg payload(data);
            const absl::Time deadline = DeadlineFrom(timeout);
            // Fast path with the GIL held: there is room in the ring.
            absl::Status s = n.Send(peer, payload.view(), absl::InfinitePast());
            if (s.code() == absl::StatusCode::kResourceExhausted && deadline != absl::InfinitePast()) {
              s = WaitReleasingGil(deadline, [&](absl::Time d) { return n.Send(peer, payload.view(), d); });
            }
            ThrowIfError(s);
          },
          py::arg("peer"), py::arg("data"), py::arg("timeout") = py::none(),
          "Sends data (bytes-like or str) to the linked peer `peer`. Waits up to `timeout`\n"
          "seconds (None: forever, 0: not at all) for ring space, with the GIL released.\n"
          "Raises NotFoundError (no link), ResourceExhaustedError (full, timeout 0),\n"
          "DeadlineExceededError, InvalidArgumentError (too large), UnavailableError.")
      .def(
          "send_batch",
          [](PyNode& self, const std::string& peer, const py::iterable& items, const py::object& timeout) {
            mesh::Node& n = self.get();
            std::vector<BytesArg> args;
            for (const py::handle& item : items) args.emplace_back(item);
            std::vector<absl::string_view> views;
            views.reserve(args.size());
            for (const BytesArg& a : args) views.push_back(a.view());
            const absl::Time deadline = DeadlineFrom(timeout);
            absl::StatusOr<size_t> sent;
            if (deadline == absl::InfinitePast()) {
              sent = n.SendBatch(peer, views, deadline);
            } else {
              ReleasedGil nogil;
              sent = n.SendBatch(peer, views, deadline);
            }
            return ValueOrThrow(std::move(sent));
          },
          py::arg("peer"), py::arg("payloads"), py::arg("timeout") = py::none(),
          "Sends the payloads to `peer` in order, waking it once: returns how many were sent\n"
          "(a prefix; fewer if the ring stayed full until the timeout). Raises as send does\n"
          "when none was sent.")
      .def(
          "broadcast",
          [](PyNode& self, const py::handle& data, const py::object& timeout) {
            mesh::Node& n = self.get();
            BytesArg payload(data);
            const absl::Time deadline = DeadlineFrom(timeout);
            absl::StatusOr<mesh::BroadcastResult> r;
            if (deadline == absl::InfinitePast()) {
              r = n.Broadcast(payload.view(), deadline);
            } else {
              ReleasedGil nogil;
              r = n.Broadcast(payload.view(), deadline);
            }
            mesh::BroadcastResult res = ValueOrThrow(std::move(r));
            return PyBroadcastResult{std::move(res.delivered), NotReachedList(res.not_reached)};
          },
          py::arg("data"), py::arg("timeout") = py::none(),
          "Sends data to every linked peer (full rings waited for up to `timeout`). Returns a\n"
          "BroadcastResult; raises only if no peer could be reached.")
      .def(
          "_set_message_handler",
          [](PyNode& self, const py::object& py_self, const py::object& callback) {
            self.Adopt(py_self);
            std::shared_ptr<CallbackOwner> owner = self.owner;
            ThrowIfError(self.get().SetMessageHandler([owner](const mesh::MessageView& m) {
              RunCallback(owner, "_cb_message",
                          [&](py::object& cb) { CallWithBorrowedMessage(cb, m.from, m.topic, m.payload); });
            }));
            py_self.attr("_cb_message") = callback;
          })
      .def(
          "receive",
          [](PyNode& self, const py::object& timeout) {
            mesh::Node& n = self.get();
            absl::StatusOr<mesh::Message> m = absl::DeadlineExceededError("");
            const absl::Time deadline = DeadlineFrom(timeout);
            if (deadline == absl::InfinitePast()) {
              m = n.Receive(deadline);
            } else {
              ThrowIfError(WaitReleasingGil(deadline, [&](absl::Time d) {
                m = n.Receive(d);
                return m.status();
              }));
            }
            mesh::Message msg = ValueOrThrow(std::move(m));
            return OwnedMessage(std::move(msg.from), std::move(msg.topic), msg.shared ? msg.CopyData() : std::move(msg.payload));
          },
          py::arg("timeout") = py::none(),
          "Takes the next queued message (a Message whose payload is bytes), waiting up to\n"
          "`timeout` seconds with the GIL released. Raises DeadlineExceededError if none came,\n"
          "FailedPreconditionError with an on_message callback set, CancelledError once stopped.")
      .def(
          "_try_receive", [](PyNode& self) { return TryReceive(self.get()); },
          "A queued message, or None at once.")
      .def(
          "receive_fd", [](PyNode& self) { return self.get().receive_fd(); },
          "A descriptor (owned by the node: do not close it) readable while receive() has a\n"
          "message queued, for select/poll/asyncio.")
      .def(
          "_set_peer_handlers",
          [](PyNode& self, const py::object& py_self, const std::string& which, const py::object& callback) {
            self.Adopt(py_self);
            std::shared_ptr<CallbackOwner> owner = self.owner;
            mesh::Node& n = self.get();
            absl::Status s;
            std::string attr = "_cb_peer_" + which;
            if (which == "up" || which == "down") {
              auto handler = [owner, attr](const mesh::PeerInfo& p) {
                RunCallback(owner, attr.c_str(), [&](py::object& cb) { cb(ToPy(p)); });
              };
              s = which == "up" ? n.SetPeerUpHandler(handler) : n.SetPeerDownHandler(handler);
            } else if (which == "unresponsive") {
              s = n.SetPeerUnresponsiveHandler([owner, attr](const mesh::PeerInfo& p, bool unresponsive) {
                RunCallback(owner, attr.c_str(), [&](py::object& cb) { cb(ToPy(p), unresponsive); });
              });
            } else {
              throw py::value_error("unknown peer handler " + which);
            }
            ThrowIfError(s);
            py_self.attr(attr.c_str()) = callback;
          })
      .def(
          "peers", [](PyNode& self) { return self.get().Peers(); }, "Names of the linked peers, sorted.")
      .def(
          "unresponsive_peers", [](PyNode& self) { return self.get().UnresponsivePeers(); },
          "Names of the linked peers currently reported unresponsive, sorted.")
      .def(
          "wait_for_peers",
          [](PyNode& self, size_t n, const py::object& timeout) {
            mesh::Node& node = self.get();
            ThrowIfError(
                WaitReleasingGil(DeadlineFrom(timeout), [&](absl::Time d) { return node.WaitForPeers(n, d); }));
          },
          py::arg("n"), py::arg("timeout") = py::none(),
          "Waits (GIL released) until at least n peers are linked; DeadlineExceededError otherwise.")
      .def(
          "restart_control_server",
          [](PyNode& self) {
            mesh::Node& n = self.get();
            absl::Status s;
            {
              ReleasedGil nogil;
              s = n.RestartControlServer();
            }
            ThrowIfError(s);
          },
          "Restarts only the node's gRPC server (links are untouched).")
      .def(
          "_topology_json",
          [](PyNode& self, bool local_only) {
            mesh::Node& n = self.get();
            absl::StatusOr<mesh::v1::TopologySnapshot> t;
            {
              ReleasedGil nogil;
              t = n.Topology(local_only);
            }
            mesh::v1::TopologySnapshot snap = ValueOrThrow(std::move(t));
            std::string json;
            google::protobuf::util::JsonPrintOptions options;
            options.preserve_proto_field_names = true;
            auto st = google::protobuf::util::MessageToJsonString(snap, &json, options);
            if (!st.ok()) ThrowIfError(absl::InternalError("topology to JSON: " + std::string(st.message())));
            return json;
          },
          py::arg("local_only") = false);
  BindTopics(m, node);
}

}  // namespace shmesh_py

PYBIND11_MODULE(_shmesh, m) {
  m.doc() = "shmesh: the C++ mesh::Node for Python (use the `shmesh` package, not this module).";
  shmesh_py::RegisterErrors(m);
  shmesh_py::BindMessage(m);
  shmesh_py::BindNode(m);
}
