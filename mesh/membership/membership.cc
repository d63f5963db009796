#include "mesh/membership/membership.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "google/protobuf/util/time_util.h"
#include "base/eventfd.h"
#include "mesh/base/os.h"

namespace mesh {
namespace {

// Deadlines of control-plane calls between nodes.
constexpr absl::Duration kRpcTimeout = absl::Seconds(1);
constexpr absl::Duration kHandshakeTimeout = absl::Seconds(2);
// Failures in a row before a retry is worth a WARNING: the first ones are
// start-up races (the other node is still starting) and go to DEBUG.
constexpr int kQuietFailures = 10;

google::protobuf::Timestamp Now() {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(absl::Now()));
}

Roster::Options RosterOptions(const Membership::Options& o) {
  Roster::Options r;
  r.self_name = o.self_name;
  r.self_id = o.self_id;
  r.self_pid = ::getpid();
  r.allowed_uids = o.allowed_uids;
  r.process_alive = [](pid_t pid) { return ProcessAlive(pid); };
  return r;
}

Reconciler::Options ReconcilerOptions(const Membership::Options& o) {
  Reconciler::Options r;
  r.self_name = o.self_name;
  r.seeds = o.seeds;
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Membership>> Membership::Create(Options options, Hooks hooks, const Logger* log) {
  SHMESH_ASSIGN_OR_RETURN(base::UniqueFd wake, base::MakeEventFd());
  return std::unique_ptr<Membership>(new Membership(std::move(options), std::move(hooks), log, std::move(wake)));
}

Membership::Membership(Options options, Hooks hooks, const Logger* log, base::UniqueFd wake)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      log_(log),
      wake_(std::move(wake)),
      roster_(RosterOptions(options_)),
      reconciler_(ReconcilerOptions(options_)) {}

Membership::~Membership() { Stop(absl::ZeroDuration()); }

bool Membership::stopping() const {
  // acquire: pairs with the release store in Stop.
  return stopping_.load(std::memory_order_acquire);
}

void Membership::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Membership::Stop(absl::Duration leave_timeout) {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  Wake();
  std::vector<std::string> targets;
  {
    absl::MutexLock lock(&mu_);
    for (const mesh::v1::Member& m : roster_.Live([](const std::string&) { return false; })) {
      targets.push_back(m.grpc_address());
    }
  }
  if (!targets.empty() && leave_timeout > absl::ZeroDuration()) {
    // Every member drops us at once instead of waiting for the link's EOF
    // (and those we never linked with learn it at all): all at once, async,
    // before waiting for the control thread (which may be in a Join).
    mesh::v1::LeaveRequest req;
    req.set_name(options_.self_name);
    req.set_id(options_.self_id);
    (void)peer_client_.LeaveAll(targets, req, absl::Now() + leave_timeout);
  }
  if (thread_.joinable()) thread_.join();
  absl::MutexLock lock(&mu_);
  roster_.Clear();
  reconciler_.Clear();
  BumpLocked();
}

void Membership::RunExclusive(absl::FunctionRef<void()> fn) {
  absl::MutexLock lock(&mu_);
  fn();
}

void Membership::Wake() { (void)base::SignalEventFd(wake_.get()); }

uint64_t Membership::generation() const {
  // acquire: pairs with the release increments in BumpLocked.
  return generation_.load(std::memory_order_acquire);
}

void Membership::BumpLocked() {
  // release: pairs with the acquire load in generation().
  generation_.fetch_add(1, std::memory_order_release);
}

// ---------------------------------------------------------------------------
// The roster, under mu_.

void Membership::ApplyLocked(const Roster::Change& change, absl::Time now) {
  for (const mesh::v1::Member& m : change.departed) reconciler_.OnMemberRemoved(m.name(), m.id());
  for (const mesh::v1::Member& m : change.added) {
    reconciler_.OnMemberAdded(m, now);
    log_->Info("member joined: %s (pid %d, %s)", m.name(), m.pid(), m.grpc_address());
  }
  if (!change.empty()) BumpLocked();
}

void Membership::LearnLocked(const std::vector<mesh::v1::Member>& members, absl::Time now) {
  Roster::Change change;
  for (const mesh::v1::Member& m : members) (void)roster_.Learn(m, now, hooks_.linked, &change);
  ApplyLocked(change, now);
}

void Membership::DepartLocked(const std::string& peer, uint64_t id) {
  if (!roster_.Depart(peer, id, absl::Now())) return;
  reconciler_.OnMemberRemoved(peer, id);
  BumpLocked();
}

std::vector<mesh::v1::Member> Membership::Members() const {
  std::vector<mesh::v1::Member> out;
  out.push_back(hooks_.self());
  *out.back().mutable_since() = Now();
  absl::MutexLock lock(&mu_);
  for (mesh::v1::Member& m : roster_.Members(absl::Now(), hooks_.linked)) out.push_back(std::move(m));
  return out;
}

absl::StatusOr<std::vector<mesh::v1::Member>> Membership::HandleJoin(const mesh::v1::Member& member,
                                                                     const std::vector<mesh::v1::Member>& known) {
  if (stopping()) return absl::UnavailableError(absl::StrCat("node ", options_.self_name, " is stopping"));
  std::vector<mesh::v1::Member> out;
  out.push_back(hooks_.self());
  *out.back().mutable_since() = Now();
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    SHMESH_ASSIGN_OR_RETURN(Roster::Change change, roster_.Join(member, known, hooks_.linked, now));
    ApplyLocked(change, now);
    if (member.name() != options_.self_name) reconciler_.OnJoinedUs(member.name(), member.id());
    // Live members only: a joiner must not learn departed ones again.
    for (mesh::v1::Member& m : roster_.Live(hooks_.linked)) out.push_back(std::move(m));
  }
  Wake();
  hooks_.on_change();
  return out;
}

bool Membership::IsMember(const std::string& name, uint64_t id) const {
  absl::MutexLock lock(&mu_);
  const Roster::Entry* e = roster_.Find(name);
  return e != nullptr && e->member.id() == id;
}

bool Membership::IsMemberPid(pid_t pid) const {
  absl::MutexLock lock(&mu_);
  return roster_.IsMemberPid(pid);
}

absl::StatusOr<mesh::v1::Member> Membership::Lookup(const std::string& name, uint64_t id) const {
  absl::MutexLock lock(&mu_);
  return roster_.Lookup(name, id);
}

bool Membership::Admit(const std::string& name, uint64_t id, absl::FunctionRef<bool()> install) {
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* e = roster_.Find(name);
    if (stopping() || e == nullptr || e->member.id() != id || !install()) return false;
    roster_.MarkLinked(name, absl::Now());
    reconciler_.OnLinkUp(name);
    BumpLocked();
  }
  hooks_.on_change();
  return true;
}

void Membership::MarkLeft(uint64_t id) {
  absl::MutexLock lock(&mu_);
  roster_.MarkLeft(id);
}

void Membership::Depart(const std::string& name, uint64_t id, absl::FunctionRef<void()> remove) {
  {
    absl::MutexLock lock(&mu_);
    remove();
    DepartLocked(name, id);
    BumpLocked();
  }
  Wake();
  hooks_.on_change();
}

// ---------------------------------------------------------------------------
// The control thread: the reconciler's plans.

mesh::v1::JoinRequest Membership::MakeJoinRequest() {
  mesh::v1::JoinRequest req;
  *req.mutable_member() = hooks_.self();
  absl::MutexLock lock(&mu_);
  for (mesh::v1::Member& m : roster_.Live(hooks_.linked)) *req.add_known() = std::move(m);
  return req;
}

absl::Status Membership::JoinSeeds(absl::Duration timeout) {
  if (options_.seeds.empty()) return absl::OkStatus();
  const mesh::v1::JoinRequest req = MakeJoinRequest();
  std::vector<std::string> errors;
  absl::Status taken;
  for (const std::string& seed : options_.seeds) {
    absl::StatusOr<mesh::v1::JoinResponse> resp = peer_client_.Join(seed, req, absl::Now() + timeout);
    if (resp.ok()) {
      const std::vector<mesh::v1::Member> answer(resp->members().begin(), resp->members().end());
      log_->Info("joined through seed %s: %d member(s)", seed, answer.size());
      {
        absl::MutexLock lock(&mu_);
        LearnLocked(answer, absl::Now());
        reconciler_.OnSeedJoined(seed, answer);
      }
      hooks_.on_change();
      return absl::OkStatus();
    }
    if (absl::IsAlreadyExists(resp.status()) && taken.ok()) taken = resp.status();
    errors.push_back(std::string(resp.status().message()));
  }
  Reconciler::Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    outcome = reconciler_.OnSeedRoundFailed(absl::Now());
  }
  if (!taken.ok()) {
    // The seed answered: our name is held by a live node. Not a race.
    return absl::AlreadyExistsError(absl::StrCat("cannot join the mesh: ", taken.message()));
  }
  if (outcome.log) {
    const std::string line =
        absl::StrCat("no seed reachable (attempt ", outcome.failures, "): ", absl::StrJoin(errors, "; "),
                     "; retrying in ", absl::FormatDuration(outcome.retry_at - absl::Now()));
    if (outcome.failures >= kQuietFailures) {
      log_->Warning("%s", line);
    } else {
      log_->Debug("%s", line);
    }
  }
  return absl::UnavailableError(absl::StrJoin(errors, "; "));
}

void Membership::Announce(const Reconciler::Target& target) {
  mesh::v1::Member member;
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* e = roster_.Find(target.name);
    if (e == nullptr || e->member.id() != target.id) {
      (void)reconciler_.OnAnnounceResult(target.name, target.id, false, false, absl::Now());
      return;
    }
    member = e->member;
  }
  absl::StatusOr<mesh::v1::JoinResponse> resp =
      peer_client_.Join(member.grpc_address(), MakeJoinRequest(), absl::Now() + kRpcTimeout);
  const bool alive = resp.ok() || ProcessAlive(member.pid());
  Reconciler::Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    if (resp.ok()) {
      LearnLocked(std::vector<mesh::v1::Member>(resp->members().begin(), resp->members().end()), absl::Now());
    }
    outcome = reconciler_.OnAnnounceResult(target.name, target.id, resp.ok(), alive, absl::Now());
    if (outcome.depart) DepartLocked(target.name, target.id);
  }
  if (!resp.ok() && alive && outcome.log) {
    // The first failures are start-up races (its server is not up yet).
    if (outcome.failures >= kQuietFailures) {
      log_->Warning("cannot announce to %s: %s; retrying", target.name, resp.status().message());
    } else {
      log_->Debug("cannot announce to %s: %s; retrying", target.name, resp.status().message());
    }
  }
  hooks_.on_change();
}

void Membership::Dial(const Reconciler::Target& target) {
  mesh::v1::Member member;
  {
    absl::MutexLock lock(&mu_);
    const Roster::Entry* e = roster_.Find(target.name);
    if (e == nullptr || e->member.id() != target.id) {
      (void)reconciler_.OnDialResult(target.name, target.id, absl::NotFoundError("gone"), false, absl::Now());
      return;
    }
    member = e->member;
  }
  const absl::Status status = hooks_.dial(member, absl::Now() + kHandshakeTimeout);
  const bool alive = status.ok() || ProcessAlive(member.pid());
  Reconciler::Outcome outcome;
  {
    absl::MutexLock lock(&mu_);
    outcome = reconciler_.OnDialResult(target.name, target.id, status, alive, absl::Now());
    if (outcome.depart) DepartLocked(target.name, target.id);
  }
  if (absl::IsAborted(status)) {
    log_->Debug("link to %s refused (%s); announcing again", target.name, status.message());
  } else if (!status.ok() && alive && outcome.log) {
    if (outcome.failures >= kQuietFailures) {
      log_->Warning("cannot link to %s: %s; retrying", target.name, status.message());
    } else {
      log_->Debug("cannot link to %s: %s; retrying", target.name, status.message());
    }
  }
}

absl::Time Membership::Reconcile() {
  Reconciler::Plan plan;
  {
    absl::MutexLock lock(&mu_);
    const absl::Time now = absl::Now();
    const absl::Time expiry = roster_.ExpireDeparted(now);
    std::set<std::string> addresses = roster_.Addresses();
    addresses.insert(hooks_.self().grpc_address());
    plan = reconciler_.Decide(now, hooks_.linked, addresses);
    plan.next_wake = std::min(plan.next_wake, expiry);
  }
  if (plan.join_seeds) {
    absl::Status joined = JoinSeeds(kRpcTimeout);
    if (absl::IsAlreadyExists(joined)) log_->Error("%s", joined.message());
  }
  for (const std::string& seed : plan.stray_seeds) {
    if (stopping()) break;
    absl::StatusOr<mesh::v1::JoinResponse> resp =
        peer_client_.Join(seed, MakeJoinRequest(), absl::Now() + kRpcTimeout);
    {
      absl::MutexLock lock(&mu_);
      if (resp.ok()) {
        log_->Debug("seed %s answered again: %d member(s)", seed, resp->members_size());
        LearnLocked(std::vector<mesh::v1::Member>(resp->members().begin(), resp->members().end()), absl::Now());
      }
      (void)reconciler_.OnStraySeedResult(seed, resp.ok(), absl::Now());
    }
    hooks_.on_change();
  }
  for (const Reconciler::Target& t : plan.announce) {
    if (stopping()) break;
    Announce(t);
  }
  for (const Reconciler::Target& t : plan.dial) {
    if (stopping()) break;
    Dial(t);
  }
  // A plan's results make new work (an answered announce readies a dial).
  return plan.empty() ? plan.next_wake : absl::Now();
}

void Membership::Loop() {
  NameThisThread("mesh-control");
  pollfd wake = {wake_.get(), POLLIN, 0};
  absl::Time next = absl::Now();
  while (!stopping()) {
    const absl::Time now = absl::Now();
    if (next > now) {
      const int timeout_ms = static_cast<int>(std::min<int64_t>(absl::ToInt64Milliseconds(next - now) + 1, 1 << 30));
      if (::poll(&wake, 1, timeout_ms) > 0) (void)base::DrainEventFd(wake_.get());
      if (stopping()) break;
    }
    next = Reconcile();
  }
}

}  // namespace mesh
