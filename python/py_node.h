// The Python-side owners of the mesh handles (mesh::Node, Publisher,
// Subscription, ServiceRegistration) in the _shmesh extension, and the
// functions that bind them (shmesh_module.cc: Node; shmesh_topics.cc:
// topics and services).
//
// Each owner is held by its Python object (a pybind11 class with a
// __dict__, where the Python callbacks live: see py_support.h). Its
// destructor runs with the GIL held (Python deallocation): it marks the
// CallbackOwner dead first, so that a mesh thread waiting for the GIL drops
// its callback instead of touching the dying object, then destroys the
// handle with the GIL released (the handle's destructor waits for a
// callback in progress, which may be waiting for the GIL).
//
// Thread contract: as the Python objects: any Python thread; every method
// requires the GIL (and releases it where it blocks).
#ifndef SHMESH_PYTHON_PY_NODE_H_
#define SHMESH_PYTHON_PY_NODE_H_

#include <memory>
#include <string>
#include <thread>

#include "mesh/node.h"
#include "python/py_support.h"

namespace shmesh_py {

// Destroys `handle` with the GIL released (from a mesh thread's callback,
// where that could deadlock or is forbidden, on a new detached thread).
template <typename T>
void DestroyWithoutGil(std::unique_ptr<T>& handle) {
  if (!handle) return;
  if (InNodeCallback()) {
    std::thread([h = std::move(handle)]() mutable { h.reset(); }).detach();
    return;
  }
  ReleasedGil nogil;
  handle.reset();
}

struct PyNode {
  std::unique_ptr<mesh::Node> node;
  std::shared_ptr<CallbackOwner> owner = std::make_shared<CallbackOwner>();
  PyNode() = default;
  PyNode(const PyNode&) = delete;
  PyNode& operator=(const PyNode&) = delete;
  ~PyNode() {
    owner->alive = false;
    DestroyWithoutGil(node);
  }
  mesh::Node& get() {
    if (!node) throw py::value_error("shmesh: this Node was closed");
    return *node;
  }
  // Points the owner at the Python object `self` (idempotent).
  void Adopt(const py::object& self) {
    owner->self = self.ptr();
    owner->alive = true;
  }
};

// Binds Node.advertise/subscribe/serve/call/servers and the Publisher,
// Subscription, Service and PublishResult classes.
void BindTopics(py::module_& m, py::class_<PyNode>& node_class);

}  // namespace shmesh_py

#endif  // SHMESH_PYTHON_PY_NODE_H_
