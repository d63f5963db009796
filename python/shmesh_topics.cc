// Topics and services in the _shmesh extension: Node.advertise, subscribe,
// serve, call and servers, and the Publisher, Subscription and Service
// classes (mesh/topic.h, mesh/rpc.h). Ownership and GIL rules: py_node.h.
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mesh/node.h"
#include "mesh/rpc.h"
#include "mesh/topic.h"
#include "python/py_node.h"
#include "python/py_support.h"

namespace shmesh_py {
namespace {

template <typename T>
struct PyHandle {
  std::unique_ptr<T> handle;
  std::shared_ptr<CallbackOwner> owner = std::make_shared<CallbackOwner>();
  PyHandle() = default;
  PyHandle(const PyHandle&) = delete;
  PyHandle& operator=(const PyHandle&) = delete;
  ~PyHandle() { Close(); }
  void Close() {
    owner->alive = false;
    DestroyWithoutGil(handle);
  }
  T& get(const char* what) {
    if (!handle) throw py::value_error(std::string("shmesh: this ") + what + " was closed");
    return *handle;
  }
};
using PyPublisher = PyHandle<mesh::Publisher>;
using PyService = PyHandle<mesh::ServiceRegistration>;

// A subscription keeps its counters and pattern after unsubscribe().
struct PySubscription : PyHandle<mesh::Subscription> {
  void Unsubscribe() {
    owner->alive = false;
    if (!handle) return;
    if (InNodeCallback()) {
      handle->Unsubscribe();  // allowed from inside its own handler; waits for no one else's
      return;
    }
    mesh::Subscription& s = *handle;
    ReleasedGil nogil;
    s.Unsubscribe();
  }
};

struct PyPublishResult {
  size_t delivered;
  py::list not_reached;
};

template <typename T>
py::object NewHandle(T** raw) {
  *raw = new T;
  return py::cast(*raw, py::return_value_policy::take_ownership);
}

void AttachCallback(py::object& obj, CallbackOwner& owner, const char* attr, const py::object& callback) {
  obj.attr(attr) = callback;
  owner.self = obj.ptr();
  owner.alive = true;
}

}  // namespace

void BindTopics(py::module_& m, py::class_<PyNode>& node_class) {
  py::class_<PyPublishResult>(m, "PublishResult", "What Publisher.publish did.")
      .def_readonly("delivered", &PyPublishResult::delivered, "How many subscriber nodes got the message.")
      .def_readonly("not_reached", &PyPublishResult::not_reached,
                    "[(node name, shmesh.Error)] for the subscribers that did not.");

  py::class_<PyPublisher>(m, "Publisher", py::dynamic_attr(), "A publisher of one topic (Node.advertise).")
      .def_property_readonly(
          "topic", [](PyPublisher& self) { return self.get("Publisher").topic(); }, "The topic name.")
      .def(
          "publish",
          [](PyPublisher& self, const py::handle& data, const py::object& timeout) {
            mesh::Publisher& p = self.get("Publisher");
            BytesArg payload(data);
            const absl::Time deadline = DeadlineFrom(timeout);
            absl::StatusOr<mesh::PublishResult> r;
            if (deadline == absl::InfinitePast()) {
              r = p.Publish(payload.view(), deadline);
            } else {
              ReleasedGil nogil;
              r = p.Publish(payload.view(), deadline);
            }
            mesh::PublishResult res = ValueOrThrow(std::move(r));
            return PyPublishResult{res.delivered, NotReachedList(res.not_reached)};
          },
          py::arg("data"), py::arg("timeout") = py::none(),
          "Sends data to every node subscribed to the topic; a full subscriber is waited for up\n"
          "to `timeout` seconds (None: forever; GIL released). Returns a PublishResult (OK with\n"
          "nobody subscribed). Raises FailedPreconditionError if the node is not running,\n"
          "InvalidArgumentError if too large, or the first subscriber's error if none was reached.")
      .def_property_readonly(
          "matched", [](PyPublisher& self) { return self.get("Publisher").matched(); },
          "The number of linked nodes subscribed to this topic.")
      .def(
          "subscribers", [](PyPublisher& self) { return self.get("Publisher").subscribers(); },
          "Names of the linked nodes subscribed to this topic, sorted.")
      .def(
          "wait_for_subscribers",
          [](PyPublisher& self, size_t n, const py::object& timeout) {
            mesh::Publisher& p = self.get("Publisher");
            ThrowIfError(
                WaitReleasingGil(DeadlineFrom(timeout), [&](absl::Time d) { return p.WaitForSubscribers(n, d); }));
          },
          py::arg("n"), py::arg("timeout") = py::none(),
          "Waits (GIL released) until at least n subscribers match; DeadlineExceededError otherwise.")
      .def_property_readonly(
          "published_messages", [](PyPublisher& self) { return self.get("Publisher").published_messages(); },
          "Messages published so far.")
      .def_property_readonly(
          "published_bytes", [](PyPublisher& self) { return self.get("Publisher").published_bytes(); },
          "Payload bytes published so far.")
      .def(
          "close", [](PyPublisher& self) { self.Close(); }, "Stops publishing (the object becomes unusable).");

  py::class_<PySubscription>(m, "Subscription", py::dynamic_attr(), "A subscription to a topic pattern.")
      .def_property_readonly(
          "pattern", [](PySubscription& self) { return self.get("Subscription").pattern(); }, "The pattern.")
      .def(
          "receive",
          [](PySubscription& self, const py::object& timeout) {
            mesh::Subscription& s = self.get("Subscription");
            absl::StatusOr<mesh::Message> m = absl::DeadlineExceededError("");
            const absl::Time deadline = DeadlineFrom(timeout);
            if (deadline == absl::InfinitePast()) {
              m = s.Receive(deadline);
            } else {
              ThrowIfError(WaitReleasingGil(deadline, [&](absl::Time d) {
                m = s.Receive(d);
                return m.status();
              }));
            }
            mesh::Message msg = ValueOrThrow(std::move(m));
            return OwnedMessage(std::move(msg.from), std::move(msg.topic), msg.shared ? msg.CopyData() : std::move(msg.payload));
          },
          py::arg("timeout") = py::none(),
          "Pull form: the next message (payload bytes, topic, from_), waiting up to `timeout`\n"
          "seconds (GIL released). DeadlineExceededError if none came; FailedPreconditionError\n"
          "for a subscription with a callback; CancelledError once the node stopped.")
      .def(
          "_try_receive",
          [](PySubscription& self) -> py::object {
            absl::StatusOr<mesh::Message> m = self.get("Subscription").Receive(absl::InfinitePast());
            if (m.status().code() == absl::StatusCode::kDeadlineExceeded) return py::none();
            mesh::Message msg = ValueOrThrow(std::move(m));
            return OwnedMessage(std::move(msg.from), std::move(msg.topic), msg.shared ? msg.CopyData() : std::move(msg.payload));
          },
          "A queued message, or None at once.")
      .def(
          "ready_fd", [](PySubscription& self) { return self.get("Subscription").ready_fd(); },
          "Pull form: a descriptor (borrowed) readable while a message is queued; -1 with a callback.")
      .def_property_readonly(
          "received", [](PySubscription& self) { return self.get("Subscription").received(); },
          "Messages delivered to this subscription so far.")
      .def(
          "unsubscribe", [](PySubscription& self) { self.Unsubscribe(); },
          "Unsubscribes now: no message is delivered once this returns (waits, GIL released, for\n"
          "a callback in progress unless called from inside it). Idempotent.");

  py::class_<PyService>(m, "Service", py::dynamic_attr(), "A service this node serves (Node.serve).")
      .def_property_readonly(
          "service", [](PyService& self) { return self.get("Service").service(); }, "The service name.")
      .def_property_readonly(
          "handled", [](PyService& self) { return self.get("Service").handled(); },
          "Requests answered so far (with a response or an error).")
      .def(
          "close", [](PyService& self) { self.Close(); },
          "Stops serving: once this returns the handler is not running and is never called again.");

  node_class
      .def(
          "_advertise",
          [](PyNode& self, const std::string& topic, size_t history, bool best_effort, const py::object& on_matched,
             bool shared_ring) {
            mesh::Node& n = self.get();
            PyPublisher* raw = nullptr;
            py::object obj = NewHandle(&raw);
            mesh::PublisherOptions options;
            options.history = history;
            options.shared_ring = shared_ring;
            options.reliability = best_effort ? mesh::PublisherOptions::Reliability::kBestEffort
                                              : mesh::PublisherOptions::Reliability::kReliable;
            if (!on_matched.is_none()) {
              AttachCallback(obj, *raw->owner, "_cb_matched", on_matched);
              std::shared_ptr<CallbackOwner> owner = raw->owner;
              options.on_matched = [owner](size_t matched) {
                RunCallback(owner, "_cb_matched", [&](py::object& cb) { cb(matched); });
              };
            }
            absl::StatusOr<std::unique_ptr<mesh::Publisher>> p;
            {
              ReleasedGil nogil;
              p = n.Advertise(topic, std::move(options));
            }
            raw->handle = ValueOrThrow(std::move(p));
            return obj;
          },
          py::arg("topic"), py::arg("history") = 0, py::arg("best_effort") = false,
          py::arg("on_matched") = py::none(), py::arg("shared_ring") = false)
      .def(
          "_subscribe",
          [](PyNode& self, const std::string& pattern, const py::object& callback, size_t queue_depth) {
            mesh::Node& n = self.get();
            PySubscription* raw = nullptr;
            py::object obj = NewHandle(&raw);
            mesh::SubscribeOptions options;
            options.queue_depth = queue_depth;
            absl::StatusOr<std::unique_ptr<mesh::Subscription>> s;
            if (callback.is_none()) {
              ReleasedGil nogil;
              s = n.Subscribe(pattern, options);
            } else {
              AttachCallback(obj, *raw->owner, "_cb_message", callback);
              std::shared_ptr<CallbackOwner> owner = raw->owner;
              auto handler = [owner](const mesh::MessageView& m) {
                RunCallback(owner, "_cb_message",
                            [&](py::object& cb) { CallWithBorrowedMessage(cb, m.from, m.topic, m.payload); });
              };
              ReleasedGil nogil;
              s = n.Subscribe(pattern, handler, options);
            }
            raw->handle = ValueOrThrow(std::move(s));
            return obj;
          },
          py::arg("pattern"), py::arg("callback") = py::none(), py::arg("queue_depth") = 1024)
      .def(
          "_serve",
          [](PyNode& self, const std::string& service, const py::object& handler) {
            mesh::Node& n = self.get();
            PyService* raw = nullptr;
            py::object obj = NewHandle(&raw);
            AttachCallback(obj, *raw->owner, "_cb_handler", handler);
            std::shared_ptr<CallbackOwner> owner = raw->owner;
            mesh::ServiceHandler h = [owner](const mesh::RequestView& r) -> absl::StatusOr<std::string> {
              absl::StatusOr<std::string> result =
                  absl::InternalError("the Python service handler raised an exception (reported on the server)");
              bool ran = RunCallback(owner, "_cb_handler", [&](py::object& cb) {
                py::object out;
                try {
                  out = cb(py::bytes(r.payload.data(), r.payload.size()));
                } catch (py::error_already_set& e) {
                  absl::Status status = StatusFromPythonError(e);
                  if (status.ok()) throw;  // not a shmesh.Error: reported as unraisable
                  result = status;
                  return;
                }
                if (out.is_none()) {
                  result = std::string();
                } else {
                  BytesArg bytes(out);
                  result = std::string(bytes.view());
                }
              });
              if (!ran && result.ok()) result = absl::UnavailableError("service closed");
              return result;
            };
            absl::StatusOr<std::unique_ptr<mesh::ServiceRegistration>> reg;
            {
              ReleasedGil nogil;
              reg = n.Serve(service, std::move(h));
            }
            raw->handle = ValueOrThrow(std::move(reg));
            return obj;
          },
          py::arg("service"), py::arg("handler"))
      .def(
          "call",
          [](PyNode& self, const std::string& service, const py::handle& request, const py::object& timeout,
             const py::object& server) {
            mesh::Node& n = self.get();
            BytesArg req(request);
            mesh::CallOptions options;
            if (!server.is_none()) options.server = server.cast<std::string>();
            const absl::Time deadline = DeadlineFrom(timeout);
            absl::StatusOr<std::string> r;
            {
              ReleasedGil nogil;
              r = n.Call(service, req.view(), deadline, options);
            }
            return py::bytes(ValueOrThrow(std::move(r)));
          },
          py::arg("service"), py::arg("request"), py::arg("timeout") = py::none(), py::arg("server") = py::none(),
          "Calls `service` on a linked node that serves it (round-robin, or `server`) and returns\n"
          "the response bytes, waiting up to `timeout` seconds (None: forever) with the GIL\n"
          "released. Raises NotFoundError (nobody serves it), DeadlineExceededError,\n"
          "UnavailableError (the server went away), or the handler's own error. Do not call from\n"
          "a callback or service handler (their thread delivers the response).")
      .def(
          "servers", [](PyNode& self, const std::string& service) { return self.get().Servers(service); },
          py::arg("service"), "The linked nodes that serve `service`, sorted.");
}

}  // namespace shmesh_py
