// The glue every part of the shmesh Python extension (_shmesh.so) shares:
// absl::Status -> Python exceptions, timeouts -> deadlines, bytes-like
// arguments, the GIL rules for the node's threads, and the zero-copy payload
// memoryview handed to callbacks.
//
// GIL rules (see python/README.md):
//  - A Python thread calling a blocking mesh method releases the GIL around
//    it (WaitReleasingGil, ReleasedGil; never py::gil_scoped_release, see
//    ReleasedGil).
//  - The node's threads (receive, events) run Python callbacks through
//    RunCallback, which takes the GIL with a thread state kept for the
//    thread's life, and never while the interpreter is finalizing.
//  - A callback is never owned by a C++ closure: the closure holds a
//    CallbackOwner (a borrowed pointer to the Python object that stores the
//    callback as an attribute, so the garbage collector sees the reference
//    and can collect cycles through it) and looks the callback up under the
//    GIL at each call. The owner's destructor clears `alive` (under the GIL)
//    before it stops the mesh object (without the GIL).
//
// Thread contract: everything here requires the GIL unless it says otherwise.
#ifndef SHMESH_PYTHON_PY_SUPPORT_H_
#define SHMESH_PYTHON_PY_SUPPORT_H_

#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace shmesh_py {

namespace py = pybind11;

// Releases the GIL for its lifetime, as py::gil_scoped_release does, and
// takes it back on destruction, except in a thread that would take it back
// while the interpreter exits: that one waits forever (it ends with the
// process), as Python 3.14 does for daemon threads. Python 3.11 ends such a
// thread with pthread_exit inside PyEval_RestoreThread instead, and the
// forced unwinding that follows either crossed py::gil_scoped_release's
// noexcept destructor (std::terminate: the whole process aborted at exit,
// "terminate called without an active exception") or ran pybind11
// destructors without the GIL (a fatal error). "Exits": from shmesh's
// atexit handler on (MarkInterpreterExiting, before it stops the nodes, so
// that the threads the stop wakes never wait for the GIL), or once the
// interpreter is finalizing; the thread that marked it is never held.
class ReleasedGil {
 public:
  ReleasedGil() : state_(PyEval_SaveThread()) {}
  // noexcept(false): should a thread still be ended in PyEval_RestoreThread
  // (it was already waiting for the GIL when the exit began), its forced
  // unwinding passes on to pybind11, which lets it end the thread.
  ~ReleasedGil() noexcept(false);
  ReleasedGil(const ReleasedGil&) = delete;
  ReleasedGil& operator=(const ReleasedGil&) = delete;

 private:
  PyThreadState* const state_;
};

// Called (with the GIL) by shmesh's atexit handler before it stops the
// nodes: from then on, threads other than this one that would take the GIL
// back through ReleasedGil wait forever instead. (At atexit only daemon
// threads are left: Python joined the others first.)
void MarkInterpreterExiting();

// A failed absl::Status on its way to Python: the registered translator
// turns it into the shmesh.Error subclass for its code.
class StatusException : public std::exception {
 public:
  explicit StatusException(absl::Status status) : status_(std::move(status)) {}
  const char* what() const noexcept override { return "shmesh status error"; }
  const absl::Status& status() const { return status_; }

 private:
  absl::Status status_;
};

// Throws StatusException unless `status` is OK.
void ThrowIfError(const absl::Status& status);
template <typename T>
T ValueOrThrow(absl::StatusOr<T> v) {
  ThrowIfError(v.status());
  return std::move(*v);
}

// The Python exception object (a shmesh.Error subclass instance) for a
// failed status, without raising it; RuntimeError if the Python layer did
// not register its factory (shmesh/__init__.py does).
py::object ErrorObject(const absl::Status& status);
// Registers the translator; `factory(code, message)` builds the exception
// and `base` is shmesh.Error (what a service handler may raise).
void RegisterErrors(py::module_& m);
// If the Python exception in `e` is a shmesh.Error, its status (its code
// and message); otherwise std::nullopt-like: an OK status.
absl::Status StatusFromPythonError(py::error_already_set& e);

// A timeout in seconds (None: wait forever; 0 or less: do not wait) as a
// deadline.
absl::Time DeadlineFrom(const py::object& timeout);

// Calls `step(chunk_deadline)` with the GIL released, in chunks of at most
// 100 ms up to `deadline`, checking for signals (KeyboardInterrupt) between
// chunks with the GIL held. Stops at the first result that is not
// DEADLINE_EXCEEDED, or at `deadline`. `step` must not touch Python.
absl::Status WaitReleasingGil(absl::Time deadline, const std::function<absl::Status(absl::Time)>& step);

// A bytes-like argument (bytes, bytearray, memoryview, anything with a
// contiguous buffer; str is encoded as UTF-8), held for the duration of a
// call: its view stays valid while the GIL is released.
class BytesArg {
 public:
  explicit BytesArg(const py::handle& obj);
  BytesArg(BytesArg&& other) noexcept;
  BytesArg(const BytesArg&) = delete;
  BytesArg& operator=(const BytesArg&) = delete;
  ~BytesArg();
  absl::string_view view() const { return view_; }

 private:
  Py_buffer buffer_{};
  bool has_buffer_ = false;
  py::object keep_;  // the str whose UTF-8 form view_ points into
  absl::string_view view_;
};

// Shared by a Python object (a Node, Subscription, Publisher, Service) and
// the C++ closures the mesh calls on its threads. `self` is borrowed: it is
// valid while `alive` is true; both are read and written with the GIL held.
struct CallbackOwner {
  PyObject* self = nullptr;
  bool alive = false;
};

// True on a thread of the mesh while it runs a Python callback (used to
// refuse, or defer, destroying a Node from inside its own handler).
bool InNodeCallback();

// Runs `fn(callback)` on a mesh thread with the GIL, where `callback` is
// attribute `attr` of owner->self, if the owner is alive, the attribute is
// set (not None) and the interpreter is not finalizing. A Python exception
// from it is reported with sys.unraisablehook (traceback printed by
// default) and swallowed: the node keeps going. Returns whether fn ran
// without raising. Callable without the GIL (takes it).
bool RunCallback(const std::shared_ptr<CallbackOwner>& owner, const char* attr,
                 const std::function<void(py::object&)>& fn);

// A message as Python sees it: a pybind11 class `shmesh.Message` with
// from_/sender, topic and payload (a memoryview inside callbacks, bytes
// otherwise).
struct PyMessage {
  py::str from;
  py::str topic;
  py::object payload;
  uintptr_t payload_address = 0;  // where the bytes were (tests: zero copy)
};

// Builds the Message for a callback over a borrowed payload (zero copy),
// calls `callback(message)`, then invalidates the payload memoryview: it is
// released, and any view still exported from it (a slice kept past the
// callback) is reported as an error. Requires the GIL; Python errors
// propagate as py::error_already_set.
void CallWithBorrowedMessage(py::object& callback, absl::string_view from, absl::string_view topic,
                             absl::string_view payload);

// An owned message (from a pull Receive) as a Python Message with bytes.
py::object OwnedMessage(std::string from, std::string topic, std::string payload);

// Converts a list of (name, status) to [(name, shmesh.Error), ...].
py::list NotReachedList(const std::vector<std::pair<std::string, absl::Status>>& not_reached);

// Registers Message and the payload buffer type.
void BindMessage(py::module_& m);

}  // namespace shmesh_py

#endif  // SHMESH_PYTHON_PY_SUPPORT_H_
