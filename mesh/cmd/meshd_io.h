// meshd's input and output: timestamped log lines on stderr, whole-line
// writes, and the lines read from stdin turned into sends (or, with
// --publish, publications). Part of the meshd binary.
//
// Thread contract: Log is thread-safe (immutable after construction; each
// line is one write(2)). StdinSender is thread-compatible: meshd's main
// thread feeds it.
#ifndef SHMESH_MESH_CMD_MESHD_IO_H_
#define SHMESH_MESH_CMD_MESHD_IO_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "mesh/node.h"
#include "mesh/v1/config.pb.h"

namespace mesh {
namespace cmd {

// `s` with every newline replaced by "; ": one log line per event.
std::string OneLine(absl::string_view s);

// Writes all of `s` to `fd` (borrowed), retrying short writes and EINTR;
// gives up silently on other errors (a closed stderr or stdout).
void WriteAll(int fd, absl::string_view s);

// Timestamped log lines on stderr, one write(2) each:
//   2026-11-22T18:03:01.123Z meshd[a] INFO started: ...
class Log {
 public:
  Log(std::string name, mesh::v1::LogLevel level);

  bool Enabled(mesh::v1::LogLevel level) const { return level >= level_; }
  void Write(mesh::v1::LogLevel level, absl::string_view message) const;
  void Debug(absl::string_view m) const { Write(mesh::v1::DEBUG, m); }
  void Info(absl::string_view m) const { Write(mesh::v1::INFO, m); }
  void Warning(absl::string_view m) const { Write(mesh::v1::WARNING, m); }
  void Error(absl::string_view m) const { Write(mesh::v1::ERROR, m); }

 private:
  const std::string name_;
  const mesh::v1::LogLevel level_;
};

// Sends the lines read from stdin (see --stdin): "@peer text" to one peer,
// anything else broadcast; with a publisher, publishes every line instead.
// Failures are logged, not fatal.
class StdinSender {
 public:
  // `node`, `publisher` (may be null) and `log` are borrowed and must
  // outlive this. Lines over `max_line` bytes are dropped (logged). Each
  // send or publish waits at most `send_timeout` for ring space.
  StdinSender(mesh::Node* node, mesh::Publisher* publisher, const Log* log,
              size_t max_line, absl::Duration send_timeout)
      : node_(node),
        publisher_(publisher),
        log_(log),
        max_line_(max_line),
        send_timeout_(send_timeout) {}

  // Feeds bytes read from stdin; sends every complete line.
  void Feed(absl::string_view data);
  // End of input: sends a last line that had no newline.
  void Finish();

 private:
  void SendLine(absl::string_view line);
  void Publish(absl::string_view line);

  mesh::Node* const node_;
  mesh::Publisher* const publisher_;
  const Log* const log_;
  const size_t max_line_;
  const absl::Duration send_timeout_;
  std::string pending_;
  bool discarding_ = false;
};

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_MESHD_IO_H_
