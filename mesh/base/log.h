// Logger: one timestamped line per event on stderr, filtered by the node's
// configured level. Lines look like
//   2026-11-22T18:03:01.123Z shmesh[a] INFO link up: b (pid 4242)
// Thread contract: thread-safe (each line is one write(2) to stderr).
#ifndef SHMESH_MESH_BASE_LOG_H_
#define SHMESH_MESH_BASE_LOG_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mesh/v1/config.pb.h"

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

// Keeps a kind of log line that outsiders can provoke (refused
// connections, failed handshakes) from flooding the log: at most one line
// per `interval`, and the next line says how many were left out.
// Thread contract: thread-compatible (one thread, or the caller's lock).
class LogLimiter {
 public:
  explicit LogLimiter(absl::Duration interval) : interval_(interval) {}

  // True if a line may be written at `now`; then `*left_out` is how many
  // were held back since the last written line (and that count restarts).
  // False (and the event counted) otherwise.
  bool Allow(absl::Time now, uint64_t* left_out) {
    if (now - last_ < interval_) {
      ++held_back_;
      return false;
    }
    last_ = now;
    *left_out = held_back_;
    held_back_ = 0;
    return true;
  }

  // " (N more <what> since the last such line)", or "" for N == 0.
  static std::string LeftOut(uint64_t n, absl::string_view what = "");

 private:
  const absl::Duration interval_;
  absl::Time last_ = absl::InfinitePast();
  uint64_t held_back_ = 0;
};

}  // namespace mesh

#endif  // SHMESH_MESH_BASE_LOG_H_
