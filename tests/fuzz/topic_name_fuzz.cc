// Fuzz target: the topic name and pattern grammar and matching
// (mesh/pubsub/topic_name.h), the code every subscription pattern and topic
// declaration from a peer goes through, against an independent reading of
// the grammar and tests/worker_wire.h's matcher (a dynamic program written
// from mesh/topic.h, shared with the integration suites as their oracle).
//
// Input (FuzzInput; zeros past the end):
//   u8 mode     bit 0: map every byte of both strings onto the alphabet
//               "ab/*." (so random input is often valid and matches often);
//               bit 1: prefix the pattern with "**/" (deep '**' nesting)
//   u8 split    the pattern is the first `split` bytes of the rest (at most
//               all of it), the topic what follows
//
// Properties checked (a violation aborts: a crash for libFuzzer):
//   * ValidateTopicName and ValidatePattern accept exactly the strings the
//     grammar allows (1..255 bytes; segments of 1..64 [A-Za-z0-9_.-], and
//     for patterns also exactly "*" or "**"), and refuse the rest with
//     INVALID_ARGUMENT and a message;
//   * every valid name is a valid pattern that matches itself, and "**"
//     matches every valid name;
//   * for a valid pattern and a valid name, PatternMatches agrees with the
//     oracle (and returns: libFuzzer's timeout catches a blow-up on
//     '**'-heavy patterns).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "mesh/pubsub/topic_name.h"
#include "tests/fuzz/fuzz_util.h"
#include "tests/worker_wire.h"

namespace shmesh_fuzz {
namespace {

bool SegmentByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.';
}

// The grammar of topic_name.h's header, read byte by byte.
bool GrammarAllows(absl::string_view s, bool pattern) {
  if (s.empty() || s.size() > 255) return false;
  size_t start = 0;
  for (size_t i = 0; i <= s.size(); ++i) {
    if (i < s.size() && s[i] != '/') continue;
    const absl::string_view seg = s.substr(start, i - start);
    if (seg.empty() || seg.size() > 64) return false;
    const bool wildcard = seg == "*" || seg == "**";
    if (!(pattern && wildcard)) {
      for (char c : seg) {
        if (!SegmentByte(c)) return false;
      }
    }
    start = i + 1;
  }
  return true;
}

void CheckValidation(const absl::Status& s, bool allowed, absl::string_view what, absl::string_view input) {
  FUZZ_CHECK(s.ok() == allowed, absl::StrCat(what, " '", input, "': ", s.ToString(), ", the grammar says ",
                                             allowed ? "valid" : "invalid"));
  if (!s.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(s) && !s.message().empty(), absl::StrCat(what, " refused with ", s.ToString()));
  }
}

std::string Mapped(absl::string_view in) {
  static constexpr char kAlphabet[] = {'a', 'b', '/', '*', '.'};
  std::string out(in);
  for (char& c : out) c = kAlphabet[static_cast<uint8_t>(c) % sizeof(kAlphabet)];
  return out;
}

}  // namespace
}  // namespace shmesh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmesh_fuzz;  // NOLINT(build/namespaces): a C entry point
  FuzzInput in(data, size);
  const uint8_t mode = in.U8();
  const size_t split = in.U8();
  const absl::string_view rest = in.Rest();
  std::string pattern(rest.substr(0, split));
  std::string topic(rest.substr(std::min(split, rest.size())));
  if (mode & 1) {
    pattern = Mapped(pattern);
    topic = Mapped(topic);
  }
  if (mode & 2) pattern = "**/" + pattern;

  const bool pattern_ok = GrammarAllows(pattern, /*pattern=*/true);
  const bool topic_ok = GrammarAllows(topic, /*pattern=*/false);
  CheckValidation(mesh::pubsub::ValidatePattern(pattern), pattern_ok, "pattern", pattern);
  CheckValidation(mesh::pubsub::ValidateTopicName(topic), topic_ok, "topic", topic);
  CheckValidation(mesh::pubsub::ValidateTopicName(pattern), GrammarAllows(pattern, false), "topic", pattern);
  if (topic_ok) {
    CheckValidation(mesh::pubsub::ValidatePattern(topic), true, "pattern", topic);
    FUZZ_CHECK(mesh::pubsub::PatternMatches(topic, topic), absl::StrCat("'", topic, "' does not match itself"));
    FUZZ_CHECK(mesh::pubsub::PatternMatches("**", topic), absl::StrCat("'**' does not match '", topic, "'"));
  }
  if (pattern_ok && topic_ok) {
    const bool got = mesh::pubsub::PatternMatches(pattern, topic);
    const bool want = meshworker::TopicMatches(pattern, topic);
    FUZZ_CHECK(got == want, absl::StrCat("PatternMatches('", pattern, "', '", topic, "') is ", got, ", the oracle says ",
                                         want));
  }
  return 0;
}
