// Multi-process tests of topics (mesh/topic.h): every node is a real
// mesh_worker process (tests/worker_pubsub.h is its topic mode) with its own
// rings, link sockets and gRPC server; publishers number their messages per
// topic and checksum them, and subscribers check every one (sender, topic,
// pattern, checksum, and that each is exactly one after the previous of
// its stream), so loss, duplication, reordering, corruption and delivery to
// the wrong subscriber all show up in the counters compared here.
//
// Thread contract: tests run on the main thread; each Worker has one
// reader thread (worker_process.h).
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/topic_streams.h"
#include "tests/worker_fixture.h"
#include "tests/worker_process.h"
#include "tests/worker_wire.h"

namespace meshtest {
namespace {

// The bound the tests hold for a subscription to take effect (link or
// subscription up -> first message). mesh/pubsub/README.md states 250 ms
// for a publication after Subscribe returned (typically well under a
// millisecond); 1 s leaves room for a loaded 2-core machine under
// sanitizers, and the measured values are printed.
constexpr int64_t kConvergeBoundNs = 1000 * 1000 * 1000;

// ---------------------------------------------------------------------------
// 8 processes, 3 publishers of 5 topics, subscribers with overlapping
// patterns ('*', '**', exact), one whose patterns match nothing, and a
// publisher whose only match is its own topic: each subscription gets
// exactly the messages of every topic it matches, from 0 to the last, in
// order; nobody gets anything else.

struct NodeSpec {
  std::string name;
  std::vector<std::string> publish;
  std::vector<std::string> subscribe;
  bool pull = false;
};

TEST_F(TopicsTest, EverySubscriberGetsExactlyTheMatchingStreamsInOrder) {
  constexpr uint64_t kCount = 300;
  constexpr uint64_t kPayload = 200;
  const std::vector<NodeSpec> specs = {
      {"pa", {"cam/front", "cam/back"}, {"robot/*/status"}},
      {"pb", {"robot/arm/status"}, {}},
      {"pc", {"robot/leg/status", "log"}, {"log/**"}},  // matches only its own topic
      {"s1", {}, {"cam/*"}},
      {"s2", {}, {"**"}, /*pull=*/true},
      {"s3", {}, {"robot/**/status", "cam/front"}},
      {"s4", {}, {"robot/*", "logs", "cam"}},  // matches nothing published
      {"s5", {}, {"log", "cam/**"}},
  };
  // Who must match each topic: the other nodes with a matching pattern
  // (the oracle is worker_wire.h's matcher, not mesh/pubsub's).
  std::map<std::string, std::set<std::string>> subscribers_of;
  for (const NodeSpec& p : specs) {
    for (const std::string& t : p.publish) {
      std::set<std::string>& subs = subscribers_of[t];
      for (const NodeSpec& s : specs) {
        if (s.name == p.name) continue;
        for (const std::string& pattern : s.subscribe) {
          if (meshworker::TopicMatches(pattern, t)) subs.insert(s.name);
        }
      }
    }
  }
  ASSERT_EQ(subscribers_of["cam/front"], (std::set<std::string>{"s1", "s2", "s3", "s5"}));
  ASSERT_EQ(subscribers_of["log"], (std::set<std::string>{"s2", "s5"}));

  std::map<std::string, Worker*> w;
  for (const NodeSpec& s : specs) {
    std::vector<std::string> pubs;
    for (const std::string& t : s.publish) pubs.push_back(absl::StrCat(t, "@", subscribers_of[t].size()));
    std::vector<std::string> args = {"--nosend", "--peers=7", absl::StrCat("--pub_count=", kCount),
                                     absl::StrCat("--pub_payload_bytes=", kPayload),
                                     "--publish=" + absl::StrJoin(pubs, ","),
                                     "--subscribe=" + absl::StrJoin(s.subscribe, ",")};
    if (s.pull) args.push_back("--pull");
    w[s.name] = Launch(s.name, s.name == "pa" ? std::vector<std::string>{} : std::vector<std::string>{"pa"}, args);
    ASSERT_NE(w[s.name], nullptr);
  }
  for (auto& [name, x] : w) ASSERT_TRUE(x->WaitReady()) << name;

  // Publishers: matched exactly the expected nodes, published everything.
  for (const NodeSpec& s : specs) {
    for (const std::string& t : s.publish) {
      const std::string m = Expect(w[s.name], "MATCHED " + t + " ", "subscribers matched", absl::Seconds(60));
      Fields f = Parse(m);
      EXPECT_EQ(f.kv["subs"], absl::StrJoin(subscribers_of[t], ",")) << m;
    }
    if (s.publish.empty()) continue;
    for (const std::string& t : s.publish) {
      EXPECT_EQ(Published(w[s.name], t, 0, "PUB_DONE"), kCount) << s.name << " " << t;
    }
  }

  // Subscribers: poll until every expected stream is complete, then the
  // streams must be exactly the expected ones, each whole.
  for (const NodeSpec& s : specs) {
    std::map<TKey, uint64_t> expected;  // key -> bytes
    for (size_t gen = 0; gen < s.subscribe.size(); ++gen) {
      for (const NodeSpec& p : specs) {
        if (p.name == s.name) continue;
        for (const std::string& t : p.publish) {
          if (!meshworker::TopicMatches(s.subscribe[gen], t)) continue;
          expected[TKey{s.subscribe[gen], static_cast<int>(gen), p.name, IdHex(w[p.name]->id()), t}] =
              StreamBytes(p.name, t, kCount, kPayload);
        }
      }
    }
    std::vector<std::string> lines;
    const bool complete = ReportUntil(
        w[s.name],
        [&](const std::vector<std::string>& l) {
          const auto got = ParseTResults(l);
          for (const auto& [k, bytes] : expected) {
            auto it = got.find(k);
            if (it == got.end() || it->second.received < kCount) return false;
          }
          return true;
        },
        kStepTimeout, &lines);
    EXPECT_TRUE(complete) << s.name << " did not get every stream:\n" << absl::StrJoin(lines, "\n");
    const auto got = ParseTResults(lines);
    std::set<TKey> got_keys, expected_keys;
    for (const auto& [k, v] : got) got_keys.insert(k);
    for (const auto& [k, v] : expected) expected_keys.insert(k);
    EXPECT_EQ(got_keys, expected_keys) << s.name << " got streams it must not, or missed some:\n"
                                       << absl::StrJoin(lines, "\n");
    std::map<std::pair<std::string, int>, uint64_t> per_sub;
    for (const auto& [k, st] : got) {
      EXPECT_EQ(st.received, kCount) << s.name << " from " << st.from << " on " << st.topic;
      EXPECT_EQ(st.errors, 0u) << s.name << " from " << st.from << " on " << st.topic
                               << ": lost, duplicated, reordered, corrupt or misdelivered";
      EXPECT_EQ(st.first, 0u) << s.name << " " << st.topic;
      EXPECT_EQ(st.last, kCount - 1) << s.name << " " << st.topic;
      if (expected.count(k)) {
        EXPECT_EQ(st.bytes, expected[k]) << s.name << " " << st.topic;
      }
      per_sub[{st.pattern, st.gen}] += st.received;
    }
    // The core's own count per subscription agrees with what arrived.
    for (const std::string& l : WithPrefix(lines, "SUBS ")) {
      Fields f = Parse(l);
      const std::pair<std::string, int> sub(f.words[1], static_cast<int>(f.U64("gen")));
      EXPECT_EQ(f.U64("received"), per_sub[sub]) << s.name << ": " << l;
    }
    EXPECT_EQ(WithPrefix(lines, "SUBS ").size(), s.subscribe.size()) << s.name;
  }
  // Nothing published matched s4 or pc's own subscription: not one message.
  EXPECT_TRUE(ParseTResults(Report(w["s4"])).empty());
  EXPECT_TRUE(ParseTResults(Report(w["pc"])).empty());
  ExpectNoBadMessages();
  StopAllAndCheckClean();
}

// ---------------------------------------------------------------------------
// Subscription changes while a publisher streams: unsubscribing stops the
// stream (the publisher's matched count drops to 0, no message reaches the
// destroyed subscription), subscribing again starts a new one with only
// new messages (no history here), two overlapping subscriptions of one
// node each get every message, and dropping one leaves the other whole.

TEST_F(TopicsTest, SubscribeUnsubscribeAndResubscribeWhilePublishing) {
  // live/data@1: streaming starts once s matched, so s gets it from seq 0.
  Worker* p = LaunchReady("p", {}, {"--nosend", "--publish=live/data@1", "--pub_count=0", "--pub_interval_us=1000",
                                    "--pub_batch=2"});
  ASSERT_NE(p, nullptr);
  Worker* s = LaunchReady("s", {"p"}, {"--nosend", "--peers=1", "--subscribe=live/*"});
  ASSERT_NE(s, nullptr);
  Expect(s, "TFIRST live/* gen=0 ", "first message");
  absl::SleepFor(absl::Milliseconds(150));

  size_t mark_p = p->LineCount(), mark_s = s->LineCount();
  const int64_t t_unsub = MonotonicNs();
  ASSERT_TRUE(s->Command("unsub live/*"));
  Expect(s, "UNSUBSCRIBED live/* gen=0 ", "unsubscribed", kStepTimeout, mark_s);
  const std::string zero = Expect(p, "ON_MATCHED live/data 0 ", "publisher saw the unsubscribe", kStepTimeout, mark_p);
  if (!zero.empty()) std::printf("unsubscribe -> publisher matched 0: %.2f ms\n", (OnMatchedNs(zero) - t_unsub) / 1e6);
  absl::SleepFor(absl::Milliseconds(200));  // the publisher goes on, to nobody

  mark_p = p->LineCount();
  mark_s = s->LineCount();
  ASSERT_TRUE(s->Command("sub live/**"));
  const std::string subscribed = Expect(s, "SUBSCRIBED live/** gen=1 ", "subscribed again", kStepTimeout, mark_s);
  const std::string first = Expect(s, "TFIRST live/** gen=1 ", "first message again", kStepTimeout, mark_s);
  if (!first.empty() && !subscribed.empty()) {
    const int64_t took = Ns(first) - Ns(subscribed);
    std::printf("Subscribe returned -> first message: %.2f ms\n", took / 1e6);
    EXPECT_LT(took, kConvergeBoundNs);
  }
  ASSERT_TRUE(s->Command("sub live/data"));
  Expect(s, "TFIRST live/data gen=2 ", "overlapping subscription", kStepTimeout, mark_s);
  absl::SleepFor(absl::Milliseconds(150));
  ASSERT_TRUE(s->Command("unsub live/**"));
  Expect(s, "UNSUBSCRIBED live/** gen=1 ", "unsubscribed the overlap", kStepTimeout, mark_s);
  absl::SleepFor(absl::Milliseconds(150));

  mark_p = p->LineCount();
  ASSERT_TRUE(p->Command("pubstop"));
  const uint64_t n = Published(p, "live/data", mark_p, "PUB_STOPPED");
  ASSERT_GT(n, 0u);
  std::vector<std::string> lines;
  EXPECT_TRUE(ReportUntil(
      s,
      [&](const std::vector<std::string>& l) {
        const std::optional<TStream> g2 = Find(ParseTResults(l), "live/data", 2, p, "live/data");
        return g2.has_value() && g2->last + 1 >= n;
      },
      kStepTimeout, &lines))
      << absl::StrJoin(lines, "\n");
  const auto got = ParseTResults(lines);
  const std::optional<TStream> g0 = Find(got, "live/*", 0, p, "live/data");
  const std::optional<TStream> g1 = Find(got, "live/**", 1, p, "live/data");
  const std::optional<TStream> g2 = Find(got, "live/data", 2, p, "live/data");
  ASSERT_TRUE(g0 && g1 && g2) << absl::StrJoin(lines, "\n");
  EXPECT_EQ(got.size(), 3u) << absl::StrJoin(lines, "\n");
  for (const std::optional<TStream>& g : {g0, g1, g2}) {
    EXPECT_EQ(g->errors, 0u) << g->pattern << ": a gap, a duplicate, or a delivery after unsubscribe";
    EXPECT_EQ(g->received, g->last - g->first + 1) << g->pattern;
  }
  EXPECT_EQ(g0->first, 0u) << "subscribed before the first publication";
  EXPECT_GT(g1->first, g0->last) << "a new subscription without history got old messages";
  EXPECT_LE(g2->first, g1->last) << "the overlapping subscriptions did not overlap";
  EXPECT_EQ(g2->last, n - 1) << "the last messages did not arrive";
  // The UNSUBSCRIBED line's count is the core's received() at that moment.
  for (const std::string& l : s->LinesWithPrefix("UNSUBSCRIBED live/* ")) EXPECT_EQ(Parse(l).U64("received"), g0->received);
  // The publisher saw one node match, then none, then one again (two
  // subscriptions of one node are one match).
  std::vector<std::string> matched;
  for (const std::string& l : p->LinesWithPrefix("ON_MATCHED live/data ")) matched.push_back(Parse(l).words[2]);
  EXPECT_EQ(matched, (std::vector<std::string>{"1", "0", "1"}));
  ExpectNoBadMessages();
  StopAllAndCheckClean();
}

// ---------------------------------------------------------------------------
// History: a subscriber that joins late gets the last `history` messages,
// oldest first, then the live stream, with no gap and no duplicate where
// the two meet, in the handler and in the pull form.

TEST_F(TopicsTest, LateSubscriberGetsTheHistoryThenTheLiveStream) {
  Worker* p = LaunchReady("p", {}, {"--nosend", "--publish=hist/live", "--pub_history=4096", "--pub_count=0",
                                    "--pub_interval_us=3000"});
  ASSERT_NE(p, nullptr);
  Worker* q = LaunchReady("q", {"p"}, {"--nosend", "--publish=hist/small", "--pub_history=10", "--pub_count=100"});
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(Published(q, "hist/small", 0, "PUB_DONE"), 100u);
  absl::SleepFor(absl::Milliseconds(300));  // p streams to nobody meanwhile

  Worker* l = LaunchReady("l", {"p"}, {"--nosend", "--peers=2", "--subscribe=hist/**"});
  Worker* m = LaunchReady("m", {"p"}, {"--nosend", "--peers=3", "--subscribe=hist/live", "--pull"});
  ASSERT_TRUE(l && m);
  for (Worker* x : {l, m}) {
    const std::string first = Expect(x, "TFIRST hist/", "history", kStepTimeout);
    if (first.find("topic=hist/live") != std::string::npos) {
      EXPECT_EQ(Parse(first).U64("seq"), 0u) << first;
    }
  }
  absl::SleepFor(absl::Milliseconds(300));  // the live stream goes on
  size_t mark_q = q->LineCount();
  ASSERT_TRUE(q->Command("pub 5"));
  EXPECT_EQ(Published(q, "hist/small", mark_q, "PUB_DONE"), 105u);
  size_t mark_p = p->LineCount();
  ASSERT_TRUE(p->Command("pubstop"));
  const uint64_t n = Published(p, "hist/live", mark_p, "PUB_STOPPED");
  ASSERT_GT(n, 100u);
  ASSERT_LT(n, 4096u) << "more than the history published: the test would prove nothing";

  for (Worker* x : {l, m}) {
    const std::string pattern = x == l ? "hist/**" : "hist/live";
    std::vector<std::string> lines;
    EXPECT_TRUE(ReportUntil(
        x,
        [&](const std::vector<std::string>& ls) {
          const auto got = ParseTResults(ls);
          const std::optional<TStream> live = Find(got, pattern, 0, p, "hist/live");
          const std::optional<TStream> small = Find(got, pattern, 0, q, "hist/small");
          return live.has_value() && live->received >= n && (x == m || (small.has_value() && small->received >= 15));
        },
        kStepTimeout, &lines))
        << x->name() << ":\n"
        << absl::StrJoin(lines, "\n");
    const auto got = ParseTResults(lines);
    const std::optional<TStream> live = Find(got, pattern, 0, p, "hist/live");
    ASSERT_TRUE(live.has_value());
    EXPECT_EQ(live->first, 0u) << x->name() << ": the history did not start at the first message";
    EXPECT_EQ(live->last, n - 1);
    EXPECT_EQ(live->received, n) << x->name() << ": history and live stream overlapped or left a gap";
    EXPECT_EQ(live->errors, 0u);
    if (x == l) {
      const std::optional<TStream> small = Find(got, pattern, 0, q, "hist/small");
      ASSERT_TRUE(small.has_value());
      // history 10 of the first 100, then the 5 published live.
      EXPECT_EQ(small->first, 90u);
      EXPECT_EQ(small->last, 104u);
      EXPECT_EQ(small->received, 15u);
      EXPECT_EQ(small->errors, 0u);
      EXPECT_EQ(got.size(), 2u);
    } else {
      EXPECT_EQ(got.size(), 1u) << "m does not subscribe to hist/small";
    }
  }
  ExpectNoBadMessages();
  StopAllAndCheckClean();
}

// ---------------------------------------------------------------------------
TEST_F(TopicsTest, KilledSubscriberAndPublisherRecoverAfterRestart) {
  const std::vector<std::string> pub_args = {"--nosend", "--publish=k/t", "--pub_history=4096", "--pub_count=0",
                                             "--pub_interval_us=3000"};
  const std::vector<std::string> sub_args = {"--nosend", "--subscribe=k/*"};
  Worker* p = LaunchReady("p", {}, pub_args);
  ASSERT_NE(p, nullptr);
  Worker* s1 = LaunchReady("s1", {"p"}, sub_args);
  Worker* s2 = LaunchReady("s2", {"p"}, sub_args);
  ASSERT_TRUE(s1 && s2);
  Expect(s1, "TFIRST k/* gen=0 p ", "first message");
  Expect(s2, "TFIRST k/* gen=0 p ", "first message");
  absl::SleepFor(absl::Milliseconds(150));

  // The subscriber s1 dies and comes back.
  size_t mark_p = p->LineCount();
  KillHard(s1);
  Expect(p, "ON_MATCHED k/t 1 ", "publisher dropped the dead subscriber", kStepTimeout, mark_p);
  Worker* s1b = LaunchReady("s1", {"p"}, sub_args);
  ASSERT_NE(s1b, nullptr);
  // Converged: from the later of its link to p and its subscription to its
  // first message.
  auto converge = [&](Worker* sub, Worker* pub) {
    const std::string id = IdHex(pub->id());
    auto up_at = sub->WaitFor(
        [&](const std::string& l) { return StartsWith(l, "PEER_UP " + pub->name() + " ") && Parse(l).kv["id"] == id; },
        kStepTimeout);
    ASSERT_TRUE(up_at.has_value()) << sub->name() << " never linked to " << pub->name() << " " << id;
    const std::string up = sub->Line(*up_at);
    const std::string first = Expect(sub, absl::StrCat("TFIRST k/* gen=0 ", pub->name(), " id=", id),
                                     "first message from the new incarnation");
    const std::vector<std::string> subscribed = sub->LinesWithPrefix("SUBSCRIBED k/* gen=0 ");
    if (up.empty() || first.empty() || subscribed.empty()) return;
    const int64_t from = std::max(Ns(up), Ns(subscribed.back()));
    const int64_t took = Ns(first) - from;
    std::printf("%s: up -> first message from %s: %.2f ms\n", sub->name().c_str(), pub->name().c_str(), took / 1e6);
    EXPECT_LT(took, kConvergeBoundNs) << sub->name();
    EXPECT_EQ(Parse(first).U64("seq"), 0u) << "the history covers everything: " << first;
  };
  converge(s1b, p);
  absl::SleepFor(absl::Milliseconds(150));

  // The publisher dies and comes back (seeded by a survivor).
  size_t mark1 = s1b->LineCount(), mark2 = s2->LineCount();
  KillHard(p);
  Expect(s1b, "PEER_DOWN p ", "publisher down", kStepTimeout, mark1);
  Expect(s2, "PEER_DOWN p ", "publisher down", kStepTimeout, mark2);
  const std::string old_p = IdHex(p->id());
  Worker* p2 = LaunchReady("p", {"s2"}, pub_args);
  ASSERT_NE(p2, nullptr);
  converge(s1b, p2);
  converge(s2, p2);
  absl::SleepFor(absl::Milliseconds(150));
  mark_p = p2->LineCount();
  ASSERT_TRUE(p2->Command("pubstop"));
  const uint64_t n = Published(p2, "k/t", mark_p, "PUB_STOPPED");
  ASSERT_GT(n, 0u);

  for (Worker* x : {s1b, s2}) {
    std::vector<std::string> lines;
    EXPECT_TRUE(ReportUntil(
        x,
        [&](const std::vector<std::string>& l) {
          const std::optional<TStream> st = Find(ParseTResults(l), "k/*", 0, p2, "k/t");
          return st.has_value() && st->received >= n;
        },
        kStepTimeout, &lines))
        << x->name() << ":\n"
        << absl::StrJoin(lines, "\n");
    const auto got = ParseTResults(lines);
    const std::optional<TStream> now = Find(got, "k/*", 0, p2, "k/t");
    ASSERT_TRUE(now.has_value());
    EXPECT_EQ(now->first, 0u);
    EXPECT_EQ(now->last, n - 1);
    EXPECT_EQ(now->received, n);
    EXPECT_EQ(now->errors, 0u);
    // What the killed publisher sent arrived whole up to its death.
    auto before = got.find(TKey{"k/*", 0, "p", old_p, "k/t"});
    ASSERT_NE(before, got.end()) << x->name();
    EXPECT_EQ(before->second.errors, 0u);
    EXPECT_EQ(before->second.first, 0u);
    EXPECT_EQ(before->second.received, before->second.last + 1);
    EXPECT_EQ(got.size(), 2u);
  }
  ExpectNoBadMessages();
  StopAllAndCheckClean();
}

}  // namespace
}  // namespace meshtest
