#include "mesh/cmd/member.h"

#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mesh/v1/config.pb.h"

namespace mesh {
namespace cmd {
namespace {

sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

// Set once a stop signal was read; only the main thread reads signals, so
// this is plain data.
bool stop_requested = false;

}  // namespace

void BlockStopSignals() {
  const sigset_t set = StopSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

bool StopRequested() {
  if (stop_requested) return true;
  const sigset_t set = StopSignals();
  const timespec now = {0, 0};
  // The signals are blocked in every thread, so a pending one waits here.
  if (sigtimedwait(&set, nullptr, &now) > 0) stop_requested = true;
  return stop_requested;
}

bool SleepUnlessStopped(absl::Time deadline) {
  while (!StopRequested()) {
    const absl::Time now = absl::Now();
    if (now >= deadline) return true;
    absl::SleepFor(std::min(deadline - now, absl::Milliseconds(100)));
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Member>> Member::Create(
    const std::string& target) {
  const std::string name = absl::StrCat("meshctl-", ::getpid());
  std::string dir_template = absl::StrCat("/tmp/", name, ".XXXXXX");
  if (::mkdtemp(dir_template.data()) == nullptr) {
    return absl::ErrnoToStatus(
        errno, absl::StrCat("cannot make a run directory ", dir_template,
                            " for this meshctl's node; is /tmp writable?"));
  }
  mesh::v1::NodeConfig config;
  config.set_name(name);
  config.set_run_dir(dir_template);
  config.add_seeds(target);
  // The node's info lines (peer up, peer down) would drown the command's
  // own output.
  config.set_log_level(mesh::v1::WARNING);
  absl::StatusOr<std::unique_ptr<mesh::Node>> node = mesh::Node::Create(config);
  if (!node.ok()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_template, ignored);
    return node.status();
  }
  return std::unique_ptr<Member>(
      new Member(std::move(dir_template), std::move(*node)));
}

Member::Member(std::string run_dir, std::unique_ptr<mesh::Node> node)
    : run_dir_(std::move(run_dir)), node_(std::move(node)) {}

Member::~Member() {
  Leave();
  // The node removed its sockets; the directory (and anything a failed
  // start left) goes too.
  std::error_code ignored;
  std::filesystem::remove_all(run_dir_, ignored);
}

void Member::Leave() { node_->Stop(); }

absl::Status Member::Join(const mesh::v1::TopologySnapshot& mesh,
                          absl::Time deadline,
                          std::vector<std::string>* missing) {
  missing->clear();
  if (absl::Status started = node_->Start(); !started.ok()) return started;
  std::set<std::string> wanted;
  for (const mesh::v1::Member& m : mesh.members()) {
    if (m.state() == mesh::v1::UP && m.name() != node_->name()) {
      wanted.insert(m.name());
    }
  }
  while (true) {
    if (StopRequested()) return absl::CancelledError("stopped by a signal");
    const std::vector<std::string> peers = node_->Peers();
    missing->clear();
    for (const std::string& name : wanted) {
      if (!std::binary_search(peers.begin(), peers.end(), name)) {
        missing->push_back(name);
      }
    }
    // With nobody UP in `mesh` (the target is still joining), the first
    // peer is enough.
    if (!peers.empty() && missing->empty()) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      if (peers.empty()) {
        return absl::DeadlineExceededError("no member linked with this node");
      }
      return absl::OkStatus();
    }
    // Returns as soon as one more peer links (or at the slice's end, to
    // look at the signals).
    const absl::Status linked = node_->WaitForPeers(
        peers.size() + 1,
        std::min(absl::Now() + absl::Milliseconds(100), deadline));
    if (!linked.ok() && !absl::IsDeadlineExceeded(linked)) return linked;
  }
}

absl::Status WaitUntilPeersRead(mesh::Node& node, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    absl::StatusOr<mesh::v1::TopologySnapshot> topology =
        node.Topology(/*local_only=*/true);
    if (!topology.ok()) return topology.status();
    uint64_t queued = 0;
    for (const mesh::v1::Link& link : topology->links()) {
      queued += link.a() == node.name() ? link.queued_bytes_a_to_b()
                                        : link.queued_bytes_b_to_a();
    }
    if (queued == 0) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(queued, " bytes still unread by peers after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
}

}  // namespace cmd
}  // namespace mesh
