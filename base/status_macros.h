// The one shared pair of status macros for shmesh. Debian's Abseil
// (20220623) ships none, and every layer (fdpass, ringbuf, mesh, tools)
// propagates absl::Status the same way, so they live here, at the bottom.
#ifndef SHMESH_BASE_STATUS_MACROS_H_
#define SHMESH_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define SHMESH_STATUS_CONCAT_INNER_(a, b) a##b
#define SHMESH_STATUS_CONCAT_(a, b) SHMESH_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) once and returns it from the enclosing
// function if it is not OK.
#define SHMESH_RETURN_IF_ERROR(expr)                       \
  do {                                                     \
    ::absl::Status shmesh_status_ = (expr);                \
    if (!shmesh_status_.ok()) return shmesh_status_;       \
  } while (false)

// `lhs` is a declaration or an lvalue; `expr` an absl::StatusOr<T>. Returns
// the status from the enclosing function if it is an error, else moves the
// value into `lhs`.
#define SHMESH_ASSIGN_OR_RETURN(lhs, expr) \
  SHMESH_ASSIGN_OR_RETURN_IMPL_(           \
      SHMESH_STATUS_CONCAT_(shmesh_statusor_, __LINE__), lhs, expr)

#define SHMESH_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // SHMESH_BASE_STATUS_MACROS_H_
