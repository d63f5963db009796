#include "mesh/cmd/member_commands.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <iostream>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "mesh/cmd/member.h"
#include "mesh/cmd/rate_stats.h"
#include "mesh/cmd/topics_format.h"
#include "mesh/node.h"

namespace mesh {
namespace cmd {
namespace {

std::string CodeName(const absl::Status& status) {
  return absl::StatusCodeToString(status.code());
}

int Fail(absl::string_view message) {
  std::cerr << "meshctl: " << message << "\n";
  return kExitFailed;
}

// A bad name (INVALID_ARGUMENT) is bad usage; anything else a failure.
int BadName(absl::string_view what, absl::string_view name,
            const absl::Status& status) {
  const std::string message =
      absl::StrCat("bad ", what, " \"", absl::CHexEscape(name), "\": ",
                   status.message());
  if (!absl::IsInvalidArgument(status)) return Fail(message);
  std::cerr << "meshctl: " << message
            << "\nRun meshctl --help for the grammar of topic names and "
               "patterns.\n";
  return kExitUsage;
}

// Writes all of `s` to stdout with write(2) (one message, one call, so a
// reader sees whole lines); false once stdout is gone (`| head`).
bool WriteOut(absl::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(STDOUT_FILENO, s.data(), s.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    s.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Makes the member; prints why not and returns false.
std::unique_ptr<Member> MakeMember(const MemberFlags& flags) {
  absl::StatusOr<std::unique_ptr<Member>> member = Member::Create(flags.target);
  if (!member.ok()) {
    Fail(absl::StrCat("cannot create this meshctl's node: ",
                      member.status().message()));
    return nullptr;
  }
  return std::move(*member);
}

// Joins through the target and waits up to --timeout_ms for the links
// (Member::Join). On failure prints why and returns false; a partial join
// is a warning.
bool JoinMesh(Member& member, const MemberFlags& flags,
              const mesh::v1::TopologySnapshot& mesh) {
  std::vector<std::string> missing;
  const absl::Status joined =
      member.Join(mesh, absl::Now() + flags.timeout, &missing);
  if (absl::IsCancelled(joined)) return false;
  if (absl::IsDeadlineExceeded(joined)) {
    Fail(absl::StrCat("joined the mesh at ", flags.target,
                      " but linked with no member within --timeout_ms=",
                      absl::ToInt64Milliseconds(flags.timeout),
                      " ms; are the nodes stopped or overloaded (meshctl "
                      "topology shows their state), or do they only accept "
                      "other users (allowed_peer_uids)?"));
    return false;
  }
  if (!joined.ok()) {
    Fail(absl::StrCat("cannot join the mesh at ", flags.target, ": ",
                      joined.message()));
    return false;
  }
  if (!missing.empty()) {
    std::cerr << "meshctl: warning: not linked with "
              << absl::StrJoin(missing, ", ") << " after --timeout_ms="
              << absl::ToInt64Milliseconds(flags.timeout)
              << " ms; going on without them\n";
  }
  return true;
}

}  // namespace

int RunEcho(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
            const std::string& pattern) {
  std::unique_ptr<Member> member = MakeMember(flags);
  if (member == nullptr) return kExitFailed;
  // Before joining: the subscription travels with the links as they come
  // up, so publishers know it from the first frame they could send.
  absl::StatusOr<std::unique_ptr<mesh::Subscription>> sub =
      member->node().Subscribe(pattern);
  if (!sub.ok()) {
    return BadName("pattern", pattern, sub.status());
  }
  if (!JoinMesh(*member, flags, mesh)) {
    return StopRequested() ? kExitOk : kExitFailed;
  }
  std::cerr << "meshctl: echo " << pattern << " as "
            << member->node().name() << ", linked with "
            << member->node().Peers().size() << " nodes; Ctrl-C to stop\n";
  int64_t printed = 0;
  while (!StopRequested() && (flags.count == 0 || printed < flags.count)) {
    absl::StatusOr<mesh::Message> m =
        (*sub)->Receive(absl::Now() + absl::Milliseconds(100));
    if (absl::IsDeadlineExceeded(m.status())) continue;
    if (!m.ok()) {
      return Fail(absl::StrCat("receiving on ", pattern, " failed: ",
                               CodeName(m.status()), ": ",
                               m.status().message()));
    }
    if (!WriteOut(TopicMessageLine(m->topic, m->from, m->data()))) break;
    ++printed;
  }
  return kExitOk;
}

namespace {

// Arrival times per topic, fed on the node's receive thread and read by
// the reporting (main) thread.
class RateBoard {
 public:
  explicit RateBoard(size_t window) : window_(window) {}

  void Add(absl::string_view topic, absl::Time at) {
    absl::MutexLock lock(&mu_);
    auto it = windows_.find(topic);
    if (it == windows_.end()) {
      it = windows_.emplace(std::string(topic), RateWindow(window_)).first;
    }
    it->second.Add(at);
  }

  // One line per topic seen so far ("" before the first message).
  std::string Report() {
    absl::MutexLock lock(&mu_);
    std::string out;
    for (auto& [topic, window] : windows_) {
      if (window.TakeNew() == 0) {
        absl::StrAppend(&out, topic, ": no new messages\n");
        continue;
      }
      const std::optional<RateReport> report = window.Report();
      if (!report.has_value()) continue;  // one message: no gap yet
      absl::StrAppend(&out, topic, ": ", FormatRateReport(*report), "\n");
    }
    return out;
  }

 private:
  const size_t window_;
  absl::Mutex mu_;
  std::map<std::string, RateWindow, std::less<>> windows_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

int RunHz(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
          const std::string& pattern) {
  std::unique_ptr<Member> member = MakeMember(flags);
  if (member == nullptr) return kExitFailed;
  auto board = std::make_shared<RateBoard>(static_cast<size_t>(flags.window));
  // The handler form: the arrival time is taken on the receive thread as
  // the message is read, not when a pull loop gets around to it.
  absl::StatusOr<std::unique_ptr<mesh::Subscription>> sub =
      member->node().Subscribe(pattern, [board](const mesh::MessageView& m) {
        board->Add(m.topic, absl::Now());
      });
  if (!sub.ok()) {
    return BadName("pattern", pattern, sub.status());
  }
  if (!JoinMesh(*member, flags, mesh)) {
    return StopRequested() ? kExitOk : kExitFailed;
  }
  std::cerr << "meshctl: hz " << pattern << " as " << member->node().name()
            << ": a report per second; Ctrl-C to stop\n";
  int64_t reports = 0;
  absl::Time next = absl::Now() + absl::Seconds(1);
  while (flags.count == 0 || reports < flags.count) {
    if (!SleepUnlessStopped(next)) break;
    next += absl::Seconds(1);
    const std::string report = board->Report();
    if (report.empty()) continue;
    if (!WriteOut(report)) break;
    ++reports;
  }
  // Unsubscribe first: once this returns the handler never runs again.
  sub->reset();
  return kExitOk;
}

int RunPub(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
           const std::string& topic, const std::string& data) {
  std::unique_ptr<Member> member = MakeMember(flags);
  if (member == nullptr) return kExitFailed;
  absl::StatusOr<std::unique_ptr<mesh::Publisher>> pub =
      member->node().Advertise(topic);
  if (!pub.ok()) {
    return BadName("topic", topic, pub.status());
  }
  if (!JoinMesh(*member, flags, mesh)) {
    return StopRequested() ? kExitOk : kExitFailed;
  }
  const absl::Time deadline = absl::Now() + flags.wait;
  const int64_t wait_ms = absl::ToInt64Milliseconds(flags.wait);
  // Whom to wait for: every node whose subscription matched when the
  // target answered (at least one), so a one-shot publish is not lost on
  // the subscribers whose interest is still on its way.
  const std::vector<std::string> expected =
      SubscribersOf(mesh, topic, member->node().name());
  const size_t want = std::max<size_t>(expected.size(), 1);
  if (flags.wait > absl::ZeroDuration()) {
    while (!StopRequested()) {
      const absl::Time slice =
          std::min(absl::Now() + absl::Milliseconds(100), deadline);
      if ((*pub)->WaitForSubscribers(want, slice).ok()) break;
      if (absl::Now() >= deadline) break;
    }
    if (StopRequested()) return kExitOk;
    const size_t matched = (*pub)->matched();
    if (matched == 0) {
      return Fail(absl::StrCat(
          "no subscriber of ", topic, " within --wait_ms=", wait_ms,
          " ms; nothing was published. Start one (e.g. meshctl echo ", topic,
          "), raise --wait_ms, or publish anyway with --wait_ms=0"));
    }
    if (matched < want) {
      std::cerr << "meshctl: warning: " << matched << " of the " << want
                << " subscribers of " << topic << " ("
                << absl::StrJoin(expected, ", ") << ") matched within "
                << wait_ms << " ms; publishing to "
                << absl::StrJoin((*pub)->subscribers(), ", ") << "\n";
    }
  }
  // --count not given: once. 0: until Ctrl-C.
  const int64_t count = flags.count < 0 ? 1 : flags.count;
  const absl::Duration period = flags.rate_hz > 0
                                    ? absl::Seconds(1.0 / flags.rate_hz)
                                    : absl::ZeroDuration();
  int64_t published = 0;
  // Who got at least one message (a subscriber may leave before the end).
  std::set<std::string> reached;
  absl::Time next = absl::Now();
  while (count == 0 || published < count) {
    if (published > 0 && !SleepUnlessStopped(next)) break;
    if (StopRequested()) break;
    next += period;
    absl::StatusOr<mesh::PublishResult> result =
        (*pub)->Publish(data, absl::Now() + flags.publish_timeout);
    if (!result.ok()) {
      return Fail(absl::StrCat("publishing message ", published + 1, " to ",
                               topic, " failed: ", CodeName(result.status()),
                               ": ", result.status().message()));
    }
    if (result->delivered > 0) {
      // The matched subscribers but those it did not reach.
      std::set<std::string> missed;
      for (const auto& [peer, why] : result->not_reached) missed.insert(peer);
      for (const std::string& s : (*pub)->subscribers()) {
        if (missed.count(s) == 0) reached.insert(s);
      }
    }
    for (const auto& [peer, why] : result->not_reached) {
      std::cerr << "meshctl: warning: message " << published + 1
                << " did not reach " << peer << ": " << CodeName(why) << ": "
                << why.message() << "\n";
    }
    ++published;
  }
  // The subscribers read the last messages before this node leaves.
  if (absl::Status read = WaitUntilPeersRead(member->node(), absl::Seconds(2));
      !read.ok()) {
    std::cerr << "meshctl: warning: " << read.message() << "\n";
  }
  WriteOut(absl::StrCat(
      "published ", published, published == 1 ? " message" : " messages",
      " to ", topic, "; reached: ",
      reached.empty() ? "no subscriber" : absl::StrJoin(reached, ", "), "\n"));
  return kExitOk;
}

int RunCall(const MemberFlags& flags, const mesh::v1::TopologySnapshot& mesh,
            const std::string& service, const std::string& data) {
  std::unique_ptr<Member> member = MakeMember(flags);
  if (member == nullptr) return kExitFailed;
  if (!JoinMesh(*member, flags, mesh)) {
    return StopRequested() ? kExitOk : kExitFailed;
  }
  const absl::Time deadline = absl::Now() + flags.wait;
  // The servers' announcements come over each link right after it is up:
  // poll for them briefly rather than fail on the first look.
  auto served = [&] {
    const std::vector<std::string> servers = member->node().Servers(service);
    return flags.server.empty()
               ? !servers.empty()
               : std::find(servers.begin(), servers.end(), flags.server) !=
                     servers.end();
  };
  while (!served() && absl::Now() < deadline && !StopRequested()) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  if (StopRequested()) return kExitOk;
  if (!served()) {
    const std::vector<std::string> known = ServersOf(mesh, service);
    return Fail(absl::StrCat(
        flags.server.empty() ? "no linked node serves "
                             : absl::StrCat(flags.server, " does not serve "),
        service, " (after --wait_ms=", absl::ToInt64Milliseconds(flags.wait),
        " ms; servers the target knew of: ",
        known.empty() ? "none" : absl::StrJoin(known, ", "),
        "). Start one (e.g. meshd --serve=", service,
        "); meshctl topics lists the services"));
  }
  mesh::CallOptions options;
  options.server = flags.server;
  absl::StatusOr<std::string> reply = member->node().Call(
      service, data, absl::Now() + flags.timeout, options);
  if (!reply.ok()) {
    return Fail(absl::StrCat("call ", service,
                             flags.server.empty() ? "" : " on ", flags.server,
                             " failed: ", CodeName(reply.status()), ": ",
                             reply.status().message()));
  }
  std::string out = std::move(*reply);
  if (out.empty() || out.back() != '\n') out += '\n';
  WriteOut(out);
  return kExitOk;
}

}  // namespace cmd
}  // namespace mesh
