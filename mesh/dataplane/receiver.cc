#include "mesh/dataplane/receiver.h"

#include <sched.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/epoll.h"
#include "base/eventfd.h"
#include "mesh/base/os.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/dataplane/frame_dispatch.h"
#include "mesh/dataplane/idle_wait.h"
#include "ringbuf/ring.h"

namespace mesh {
namespace {

// Frames drained from one link before moving to the next (fairness).
constexpr size_t kDrainBatch = 256;

// A busy receive thread reads the clock once per this many passes that
// found frames (when idle, IdleWait reads it).
constexpr uint32_t kBusyPassesPerClockRead = 64;
// A spinning receive thread looks at the link sockets (one zero-timeout
// epoll_wait: a syscall of about 1-3 us) only when every link has been
// quiet for kQuietBeforeCheckNs, and then at most every kHangupCheckNs; on
// a stream that never pauses, every kBusyCheckNs. So the check never lands
// between the frames of an active exchange (it used to, every 2 ms, and
// made the spinning receiver's p99.9 latency 5x raw_ring's). A peer that
// dies stops writing, so its link goes quiet and is checked within
// kQuietBeforeCheckNs + kHangupCheckNs. A sleeping thread is woken by the
// hang-up itself.
constexpr int64_t kQuietBeforeCheckNs = 50'000;
constexpr int64_t kHangupCheckNs = 2'000'000;
constexpr int64_t kBusyCheckNs = 10'000'000;

// Doorbell spam guard. A peer rings our doorbell only after publishing data
// while we sleep, so a wake-up that finds nothing new is rare for an honest
// peer (a ring that raced with our going to sleep). A peer whose doorbell
// wakes us for nothing this many times within one window gets its doorbell
// muted: removed from the epoll set for kDoorbellMuteNs, while its ring is
// polled every kMutedPollMs instead (its messages still arrive, up to
// kMutedPollMs late).
constexpr uint32_t kDoorbellSpamWakes = 256;
constexpr int64_t kDoorbellSpamWindowNs = 100'000'000;
constexpr int64_t kDoorbellMuteNs = 1'000'000'000;
constexpr int kMutedPollMs = 10;

// Tags in the epoll set: 0 = the wake-up eventfd; 2*i+2 = link i's control
// socket, 2*i+3 = its doorbell (i indexes the thread's copy of the links).
constexpr uint64_t kTagWake = 0;
// 1 = the nested epoll set of the shared rings' doorbells (SharedRings).
constexpr uint64_t kTagShared = 1;

}  // namespace

absl::StatusOr<std::unique_ptr<Receiver>> Receiver::Create(Options options, Hooks hooks, const LinkTable* table,
                                                           const Logger* log) {
  if (!hooks.message_handler && hooks.queue == nullptr) {
    return absl::InvalidArgumentError("Receiver needs a message handler or a receive queue");
  }
  absl::StatusOr<base::UniqueFd> wake = base::MakeEventFd();
  if (!wake.ok()) return wake.status();
  absl::StatusOr<base::Epoll> epoll = base::Epoll::Create();
  if (!epoll.ok()) return epoll.status();
  if (absl::Status added = epoll->Add(wake->get(), EPOLLIN, kTagWake); !added.ok()) return added;
  std::optional<SharedRings> shared;
  if (hooks.valid_topic) {
    absl::StatusOr<SharedRings> made = SharedRings::Create(hooks.valid_topic);
    if (!made.ok()) return made.status();
    if (absl::Status added = epoll->Add(made->fd(), EPOLLIN, kTagShared); !added.ok()) return added;
    shared.emplace(std::move(*made));
  }
  return std::unique_ptr<Receiver>(new Receiver(std::move(options), std::move(hooks), table, log, std::move(*wake),
                                                std::move(*epoll), std::move(shared)));
}

Receiver::Receiver(Options options, Hooks hooks, const LinkTable* table, const Logger* log, base::UniqueFd wake,
                   base::Epoll epoll, std::optional<SharedRings> shared)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      table_(table),
      log_(log),
      wake_(std::move(wake)),
      epoll_(std::move(epoll)),
      shared_(std::move(shared)) {}

Receiver::~Receiver() { Stop(); }

namespace {
// The table of the receiver whose Loop runs on this thread (null
// elsewhere): set once at the top of Loop, read only by the same thread.
thread_local const LinkTable* tls_table = nullptr;
}  // namespace

const LinkTable* Receiver::CurrentThreadTable() { return tls_table; }

void Receiver::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Receiver::Stop() {
  // release: pairs with the acquire loads in Loop.
  stopping_.store(true, std::memory_order_release);
  Wake();
  if (thread_.joinable()) thread_.join();
}

void Receiver::Wake() { (void)base::SignalEventFd(wake_.get()); }

void Receiver::Leave(std::shared_ptr<Transport> link) {
  {
    absl::MutexLock lock(&leave_mu_);
    leaving_.push_back(std::move(link));
  }
  // release: pairs with the acquire exchange in Loop, after the push.
  leaving_pending_.store(true, std::memory_order_release);
  Wake();
}

Receiver::Counters Receiver::counters() const {
  // relaxed: statistics (see AtomicCounters).
  Counters c;
  c.dropped_oversize = counters_.dispatch.dropped_oversize.load(std::memory_order_relaxed);
  c.dropped_invalid = counters_.dispatch.dropped_invalid.load(std::memory_order_relaxed);
  c.dropped_unhandled = counters_.dispatch.dropped_unhandled.load(std::memory_order_relaxed);
  c.dropped_bad_refs = counters_.dispatch.dropped_bad_refs.load(std::memory_order_relaxed);
  c.pings_answered = counters_.pings_answered.load(std::memory_order_relaxed);
  c.pongs = counters_.pongs.load(std::memory_order_relaxed);
  c.control_ignored = counters_.control_ignored.load(std::memory_order_relaxed);
  c.shared_rings_dropped = counters_.shared_rings_dropped.load(std::memory_order_relaxed);
  return c;
}

void Receiver::Loop() {
  NameThisThread("mesh-recv");
  tls_table = table_;
  // Releases of pool payloads delivered here are batched per pass.
  pool::SetDeferReleasesOnThisThread(true);
  base::Epoll* const epoll = &epoll_;
  std::vector<std::shared_ptr<Transport>> active;
  // Per link: the doorbell spam guard, kept across refreshes of `active`.
  struct DoorbellGuard {
    int64_t window_start_ns = 0;
    uint32_t idle_wakes = 0;     // wake-ups for nothing in this window
    int64_t muted_until_ns = 0;  // 0: not muted
    uint64_t mutes = 0;
  };
  std::map<const Transport*, DoorbellGuard> guards;
  // Whether link i's doorbell rang since its last drain (indexes `active`).
  std::vector<char> rang;
  // Whether link i's next frame was refused by the router (a full pull
  // subscription): not drained, and not asked before sleeping, until a
  // wake-up (the subscription made room, or anything else).
  std::vector<char> held;
  uint64_t seen_generation = 0;
  epoll_event events[64];
  // Spin, yield or sleep after a pass that found nothing (the WaitPolicy).
  IdleWait idle(options_.wait);
  uint32_t busy_passes = 0;
  int64_t next_hangup_check_ns = 0;
  FrameDispatch::Targets targets;
  targets.message_handler = hooks_.message_handler;
  targets.queue = hooks_.queue;
  targets.router = hooks_.router;
  targets.inboxes = hooks_.inboxes;
  targets.pool = hooks_.pool;
  FrameDispatch dispatch(std::move(targets), options_.max_message_bytes, &counters_.dispatch, log_);

  auto stopping = [this] {
    // acquire: pairs with the release store in Stop.
    return stopping_.load(std::memory_order_acquire);
  };

  auto queue_full = [&] { return !hooks_.message_handler && hooks_.queue->full(); };

  auto refresh = [&] {
    std::vector<std::shared_ptr<Transport>> fresh;
    if (!table_->CopyIfChanged(&seen_generation, &fresh)) return;
    for (const auto& link : active) {
      const Transport::WaitHandles h = link->wait_handles();
      epoll->Remove(h.control);
      epoll->Remove(h.data);
    }
    active.swap(fresh);
    rang.assign(active.size(), 0);
    held.assign(active.size(), 0);
    if (hooks_.router != nullptr) hooks_.router->LinksChanged(active);
    if (hooks_.inboxes != nullptr) hooks_.inboxes->LinksChanged(active);
    if (shared_.has_value()) shared_->KeepOnly(active);
    std::map<const Transport*, DoorbellGuard> kept;
    for (size_t i = 0; i < active.size(); ++i) {
      // A link that is down is being retired; watching it would only wake
      // us again and again (level-triggered) for nothing.
      if (active[i]->down()) continue;
      const Transport::WaitHandles h = active[i]->wait_handles();
      (void)epoll->Add(h.control, EPOLLIN | EPOLLRDHUP, 2 * i + 2);
      auto g = guards.find(active[i].get());
      if (g != guards.end()) {
        kept.insert(*g);
        if (g->second.muted_until_ns != 0) continue;  // polled until the mute ends
      }
      (void)epoll->Add(h.data, EPOLLIN, 2 * i + 3);
    }
    guards.swap(kept);  // forgets links that are gone
  };

  auto any_muted = [&] {
    return std::any_of(guards.begin(), guards.end(), [](const auto& g) { return g.second.muted_until_ns != 0; });
  };

  // A wake-up by link i's doorbell that found nothing to read.
  auto note_idle_wake = [&](size_t i) {
    DoorbellGuard& g = guards[active[i].get()];
    const int64_t now = SteadyNowNs();
    if (now - g.window_start_ns > kDoorbellSpamWindowNs) {
      g.window_start_ns = now;
      g.idle_wakes = 0;
    }
    if (++g.idle_wakes < kDoorbellSpamWakes || g.muted_until_ns != 0) return;
    g.muted_until_ns = now + kDoorbellMuteNs;
    epoll->Remove(active[i]->wait_handles().data);
    if (g.mutes++ % 60 == 0) {
      log_->Warning(
          "peer %s rang our doorbell %u times in %d ms without sending anything; ignoring its doorbell "
          "for %d ms at a time (its ring is polled every %d ms meanwhile; %u time(s) so far)",
          active[i]->peer_name(), g.idle_wakes, static_cast<int>(kDoorbellSpamWindowNs / 1'000'000),
          static_cast<int>(kDoorbellMuteNs / 1'000'000), kMutedPollMs, g.mutes);
    }
  };

  // Ends the mutes that are over.
  auto unmute_expired = [&] {
    const int64_t now = SteadyNowNs();
    for (size_t i = 0; i < active.size(); ++i) {
      auto g = guards.find(active[i].get());
      if (g == guards.end() || g->second.muted_until_ns == 0 || now < g->second.muted_until_ns) continue;
      g->second.muted_until_ns = 0;
      g->second.idle_wakes = 0;
      g->second.window_start_ns = now;
      (void)epoll->Add(active[i]->wait_handles().data, EPOLLIN, 2 * i + 3);
    }
  };

  auto fail_link = [&](const std::shared_ptr<Transport>& link, absl::string_view why) {
    // Stop watching it at once: its socket or doorbell would keep waking
    // this level-triggered epoll until the table drops it.
    const Transport::WaitHandles h = link->wait_handles();
    epoll->Remove(h.control);
    epoll->Remove(h.data);
    hooks_.link_failed(link, why);
  };

  // Everything the peer wrote, for a link that is going away.
  auto drain_rest = [&](const std::shared_ptr<Transport>& link) {
    // A caller that borrowed the consumer role (Transport::BorrowConsumer) gives
    // it back within one short drain of its responses.
    for (int i = 0; i < 10'000 && link->ConsumerLent(); ++i) sched_yield();
    // A frame a full subscription refuses is left: the link is going.
    (void)link->Drain(~size_t{0} >> 1, [&](absl::string_view frame) {
      (void)dispatch.Route(link, frame);
      return true;
    });
    dispatch.Flush();
  };

  // Link i's socket is readable: control messages, or EOF.
  auto read_control = [&](const std::shared_ptr<Transport>& link, int budget) {
    for (int read_count = 0; read_count < budget && !link->down(); ++read_count) {
      absl::StatusOr<std::optional<ControlMessage>> read = link->ReadControl();
      if (!read.ok()) {
        // Deliver what the peer wrote before it went away, then retire it.
        drain_rest(link);
        fail_link(link, absl::IsUnavailable(read.status())
                            ? std::string("peer closed the link socket")
                            : absl::StrCat("peer broke the control protocol: ", read.status().message()));
        return;
      }
      if (!read->has_value()) return;
      const mesh::v1::LinkControl& msg = (*read)->message;
      switch (msg.body_case()) {
        case mesh::v1::LinkControl::kGoodbye:
          drain_rest(link);
          if (hooks_.peer_left) hooks_.peer_left(*link);
          fail_link(link, absl::StrCat("peer left the mesh (", absl::CHexEscape(msg.goodbye().reason()), ")"));
          return;
        case mesh::v1::LinkControl::kPing: {
          mesh::v1::LinkControl pong;
          pong.mutable_pong()->set_token(msg.ping().token());
          // A peer that does not read its socket gets no answer: never wait.
          if (link->SendControl(pong).ok()) BumpCounter(counters_.pings_answered);
          break;
        }
        case mesh::v1::LinkControl::kPong:
          BumpCounter(counters_.pongs);
          break;
        case mesh::v1::LinkControl::kPoolSegment: {
          const absl::Status added =
              hooks_.inboxes != nullptr
                  ? hooks_.inboxes->Get(link)->AddSegment(msg.pool_segment(), std::move((*read)->fds))
                  : absl::UnimplementedError("this node takes no pool segments");
          if (!added.ok()) {
            drain_rest(link);
            fail_link(link, absl::StrCat("peer broke the pool protocol: ", added.message()));
            return;
          }
          break;
        }
        case mesh::v1::LinkControl::kPoolRetire:
          if (hooks_.inboxes != nullptr) hooks_.inboxes->Get(link)->RetireSegment(msg.pool_retire().id());
          break;
        case mesh::v1::LinkControl::kSharedRing: {
          const absl::Status added = shared_.has_value()
                                         ? shared_->Add(link, msg.shared_ring(), std::move((*read)->fds))
                                         : absl::UnimplementedError("this node takes no shared rings");
          if (!added.ok()) {
            drain_rest(link);
            fail_link(link, absl::StrCat("peer broke the shared ring protocol: ", added.message()));
            return;
          }
          break;
        }
        case mesh::v1::LinkControl::kSharedRingEnd:
          if (shared_.has_value()) shared_->Remove(link.get(), msg.shared_ring_end().channel());
          break;
        default: {
          const absl::Status routed = hooks_.router != nullptr
                                          ? hooks_.router->RouteControl(link, msg)
                                          : absl::UnimplementedError("no router");
          if (absl::IsUnimplemented(routed)) {
            BumpCounter(counters_.control_ignored);
          } else if (!routed.ok()) {
            drain_rest(link);
            fail_link(link, absl::StrCat("peer broke the control protocol: ", routed.message()));
            return;
          }
          break;
        }
      }
    }
  };

  auto drain_all = [&]() -> bool {
    bool any = false;
    for (size_t i = 0; i < active.size(); ++i) {
      const auto& link = active[i];
      if (link->down()) continue;
      if (queue_full()) break;
      if (held[i]) continue;  // a subscription of its next frame is full
      bool refused = false;
      auto n = link->Drain(kDrainBatch, [&](absl::string_view frame) {
        if (dispatch.Route(link, frame)) return true;
        refused = true;
        return false;
      });
      dispatch.Flush();
      if (refused && hooks_.inboxes != nullptr && hooks_.inboxes->Get(link)->awaiting_control) {
        // A reference to a segment whose PoolSegment is still in the link
        // socket: read it now; the next pass offers the frame again.
        read_control(link, /*budget=*/4096);
        refused = false;
        any = true;
      }
      if (refused) held[i] = 1;
      if (!n.ok()) {
        fail_link(link, absl::StrCat("ring corrupted: ", n.status().message()));
      } else if (*n > 0) {
        any = true;
      }
      if (rang[i]) {  // rare: only after a wake-up by this doorbell
        // (A link whose consumer role is lent was not looked at.)
        if (n.ok() && *n == 0 && !refused && !link->ConsumerLent()) note_idle_wake(i);
        rang[i] = 0;
      }
    }
    if (shared_.has_value() && shared_->size() > 0) {
      const bool got = shared_->Drain(
          kDrainBatch,
          [&](const std::shared_ptr<Transport>& link, uint32_t channel, absl::string_view topic,
              absl::string_view payload) { return dispatch.RouteShared(link, channel, topic, payload); },
          [&](const Transport& link, absl::string_view topic, const absl::Status& why) {
            if (absl::IsOutOfRange(why)) {  // its publisher is gone, and we read it all: its end
              log_->Debug("shared ring of topic %s from %s ended", absl::CHexEscape(topic), link.peer_name());
              return;
            }
            BumpCounter(counters_.shared_rings_dropped);
            log_->Warning("dropped the shared ring of topic %s from %s: %s", absl::CHexEscape(topic),
                          link.peer_name(), why.message());
          });
      any = any || got;
    }
    return any;
  };

  auto handle_events = [&](int n) {
    for (int i = 0; i < n; ++i) {
      const uint64_t tag = events[i].data.u64;
      if (tag == kTagWake) {
        (void)base::DrainEventFd(wake_.get());
        held.assign(held.size(), 0);  // offer the refused frames again
        if (shared_.has_value()) shared_->Unhold();
        continue;
      }
      if (tag == kTagShared) {
        if (shared_.has_value()) shared_->ClearDoorbells();
        continue;
      }
      const size_t index = (tag - 2) / 2;
      if (index >= active.size()) continue;
      const auto& link = active[index];
      if (link->down()) continue;
      if (tag % 2 == 0) {
        read_control(link, 64);
      } else if (absl::Status cleared = link->ClearDoorbell(); !cleared.ok()) {
        // The peer's end of the doorbell is gone: it exited (its link socket
        // says so too, maybe in this same batch) or hung up its doorbell.
        drain_rest(link);
        fail_link(link, cleared.message());
      } else {
        rang[index] = 1;
      }
    }
  };

  auto retire_leavers = [&] {
    // acquire pairs with the release store in Leave. A plain load first:
    // the exchange (a locked read-modify-write) only when set.
    if (!leaving_pending_.load(std::memory_order_acquire)) return;
    // acquire: as above; the exchange claims the batch of leavers.
    if (!leaving_pending_.exchange(false, std::memory_order_acquire)) return;
    std::vector<std::shared_ptr<Transport>> leaving;
    {
      absl::MutexLock lock(&leave_mu_);
      leaving.swap(leaving_);
    }
    for (const auto& link : leaving) {
      // Its Goodbye (sent before its Leave) is read first: it says the
      // peer left for good (Hooks::peer_left).
      read_control(link, 64);
      if (link->down()) continue;
      drain_rest(link);
      fail_link(link, "peer left the mesh");
    }
  };

  auto check_sockets = [&](int64_t now) {
    next_hangup_check_ns = now + kHangupCheckNs;
    handle_events(epoll->Wait(events, 64, 0));
  };

  while (!stopping()) {
    refresh();
    retire_leavers();
    const bool drained = drain_all();
    // Releases of the pool payloads delivered in this pass, one frame per
    // link (those an application thread left for us too).
    if (hooks_.inboxes != nullptr && hooks_.inboxes->AnyPending()) (void)hooks_.inboxes->FlushAll();
    if (drained) {
      idle.Busy();
      // A stream that never pauses still gets its sockets looked at.
      if (++busy_passes % kBusyPassesPerClockRead == 0) {
        const int64_t now = SteadyNowNs();
        if (now >= next_hangup_check_ns + (kBusyCheckNs - kHangupCheckNs)) check_sockets(now);
      }
      continue;
    }
    if (queue_full()) {
      handle_events(epoll->Wait(events, 64, 10));
      continue;
    }
    // Nothing to read. Keep spinning while recently active (or forever with
    // SPIN), looking at the sockets once the links are quiet.
    const IdleWait::Step step = idle.Next();
    if (step.action != IdleWait::Action::kSleep) {
      if (step.quiet_ns >= kQuietBeforeCheckNs && step.now_ns >= next_hangup_check_ns) check_sockets(step.now_ns);
      if (step.action == IdleWait::Action::kYield) {
        sched_yield();
      } else {
        ringbuf::CpuRelax();
      }
      continue;
    }
    // Going to sleep: announce it on every ring, then re-check; a producer
    // that wrote after our check sees the flag and rings the doorbell.
    bool data_arrived = false;
    bool any_held = false;
    for (size_t i = 0; i < active.size(); ++i) {
      if (held[i]) {  // its frame is there: it would never let us sleep
        any_held = true;
        continue;
      }
      if (!active[i]->down() && !active[i]->PrepareToSleep()) data_arrived = true;
    }
    if (shared_.has_value() && !shared_->PrepareToSleep(&any_held)) data_arrived = true;
    if (data_arrived) continue;
    // With a muted doorbell, poll: its ring is drained at least every
    // kMutedPollMs (and a held link is offered again that often, should a
    // wake-up be lost).
    // Releases left for a full ring: try again every kMutedPollMs.
    const bool releases_left = hooks_.inboxes != nullptr && hooks_.inboxes->AnyPending();
    const bool polling = any_muted() || any_held || releases_left;
    handle_events(epoll->Wait(events, 64, polling ? kMutedPollMs : -1));
    if (polling) {
      unmute_expired();
      held.assign(held.size(), 0);
      if (shared_.has_value()) shared_->Unhold();
    }
    // A wake-up that brings nothing (spurious, or a hostile doorbell) goes
    // straight back to sleep; one that brings data calls idle.Busy().
    idle.WokeUp();
  }
}

}  // namespace mesh
