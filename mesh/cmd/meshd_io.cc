#include "mesh/cmd/meshd_io.h"

#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"

namespace mesh {
namespace cmd {

std::string OneLine(absl::string_view s) {
  return absl::StrReplaceAll(s, {{"\n", "; "}});
}

void WriteAll(int fd, absl::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
}

Log::Log(std::string name, mesh::v1::LogLevel level)
    : name_(std::move(name)), level_(level) {}

void Log::Write(mesh::v1::LogLevel level, absl::string_view message) const {
  if (!Enabled(level)) return;
  WriteAll(STDERR_FILENO,
           absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                         absl::UTCTimeZone()),
                        " meshd[", name_, "] ", mesh::v1::LogLevel_Name(level),
                        " ", OneLine(message), "\n"));
}

void StdinSender::Feed(absl::string_view data) {
  while (!data.empty()) {
    const size_t nl = data.find('\n');
    const absl::string_view part = data.substr(0, nl);
    if (!discarding_) {
      pending_.append(part.data(), part.size());
      if (pending_.size() > max_line_) {
        log_->Warning(absl::StrCat("stdin: dropping a line longer than ",
                                   max_line_,
                                   " bytes (more than max_message_bytes)"));
        pending_.clear();
        discarding_ = true;
      }
    }
    if (nl == absl::string_view::npos) return;
    if (!discarding_) SendLine(pending_);
    pending_.clear();
    discarding_ = false;
    data.remove_prefix(nl + 1);
  }
}

void StdinSender::Finish() {
  if (!discarding_ && !pending_.empty()) SendLine(pending_);
  pending_.clear();
  discarding_ = false;
}


void StdinSender::SendLine(absl::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) return;
  if (publisher_ != nullptr) {
    Publish(line);
    return;
  }
  std::string peer = "*";
  absl::string_view text = line;
  if (line[0] == '@') {
    const size_t space = line.find(' ');
    if (space == absl::string_view::npos || space == 1) {
      log_->Warning(absl::StrCat("stdin: \"", absl::CHexEscape(line),
                                 "\" has no text; write \"@peer text\""));
      return;
    }
    peer = std::string(line.substr(1, space - 1));
    text = line.substr(space + 1);
  }
  const absl::Time deadline = absl::Now() + send_timeout_;
  if (peer == "*") {
    absl::StatusOr<mesh::BroadcastResult> sent =
        node_->Broadcast(text, deadline);
    if (!sent.ok()) {
      log_->Warning(
          absl::StrCat("broadcast failed: ",
                       absl::StatusCodeToString(sent.status().code()), ": ",
                       sent.status().message()));
      return;
    }
    if (sent->delivered.empty() && sent->not_reached.empty()) {
      log_->Warning("broadcast reached no peers (none linked yet)");
      return;
    }
    log_->Debug(absl::StrCat("broadcast ", text.size(), " bytes to ",
                             absl::StrJoin(sent->delivered, ", ")));
    for (const auto& [peer, why] : sent->not_reached) {
      log_->Warning(absl::StrCat("broadcast did not reach ", peer, ": ",
                                 why.message()));
    }
    return;
  }
  const absl::Status status = node_->Send(peer, text, deadline);
  if (!status.ok()) {
    log_->Warning(absl::StrCat("send to ", peer, " failed: ",
                               absl::StatusCodeToString(status.code()), ": ",
                               status.message()));
  } else {
    log_->Debug(absl::StrCat("sent ", text.size(), " bytes to ", peer));
  }
}

void StdinSender::Publish(absl::string_view line) {
  absl::StatusOr<mesh::PublishResult> sent =
      publisher_->Publish(line, absl::Now() + send_timeout_);
  if (!sent.ok()) {
    log_->Warning(absl::StrCat(
        "publish to ", publisher_->topic(), " failed: ",
        absl::StatusCodeToString(sent.status().code()), ": ",
        sent.status().message()));
    return;
  }
  // Nobody subscribed is normal (with --history the line is kept for
  // whoever comes): not worth a warning.
  log_->Debug(absl::StrCat("published ", line.size(), " bytes to ",
                           publisher_->topic(), ": ",
                           sent->delivered == 0
                               ? std::string("no subscriber yet")
                               : absl::StrCat(sent->delivered, " subscriber(s)")));
  for (const auto& [peer, why] : sent->not_reached) {
    log_->Warning(absl::StrCat("publish to ", publisher_->topic(),
                               " did not reach ", peer, ": ",
                               why.message()));
  }
}

}  // namespace cmd
}  // namespace mesh
