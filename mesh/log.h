// Logger: one timestamped line per event on stderr, filtered by the node's
// configured level. Lines look like
//   2026-11-22T18:03:01.123Z shmesh[a] INFO link up: b (pid 4242)
// Thread contract: thread-safe (each line is one write(2) to stderr).
#ifndef SHMESH_MESH_LOG_H_
#define SHMESH_MESH_LOG_H_

#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "proto/mesh/v1/config.pb.h"

namespace mesh {

class Logger {
 public:
  Logger(std::string node_name, mesh::v1::LogLevel level)
      : node_name_(std::move(node_name)), level_(level) {}

  bool Enabled(mesh::v1::LogLevel level) const { return level >= level_; }
  void Log(mesh::v1::LogLevel level, absl::string_view message) const;

  template <typename... Args>
  void Debug(const absl::FormatSpec<Args...>& f, const Args&... args) const {
    if (Enabled(mesh::v1::DEBUG)) Log(mesh::v1::DEBUG, absl::StrFormat(f, args...));
  }
  template <typename... Args>
  void Info(const absl::FormatSpec<Args...>& f, const Args&... args) const {
    if (Enabled(mesh::v1::INFO)) Log(mesh::v1::INFO, absl::StrFormat(f, args...));
  }
  template <typename... Args>
  void Warning(const absl::FormatSpec<Args...>& f, const Args&... args) const {
    if (Enabled(mesh::v1::WARNING)) Log(mesh::v1::WARNING, absl::StrFormat(f, args...));
  }
  template <typename... Args>
  void Error(const absl::FormatSpec<Args...>& f, const Args&... args) const {
    if (Enabled(mesh::v1::ERROR)) Log(mesh::v1::ERROR, absl::StrFormat(f, args...));
  }

 private:
  const std::string node_name_;
  const mesh::v1::LogLevel level_;
};

}  // namespace mesh

#endif  // SHMESH_MESH_LOG_H_
