#include "mesh/cmd/meshd_topics.h"

#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "mesh/cmd/topics_format.h"

namespace mesh {
namespace cmd {
namespace {

// One write(2) per line, as meshd's other output, so that a reader of a
// pipe (up to PIPE_BUF bytes) never sees half a line.
void WriteLine(const std::string& line) {
  absl::string_view s = line;
  while (!s.empty()) {
    const ssize_t n = ::write(STDOUT_FILENO, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // stdout closed: nothing to do about it here.
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
}

absl::Status Named(absl::string_view what, absl::string_view name,
                   const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(what, " \"", absl::CHexEscape(name),
                                   "\": ", status.message()));
}

}  // namespace

std::string UpperCaseReply(absl::string_view request) {
  return absl::AsciiStrToUpper(request);
}

absl::StatusOr<MeshdTopics> SetUpTopics(
    mesh::Node& node, const MeshdTopicFlags& flags,
    std::function<void(absl::string_view service, absl::string_view from)>
        log_request) {
  MeshdTopics out;
  for (const std::string& pattern : flags.subscribe) {
    absl::StatusOr<std::unique_ptr<mesh::Subscription>> sub =
        node.Subscribe(pattern, [](const mesh::MessageView& m) {
          WriteLine(TopicMessageLine(m.topic, m.from, m.payload));
        });
    if (!sub.ok()) return Named("--subscribe pattern", pattern, sub.status());
    out.subscriptions.push_back(std::move(*sub));
  }
  if (!flags.publish.empty()) {
    mesh::PublisherOptions options;
    options.history = flags.history;
    options.shared_ring = flags.shared_ring;
    absl::StatusOr<std::unique_ptr<mesh::Publisher>> pub =
        node.Advertise(flags.publish, options);
    if (!pub.ok()) return Named("--publish topic", flags.publish, pub.status());
    out.publisher = std::move(*pub);
  }
  for (const std::string& service : flags.serve) {
    absl::StatusOr<std::unique_ptr<mesh::ServiceRegistration>> registration =
        node.Serve(service, [log_request](const mesh::RequestView& r)
                                -> absl::StatusOr<std::string> {
          log_request(r.service, r.from);
          return UpperCaseReply(r.payload);
        });
    if (!registration.ok()) {
      return Named("--serve service", service, registration.status());
    }
    out.services.push_back(std::move(*registration));
  }
  return out;
}

}  // namespace cmd
}  // namespace mesh
