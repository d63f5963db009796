#include "tests/worker_pubsub.h"

#include <algorithm>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/worker_wire.h"

ABSL_FLAG(std::vector<std::string>, publish, {},
          "Topics to publish, comma-separated; 'topic@N' first waits for N matching subscribers (MATCHED line).");
ABSL_FLAG(int32_t, pub_count, 0,
          "Messages per topic: K > 0 publishes K then PUB_DONE; 0 streams until 'pubstop'; -1 publishes only on "
          "'pub N' commands.");
ABSL_FLAG(int32_t, pub_batch, 1, "Stream mode: messages per topic per round.");
ABSL_FLAG(int32_t, pub_interval_us, 1000, "Stream mode: pause between rounds.");
ABSL_FLAG(int32_t, pub_history, 0, "PublisherOptions::history of every publisher.");
ABSL_FLAG(bool, pub_best_effort, false, "Publish best effort instead of reliable.");
ABSL_FLAG(int32_t, pub_payload_bytes, 64, "Payload bytes per publication (besides the header).");
ABSL_FLAG(int32_t, pub_timeout_ms, 20000, "Deadline of each Publish.");
ABSL_FLAG(int32_t, pub_wait_ms, 60000, "How long 'topic@N' waits for its subscribers.");
ABSL_FLAG(std::vector<std::string>, subscribe, {}, "Patterns to subscribe to at start, comma-separated.");
ABSL_FLAG(bool, pull, false, "Subscribe in the pull form (a Receive thread per subscription).");
ABSL_FLAG(int32_t, sub_delay_us, 0, "Sleep this long per topic message (a slow subscriber).");
ABSL_FLAG(int32_t, sub_queue_depth, 0, "SubscribeOptions::queue_depth of pull subscriptions (0: the default).");

namespace meshworker {

struct PubSubAgent::Pub {
  std::string topic;
  size_t wait_subs = 0;
  std::string name_field;  // "<node>|<topic>"
  std::unique_ptr<mesh::Publisher> pub;
  // Publisher thread only while publishing; read by Report under mu_.
  uint64_t seq = 0;  // the next to publish = how many were published
  uint64_t failed = 0, partial = 0, bytes = 0;
};

struct PubSubAgent::SubState {
  std::string pattern;
  int gen = 0;
  // Set once the Subscription's destructor returned: a delivery after it
  // is an error (the contract says the handler is never called again).
  std::atomic<bool> dead{false};
  // Pull form: tells the Receive thread to end.
  std::atomic<bool> stop{false};
};

struct PubSubAgent::Sub {
  std::shared_ptr<SubState> state;
  std::unique_ptr<mesh::Subscription> sub;
  std::thread puller;
};

PubSubAgent::PubSubAgent(mesh::Node* node) : node_(node) {}

PubSubAgent::~PubSubAgent() { Shutdown(); }

absl::StatusOr<std::unique_ptr<PubSubAgent>> PubSubAgent::FromFlags(mesh::Node* node) {
  std::unique_ptr<PubSubAgent> agent(new PubSubAgent(node));
  for (const std::string& spec : absl::GetFlag(FLAGS_publish)) {
    if (spec.empty()) continue;
    auto p = std::make_unique<Pub>();
    std::vector<std::string> parts = absl::StrSplit(spec, absl::MaxSplits('@', 1));
    p->topic = parts[0];
    if (parts.size() == 2 && !absl::SimpleAtoi(parts[1], &p->wait_subs)) {
      return absl::InvalidArgumentError(absl::StrCat("--publish entry '", spec, "': want topic or topic@N"));
    }
    p->name_field = absl::StrCat(node->name(), "|", p->topic);
    agent->pubs_.push_back(std::move(p));
  }
  for (const std::string& pattern : absl::GetFlag(FLAGS_subscribe)) {
    if (!pattern.empty()) agent->initial_patterns_.push_back(pattern);
  }
  return agent;
}

absl::Status PubSubAgent::Start() {
  mesh::PublisherOptions options;
  options.history = static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_pub_history)));
  if (absl::GetFlag(FLAGS_pub_best_effort)) options.reliability = mesh::PublisherOptions::Reliability::kBestEffort;
  for (auto& p : pubs_) {
    const std::string topic = p->topic;
    options.on_matched = [topic](size_t matched) {
      Emit(absl::StrCat("ON_MATCHED ", topic, " ", matched, " ", MonotonicNs()));
    };
    auto pub = node_->Advertise(p->topic, options);
    if (!pub.ok()) return absl::Status(pub.status().code(), absl::StrCat("advertise ", topic, ": ", pub.status().message()));
    p->pub = std::move(*pub);
    Emit(absl::StrCat("ADVERTISED ", topic));
  }
  for (const std::string& pattern : initial_patterns_) {
    absl::Status s = Subscribe(pattern, absl::GetFlag(FLAGS_pull));
    if (!s.ok()) return s;
  }
  if (!pubs_.empty()) {
    const int count = absl::GetFlag(FLAGS_pub_count);
    {
      absl::MutexLock lock(&mu_);
      if (count > 0) pending_ = static_cast<uint64_t>(count);
      streaming_ = count == 0;
    }
    publisher_ = std::thread([this] { PublishLoop(); });
  }
  return absl::OkStatus();
}

absl::Status PubSubAgent::Subscribe(const std::string& pattern, bool pull) {
  auto state = std::make_shared<SubState>();
  state->pattern = pattern;
  {
    absl::MutexLock lock(&mu_);
    state->gen = next_gen_++;
  }
  const absl::Duration delay = absl::Microseconds(absl::GetFlag(FLAGS_sub_delay_us));
  mesh::SubscribeOptions options;
  if (absl::GetFlag(FLAGS_sub_queue_depth) > 0) options.queue_depth = static_cast<size_t>(absl::GetFlag(FLAGS_sub_queue_depth));
  absl::StatusOr<std::unique_ptr<mesh::Subscription>> sub =
      pull ? node_->Subscribe(pattern, options)
           : node_->Subscribe(pattern, [this, state, delay](const mesh::MessageView& m) {
               if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
               OnMessage(*state, m.from, m.topic, m.payload);
             });
  if (!sub.ok()) {
    return absl::Status(sub.status().code(), absl::StrCat("subscribe ", pattern, ": ", sub.status().message()));
  }
  auto entry = std::make_unique<Sub>();
  entry->state = state;
  entry->sub = std::move(*sub);
  if (pull) {
    mesh::Subscription* s = entry->sub.get();
    entry->puller = std::thread([this, state, s, delay] {
      while (!state->stop.load()) {
        if (pull_paused_.load()) {
          absl::SleepFor(absl::Milliseconds(2));
          continue;
        }
        absl::StatusOr<mesh::Message> m = s->Receive(absl::Now() + absl::Milliseconds(50));
        if (m.ok()) {
          if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
          OnMessage(*state, m->from, m->topic, m->payload);
        } else if (!absl::IsDeadlineExceeded(m.status())) {
          if (!absl::IsCancelled(m.status())) Emit(absl::StrCat("ERROR receive ", state->pattern, ": ", m.status().ToString()));
          return;
        }
      }
    });
  }
  Emit(absl::StrCat("SUBSCRIBED ", pattern, " gen=", state->gen, " ns=", MonotonicNs()));
  absl::MutexLock lock(&mu_);
  subs_.push_back(std::move(entry));
  return absl::OkStatus();
}

void PubSubAgent::Unsubscribe(const std::string& pattern) {
  std::unique_ptr<Sub> victim;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = subs_.begin(); it != subs_.end(); ++it) {
      if ((*it)->state->pattern == pattern) {
        victim = std::move(*it);
        subs_.erase(it);
        break;
      }
    }
  }
  if (victim == nullptr) {
    Emit(absl::StrCat("ERROR unsub ", pattern, ": not subscribed"));
    return;
  }
  // Not under mu_: the destructor waits for a running handler, which takes it.
  victim->state->stop.store(true);
  if (victim->puller.joinable()) victim->puller.join();
  // Unsubscribe first, then read: a message delivered between reading the
  // count and unsubscribing would be in the stream but not in the count.
  victim->sub->Unsubscribe();
  const uint64_t received = victim->sub->received();
  victim->sub.reset();
  victim->state->dead.store(true);
  Emit(absl::StrCat("UNSUBSCRIBED ", pattern, " gen=", victim->state->gen, " received=", received));
}

void PubSubAgent::OnMessage(SubState& sub, absl::string_view from, absl::string_view topic,
                            absl::string_view payload) {
  // The payload may be shared memory the sender can still write: copy first.
  const std::string copy(payload);
  Decoded d;
  absl::Status s = Decode(copy, absl::StrCat(from, "|", topic), &d);
  if (s.ok() && !TopicMatches(sub.pattern, topic)) {
    s = absl::DataLossError(absl::StrCat("topic '", topic, "' does not match the pattern"));
  }
  if (s.ok() && sub.dead.load()) s = absl::DataLossError("delivered after the subscription was destroyed");
  std::string first_line, error_line;
  {
    absl::MutexLock lock(&mu_);
    StreamKey key(sub.pattern, sub.gen, std::string(from), d.sender_id, std::string(topic));
    auto [it, inserted] = rx_.emplace(key, RxStream{});
    RxStream& r = it->second;
    if (inserted) {
      r.first = d.seq;
      r.next = d.seq;
      first_line = absl::StrCat("TFIRST ", sub.pattern, " gen=", sub.gen, " ", from, " id=", Hex(d.sender_id),
                                " topic=", topic, " seq=", d.seq, " ns=", MonotonicNs());
    }
    ++r.received;
    r.bytes += payload.size();
    if (s.ok() && d.seq != r.next) s = absl::DataLossError(absl::StrCat("seq ", d.seq, " where ", r.next, " was due"));
    if (s.ok()) {
      r.last = d.seq;
      r.next = d.seq + 1;
    } else {
      ++r.errors;
      if (d.seq >= r.next) r.next = d.seq + 1;  // resync, count each gap once
      if (logged_errors_++ < 20) {
        error_line = absl::StrCat("TBAD ", sub.pattern, " gen=", sub.gen, " ", from, " topic=", topic, " ", s.message());
      }
    }
  }
  if (!first_line.empty()) Emit(first_line);
  if (!error_line.empty()) Emit(error_line);
}

bool PubSubAgent::PublishOne(Pub& p) {
  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    seq = p.seq;
  }
  const std::string msg = Encode(seq, node_->id(), p.name_field, absl::GetFlag(FLAGS_pub_payload_bytes));
  absl::StatusOr<mesh::PublishResult> r =
      p.pub->Publish(msg, absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_pub_timeout_ms)));
  std::string line;
  {
    absl::MutexLock lock(&mu_);
    if (!r.ok()) {
      if (p.failed++ == 0) line = absl::StrCat("PUB_FAILED ", p.topic, " ", r.status().ToString());
      return false;
    }
    ++p.seq;
    p.bytes += msg.size();
    if (!r->not_reached.empty() && p.partial++ == 0) {
      line = absl::StrCat("PUB_NOT_REACHED ", p.topic, " ", r->not_reached[0].first, " ",
                          r->not_reached[0].second.ToString());
    }
  }
  if (!line.empty()) Emit(line);
  return true;
}

void PubSubAgent::PublishLoop() {
  const absl::Time wait_deadline = absl::Now() + absl::Milliseconds(absl::GetFlag(FLAGS_pub_wait_ms));
  for (auto& p : pubs_) {
    if (p->wait_subs == 0) continue;
    absl::Status s = p->pub->WaitForSubscribers(p->wait_subs, wait_deadline);
    if (!s.ok()) {
      Emit(absl::StrCat("ERROR wait for subscribers of ", p->topic, ": ", s.ToString()));
      return;
    }
    Emit(absl::StrCat("MATCHED ", p->topic, " n=", p->pub->matched(), " subs=", absl::StrJoin(p->pub->subscribers(), ",")));
  }
  const int batch = std::max(1, absl::GetFlag(FLAGS_pub_batch));
  const absl::Duration interval = absl::Microseconds(absl::GetFlag(FLAGS_pub_interval_us));
  for (;;) {
    uint64_t todo;
    bool stream;
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return quit_ || pending_ > 0 || streaming_; };
      mu_.Await(absl::Condition(&work));
      if (quit_) return;
      stream = streaming_;
      todo = stream ? static_cast<uint64_t>(batch) : pending_;
    }
    for (uint64_t k = 0; k < todo; ++k) {
      for (auto& p : pubs_) {
        // A failed Publish is retried with the same seq: no gap for anyone.
        while (!PublishOne(*p)) {
          {
            absl::MutexLock lock(&mu_);
            if (quit_) return;
          }
          absl::SleepFor(absl::Milliseconds(1));
        }
      }
    }
    if (stream) {
      absl::SleepFor(interval);
      absl::MutexLock lock(&mu_);
      if (streaming_ || quit_) continue;
    } else {
      absl::MutexLock lock(&mu_);
      pending_ -= todo;
      if (pending_ > 0) continue;
    }
    PrintPublished();
    Emit(stream ? "PUB_STOPPED" : "PUB_DONE");
  }
}

void PubSubAgent::PrintPublished() {
  std::vector<std::string> lines;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& p : pubs_) {
      lines.push_back(absl::StrCat("PUBLISHED ", p->topic, " id=", Hex(node_->id()), " published=", p->seq,
                                   " failed=", p->failed, " partial=", p->partial, " bytes=", p->bytes,
                                   " matched=", p->pub == nullptr ? 0 : p->pub->matched(),
                                   " core_published=", p->pub == nullptr ? 0 : p->pub->published_messages()));
    }
  }
  for (const auto& l : lines) Emit(l);
}

bool PubSubAgent::HandleCommand(const std::string& cmd) {
  std::vector<std::string> w = absl::StrSplit(cmd, ' ', absl::SkipEmpty());
  if (w.empty()) return false;
  if ((w[0] == "sub" || w[0] == "psub") && w.size() == 2) {
    absl::Status s = Subscribe(w[1], w[0] == "psub" || absl::GetFlag(FLAGS_pull));
    if (!s.ok()) Emit(absl::StrCat("ERROR ", s.ToString()));
    return true;
  }
  if (w[0] == "unsub" && w.size() == 2) {
    Unsubscribe(w[1]);
    return true;
  }
  if (w[0] == "pub" && w.size() == 2) {
    uint64_t n = 0;
    if (!absl::SimpleAtoi(w[1], &n) || pubs_.empty()) {
      Emit(absl::StrCat("ERROR bad command '", cmd, "'"));
      return true;
    }
    absl::MutexLock lock(&mu_);
    pending_ += n;
    return true;
  }
  if ((w[0] == "pullpause" || w[0] == "pullresume") && w.size() == 1) {
    pull_paused_.store(w[0] == "pullpause");
    Emit(absl::StrCat(w[0] == "pullpause" ? "PULL_PAUSED" : "PULL_RESUMED"));
    return true;
  }
  if (w[0] == "pubstop" && w.size() == 1) {
    absl::MutexLock lock(&mu_);
    if (!streaming_) {
      Emit("PUB_STOPPED");
    }
    streaming_ = false;  // the publisher thread prints PUBLISHED and PUB_STOPPED
    return true;
  }
  return false;
}

void PubSubAgent::Report() {
  PrintPublished();
  std::vector<std::string> lines;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& s : subs_) {
      lines.push_back(absl::StrCat("SUBS ", s->state->pattern, " gen=", s->state->gen, " received=", s->sub->received()));
    }
    for (const auto& [k, r] : rx_) {
      const auto& [pattern, gen, from, id, topic] = k;
      lines.push_back(absl::StrCat("TRESULT ", pattern, " gen=", gen, " ", from, " id=", Hex(id), " topic=", topic,
                                   " received=", r.received, " errors=", r.errors, " bytes=", r.bytes,
                                   " first=", r.first, " last=", r.last));
    }
  }
  for (const auto& l : lines) Emit(l);
}

void PubSubAgent::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (quit_) return;
    quit_ = true;
  }
  if (publisher_.joinable()) publisher_.join();
  Report();
  std::vector<std::unique_ptr<Sub>> subs;
  {
    absl::MutexLock lock(&mu_);
    subs.swap(subs_);
  }
  for (auto& s : subs) {
    s->state->stop.store(true);
    if (s->puller.joinable()) s->puller.join();
    s->sub.reset();
    s->state->dead.store(true);
  }
  for (auto& p : pubs_) p->pub.reset();
}

}  // namespace meshworker
