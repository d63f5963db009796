// Topic names and subscription patterns: the grammar and the matching.
//
//   name     = segment *( "/" segment )          1 to 255 bytes in all
//   segment  = 1*64( ALPHA / DIGIT / "_" / "-" / "." )
//   pattern  = psegment *( "/" psegment )         1 to 255 bytes in all
//   psegment = segment / "*" / "**"
//
// "*" matches exactly one segment; "**" matches any number of segments,
// none included ("a/**" matches "a", "a/b" and "a/b/c"). A segment that
// merely contains '*' ("a*") is invalid, as are empty segments (a leading,
// trailing or doubled '/'). Service names follow the name grammar.
//
// Thread contract: pure functions, thread-safe.
#ifndef SHMESH_MESH_PUBSUB_TOPIC_NAME_H_
#define SHMESH_MESH_PUBSUB_TOPIC_NAME_H_

#include <cstddef>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mesh {
namespace pubsub {

inline constexpr size_t kMaxTopicNameBytes = 255;
inline constexpr size_t kMaxTopicSegmentBytes = 64;

// OK, or INVALID_ARGUMENT saying what is wrong and where. `what` names the
// thing in the message ("topic", "service").
absl::Status ValidateTopicName(absl::string_view name, absl::string_view what = "topic");
absl::Status ValidatePattern(absl::string_view pattern);

// True if `topic` (a valid name) matches `pattern` (a valid pattern).
// O(segments of pattern x segments of topic), whatever the pattern: a
// peer's pattern is untrusted input.
bool PatternMatches(absl::string_view pattern, absl::string_view topic);

}  // namespace pubsub
}  // namespace mesh

#endif  // SHMESH_MESH_PUBSUB_TOPIC_NAME_H_
