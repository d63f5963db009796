// Helpers of the topic suites (topics_integration_test.cc,
// topics_backpressure_test.cc): the TRESULT lines of mesh_worker's topic mode
// (worker_pubsub.h) as streams, and a fixture that reads a publisher's
// PUBLISHED count and checks that no worker saw a bad topic message.
// Test-only.
//
// Thread contract: the test's main thread only, like WorkerFixture.
#ifndef SHMESH_TESTS_TOPIC_STREAMS_H_
#define SHMESH_TESTS_TOPIC_STREAMS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/worker_fixture.h"
#include "tests/worker_process.h"
#include "tests/worker_wire.h"

namespace meshtest {

inline std::string IdHex(uint64_t id) { return absl::StrFormat("%016x", id); }

// One TRESULT line: what one subscription got from one publisher's topic.
struct TStream {
  std::string pattern;
  int gen = 0;
  std::string from;
  std::string id;  // publisher node id, hex
  std::string topic;
  uint64_t received = 0, errors = 0, bytes = 0, first = 0, last = 0;
};
using TKey = std::tuple<std::string, int, std::string, std::string, std::string>;
inline TKey KeyOf(const TStream& s) { return {s.pattern, s.gen, s.from, s.id, s.topic}; }

inline std::map<TKey, TStream> ParseTResults(const std::vector<std::string>& lines) {
  std::map<TKey, TStream> out;
  for (const std::string& l : WithPrefix(lines, "TRESULT ")) {
    Fields f = Parse(l);
    if (f.words.size() != 3) {
      ADD_FAILURE() << "bad line: " << l;
      continue;
    }
    TStream s;
    s.pattern = f.words[1];
    s.gen = static_cast<int>(f.U64("gen"));
    s.from = f.words[2];
    s.id = f.kv["id"];
    s.topic = f.kv["topic"];
    s.received = f.U64("received");
    s.errors = f.U64("errors");
    s.bytes = f.U64("bytes");
    s.first = f.U64("first");
    s.last = f.U64("last");
    out[KeyOf(s)] = s;
  }
  return out;
}

// The stream of a subscription (pattern, gen) from publisher `from`
// (name, id) on `topic`, if there is one (a copy: `m` is often a temporary).
inline std::optional<TStream> Find(const std::map<TKey, TStream>& m, const std::string& pattern, int gen,
                            const Worker* from, const std::string& topic) {
  auto it = m.find(TKey{pattern, gen, from->name(), IdHex(from->id()), topic});
  if (it == m.end()) return std::nullopt;
  return it->second;
}

// The `ns=` value of a line, or the positional time of PEER_UP/ON_MATCHED.
inline int64_t Ns(const std::string& line) {
  Fields f = Parse(line);
  if (f.kv.count("ns")) return static_cast<int64_t>(f.U64("ns"));
  int64_t v = 0;
  if (f.words.size() >= 3) v = std::stoll(f.words[2]);
  return v;
}
inline int64_t OnMatchedNs(const std::string& line) { return std::stoll(Parse(line).words[3]); }

// The message bytes a topic stream of `n` messages carries (worker_wire.h).
inline uint64_t StreamBytes(const std::string& from, const std::string& topic, uint64_t n, uint64_t payload) {
  return n * (meshworker::kHeaderBytes + from.size() + 1 + topic.size() + payload + 8);
}

class TopicsTest : public WorkerFixture {
 protected:
  // PUBLISHED <topic> ... published=<n>: the count after PUB_DONE or
  // PUB_STOPPED (lines from `mark` on).
  uint64_t Published(Worker* p, const std::string& topic, size_t mark, const std::string& done) {
    Expect(p, done, "publishing ended", kStepTimeout, mark);
    for (const std::string& l : p->Lines(mark)) {
      if (!StartsWith(l, "PUBLISHED " + topic + " ")) continue;
      Fields f = Parse(l);
      EXPECT_EQ(f.U64("failed"), 0u) << l;
      EXPECT_EQ(f.U64("partial"), 0u) << l;
      return f.U64("published");
    }
    ADD_FAILURE() << p->name() << " printed no PUBLISHED line for " << topic;
    return 0;
  }

  // Every line of every worker: no TBAD (a bad topic message) anywhere.
  void ExpectNoBadMessages() {
    for (const auto& w : workers_) {
      EXPECT_TRUE(w->LinesWithPrefix("TBAD").empty()) << w->name() << ":\n" << w->Dump();
      EXPECT_TRUE(w->LinesWithPrefix("ERROR").empty()) << w->name() << ":\n" << w->Dump();
    }
  }
};

}  // namespace meshtest

#endif  // SHMESH_TESTS_TOPIC_STREAMS_H_
