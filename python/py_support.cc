#include "python/py_support.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <thread>

namespace shmesh_py {

namespace {

// Set once by shmesh/__init__.py (shmesh._shmesh._set_error_types), never
// freed: exceptions can be translated until the process exits.
PyObject* g_error_factory = nullptr;  // factory(code, message) -> exception
// The class factory(code, "") makes for each code 0..16, for the
// translator: it sets the error as (class, (message, code)), which Python
// instantiates later, in the caller's frame, not inside C++ frames.
PyObject* g_error_classes[17] = {};
PyObject* g_error_base = nullptr;     // shmesh.Error

bool Finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

// MarkInterpreterExiting: set once, by the thread running shmesh's atexit
// handler. Release store after the thread id, acquire load before reading
// it: a thread that sees the flag sees which thread set it.
std::atomic<bool> g_exiting{false};
std::atomic<std::thread::id> g_exiting_thread{};

[[noreturn]] void WaitForever() {
  for (;;) ::pause();
}

// This thread's Python thread state, created on its first callback and kept
// for the thread's life (creating one per message costs microseconds); the
// interpreter frees it at exit.
thread_local PyThreadState* t_state = nullptr;
thread_local int t_callback_depth = 0;

// Holds the GIL on a mesh thread (no Python thread state of its own).
class MeshThreadGil {
 public:
  MeshThreadGil() {
    if (t_state == nullptr) {
      (void)PyGILState_Ensure();  // never released: the state stays for the thread
      t_state = PyThreadState_Get();
    } else {
      PyEval_RestoreThread(t_state);
    }
    ++t_callback_depth;
  }
  ~MeshThreadGil() {
    --t_callback_depth;
    (void)PyEval_SaveThread();
  }
  MeshThreadGil(const MeshThreadGil&) = delete;
  MeshThreadGil& operator=(const MeshThreadGil&) = delete;
};

// ---- the payload buffer: a read-only buffer over borrowed memory that can
// be invalidated. Raw C API, because it needs bf_releasebuffer to count the
// views still exported.
struct PayloadBuffer {
  PyObject_HEAD
  const char* data;
  Py_ssize_t size;
  Py_ssize_t exports;
  int valid;
};

int PayloadGetBuffer(PyObject* self, Py_buffer* view, int flags) {
  auto* pb = reinterpret_cast<PayloadBuffer*>(self);
  if (!pb->valid) {
    PyErr_SetString(PyExc_ValueError,
                    "shmesh: a message payload is valid only inside its callback "
                    "(copy it there: bytes(msg.payload) or msg.copy())");
    view->obj = nullptr;
    return -1;
  }
  if (PyBuffer_FillInfo(view, self, const_cast<char*>(pb->data), pb->size, /*readonly=*/1, flags) < 0) {
    return -1;
  }
  ++pb->exports;
  return 0;
}

void PayloadReleaseBuffer(PyObject* self, Py_buffer*) { --reinterpret_cast<PayloadBuffer*>(self)->exports; }

PyType_Slot g_payload_slots[] = {
    {Py_bf_getbuffer, reinterpret_cast<void*>(&PayloadGetBuffer)},
    {Py_bf_releasebuffer, reinterpret_cast<void*>(&PayloadReleaseBuffer)},
    {Py_tp_doc, const_cast<char*>("Borrowed message bytes in shared memory (valid inside a callback only).")},
    {0, nullptr},
};
PyType_Spec g_payload_spec = {"shmesh._shmesh.PayloadBuffer", sizeof(PayloadBuffer), 0, Py_TPFLAGS_DEFAULT,
                              g_payload_slots};
PyTypeObject* g_payload_type = nullptr;  // created in BindMessage, never freed

py::object ToBytes(const py::object& o) {
  PyObject* b = PyBytes_FromObject(o.ptr());
  if (b == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(b);
}

}  // namespace

void ThrowIfError(const absl::Status& status) {
  if (!status.ok()) throw StatusException(status);
}

py::object ErrorObject(const absl::Status& status) {
  if (g_error_factory == nullptr) {
    return py::reinterpret_steal<py::object>(
        PyObject_CallFunction(PyExc_RuntimeError, "s", status.ToString().c_str()));
  }
  return py::reinterpret_borrow<py::object>(g_error_factory)(static_cast<int>(status.code()),
                                                             std::string(status.message()));
}

void MarkInterpreterExiting() {
  // relaxed: published by the release store below.
  g_exiting_thread.store(std::this_thread::get_id(), std::memory_order_relaxed);
  g_exiting.store(true, std::memory_order_release);
}

ReleasedGil::~ReleasedGil() noexcept(false) {
  // acquire: pairs with the release store in MarkInterpreterExiting.
  const bool exiting = g_exiting.load(std::memory_order_acquire);
  // relaxed: ordered by the acquire load above.
  if ((exiting || Finalizing()) && g_exiting_thread.load(std::memory_order_relaxed) != std::this_thread::get_id()) {
    WaitForever();
  }
  PyEval_RestoreThread(state_);
}

void RegisterErrors(py::module_& m) {
  m.def(
      "_mark_exiting", [] { MarkInterpreterExiting(); },
      "Internal: called by shmesh's atexit handler before it stops every node; from then on\n"
      "other threads that would take the GIL back wait forever (they end with the process).");
  m.def(
      "_set_error_types",
      [](py::object base, py::object factory) {
        Py_XDECREF(g_error_base);
        Py_XDECREF(g_error_factory);
        g_error_base = base.release().ptr();
        g_error_factory = factory.release().ptr();
        for (int code = 0; code <= 16; ++code) {
          Py_XDECREF(g_error_classes[code]);
          py::object e = py::reinterpret_borrow<py::object>(g_error_factory)(code, std::string());
          g_error_classes[code] = py::type::of(e).release().ptr();
        }
      },
      "Internal: registers shmesh.Error and the factory (code, message) -> exception.");
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusException& e) {
      // No Python code here (an exception class's __init__ is Python): the
      // error is set as (class, args) and instantiated in the caller's
      // frame. Python code run under these C++ frames could give the GIL
      // away and, at interpreter exit, have the thread ended in the middle
      // of them (see ReleasedGil).
      const int code = static_cast<int>(e.status().code());
      if (g_error_factory == nullptr || code < 0 || code > 16 || g_error_classes[code] == nullptr) {
        py::object exc = ErrorObject(e.status());
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
        return;
      }
      py::tuple args = py::make_tuple(std::string(e.status().message()), code);
      PyErr_SetObject(g_error_classes[code], args.ptr());
    }
  });
}

absl::Status StatusFromPythonError(py::error_already_set& e) {
  if (g_error_base == nullptr || !e.matches(g_error_base)) return absl::OkStatus();
  py::object value = e.value();
  int code = static_cast<int>(absl::StatusCode::kUnknown);
  std::string message;
  try {
    code = py::int_(value.attr("code"));
    message = py::str(value.attr("message"));
  } catch (py::error_already_set&) {
    message = "shmesh.Error without a code";
  }
  if (code <= 0 || code > 16) code = static_cast<int>(absl::StatusCode::kUnknown);
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

absl::Time DeadlineFrom(const py::object& timeout) {
  if (timeout.is_none()) return absl::InfiniteFuture();
  const double s = timeout.cast<double>();
  if (std::isnan(s)) throw py::value_error("timeout must be a number of seconds or None, not NaN");
  if (s <= 0) return absl::InfinitePast();
  if (std::isinf(s)) return absl::InfiniteFuture();
  return absl::Now() + absl::Seconds(s);
}

absl::Status WaitReleasingGil(absl::Time deadline, const std::function<absl::Status(absl::Time)>& step) {
  for (;;) {
    const absl::Time chunk = std::min(deadline, absl::Now() + absl::Milliseconds(100));
    absl::Status status;
    {
      ReleasedGil nogil;
      status = step(chunk);
    }
    if (status.code() != absl::StatusCode::kDeadlineExceeded || chunk >= deadline) return status;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

BytesArg::BytesArg(const py::handle& obj) {
  if (PyUnicode_Check(obj.ptr())) {
    Py_ssize_t size = 0;
    const char* data = PyUnicode_AsUTF8AndSize(obj.ptr(), &size);
    if (data == nullptr) throw py::error_already_set();
    keep_ = py::reinterpret_borrow<py::object>(obj);
    view_ = absl::string_view(data, static_cast<size_t>(size));
    return;
  }
  if (PyObject_GetBuffer(obj.ptr(), &buffer_, PyBUF_SIMPLE) != 0) {
    PyErr_Clear();
    throw py::type_error(std::string("expected a bytes-like object or str, not ") + Py_TYPE(obj.ptr())->tp_name);
  }
  has_buffer_ = true;
  view_ = absl::string_view(static_cast<const char*>(buffer_.buf), static_cast<size_t>(buffer_.len));
}

BytesArg::BytesArg(BytesArg&& other) noexcept
    : buffer_(other.buffer_), has_buffer_(other.has_buffer_), keep_(std::move(other.keep_)), view_(other.view_) {
  other.has_buffer_ = false;
}

BytesArg::~BytesArg() {
  if (has_buffer_) PyBuffer_Release(&buffer_);
}

bool InNodeCallback() { return t_callback_depth > 0; }

bool RunCallback(const std::shared_ptr<CallbackOwner>& owner, const char* attr,
                 const std::function<void(py::object&)>& fn) {
  if (Finalizing()) return false;
  MeshThreadGil gil;
  if (!owner->alive) return false;
  PyObject* raw = PyObject_GetAttrString(owner->self, attr);
  if (raw == nullptr) {
    PyErr_Clear();
    return false;
  }
  py::object callback = py::reinterpret_steal<py::object>(raw);
  if (callback.is_none()) return false;
  try {
    fn(callback);
    return true;
  } catch (py::error_already_set& e) {
    e.discard_as_unraisable(callback);
  } catch (const StatusException& e) {
    PyErr_SetString(PyExc_RuntimeError, e.status().ToString().c_str());
    PyErr_WriteUnraisable(callback.ptr());
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_RuntimeError, e.what());
    PyErr_WriteUnraisable(callback.ptr());
  }
  return false;
}

void CallWithBorrowedMessage(py::object& callback, absl::string_view from, absl::string_view topic,
                             absl::string_view payload) {
  auto* pb = PyObject_New(PayloadBuffer, g_payload_type);
  if (pb == nullptr) throw py::error_already_set();
  pb->data = payload.data();
  pb->size = static_cast<Py_ssize_t>(payload.size());
  pb->exports = 0;
  pb->valid = 1;
  py::object owner = py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(pb));
  py::object view = py::reinterpret_steal<py::object>(PyMemoryView_FromObject(owner.ptr()));
  if (!view) throw py::error_already_set();
  auto* msg = new PyMessage{py::str(from.data(), from.size()), py::str(topic.data(), topic.size()), view,
                            reinterpret_cast<uintptr_t>(payload.data())};
  py::object message = py::cast(msg, py::return_value_policy::take_ownership);
  // Invalidate whatever happens in the callback.
  struct Invalidate {
    py::object& view;
    PayloadBuffer* pb;
    py::object& callback;
    ~Invalidate() {
      // Keep a Python error raised by the callback while releasing.
      PyObject *type, *value, *tb;
      PyErr_Fetch(&type, &value, &tb);
      PyObject* r = PyObject_CallMethod(view.ptr(), "release", nullptr);
      if (r == nullptr) {
        // BufferError: a view exported from the memoryview was kept.
        PyErr_WriteUnraisable(callback.ptr());
      }
      Py_XDECREF(r);
      pb->valid = 0;
      if (pb->exports > 0) {
        PyErr_SetString(PyExc_BufferError,
                        "shmesh: a view of a message payload (a slice of msg.payload?) was kept past the "
                        "callback; it points into shared memory that is reused: copy it instead");
        PyErr_WriteUnraisable(callback.ptr());
      }
      PyErr_Restore(type, value, tb);
    }
  } invalidate{view, pb, callback};
  callback(message);
}

py::object OwnedMessage(std::string from, std::string topic, std::string payload) {
  auto* msg = new PyMessage{py::str(from), py::str(topic), py::bytes(payload), 0};
  return py::cast(msg, py::return_value_policy::take_ownership);
}

py::list NotReachedList(const std::vector<std::pair<std::string, absl::Status>>& not_reached) {
  py::list out;
  for (const auto& [name, status] : not_reached) out.append(py::make_tuple(name, ErrorObject(status)));
  return out;
}

void BindMessage(py::module_& m) {
  g_payload_type = reinterpret_cast<PyTypeObject*>(PyType_FromSpec(&g_payload_spec));
  if (g_payload_type == nullptr) throw py::error_already_set();
  m.add_object("PayloadBuffer", py::handle(reinterpret_cast<PyObject*>(g_payload_type)));

  py::class_<PyMessage>(m, "Message",
                        "A received message: from_ (alias sender), topic ('' for Node.send) and payload.\n\n"
                        "Inside an on_message / subscription callback, payload is a read-only memoryview\n"
                        "of the shared-memory ring (zero copy), released when the callback returns: copy\n"
                        "it there (bytes(msg), msg.copy()) to keep it. From receive(), payload is bytes.")
      .def_readonly("from_", &PyMessage::from, "The sending node's name.")
      .def_readonly("sender", &PyMessage::from, "The sending node's name (same as from_).")
      .def_readonly("topic", &PyMessage::topic, "The topic; '' for a message sent with Node.send.")
      .def_readonly("payload", &PyMessage::payload,
                    "The bytes: a memoryview valid during the callback only, or bytes (receive()).")
      .def_readonly("_payload_address", &PyMessage::payload_address)
      .def(
          "copy",
          [](const PyMessage& self) {
            return new PyMessage{self.from, self.topic, ToBytes(self.payload), 0};
          },
          "An owned copy whose payload is bytes (usable after the callback).")
      .def(
          "__bytes__", [](const PyMessage& self) { return ToBytes(self.payload); },
          "The payload as bytes (a copy).")
      .def("__len__", [](const PyMessage& self) { return py::len(self.payload); })
      .def("__repr__", [](const PyMessage& self) {
        std::string r = "Message(from_=" + std::string(py::repr(self.from));
        if (py::len(self.topic) > 0) r += ", topic=" + std::string(py::repr(self.topic));
        const bool is_bytes = PyBytes_Check(self.payload.ptr());
        r += is_bytes ? ", payload=" + std::string(py::repr(self.payload))
                      : ", payload=<memoryview>";
        return r + ")";
      });
}

}  // namespace shmesh_py
