#include "mesh/pubsub/topic_name.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mesh {
namespace pubsub {
namespace {

bool SegmentChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
         c == '.';
}

absl::Status Check(absl::string_view name, absl::string_view what, bool wildcards) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " name is empty"));
  if (name.size() > kMaxTopicNameBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " name is ", name.size(), " bytes; the limit is ", kMaxTopicNameBytes));
  }
  size_t index = 0;
  for (absl::string_view segment : absl::StrSplit(name, '/')) {
    ++index;
    const std::string shown = absl::CHexEscape(name);
    if (segment.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(what, " \"", shown, "\" has an empty segment (", index,
                                                     "): no leading, trailing or double '/'"));
    }
    if (wildcards && (segment == "*" || segment == "**")) continue;
    if (segment.size() > kMaxTopicSegmentBytes) {
      return absl::InvalidArgumentError(absl::StrCat(what, " \"", shown, "\": segment ", index, " is ",
                                                     segment.size(), " bytes; the limit is ",
                                                     kMaxTopicSegmentBytes));
    }
    for (char c : segment) {
      if (SegmentChar(c)) continue;
      if (c == '*') {
        return absl::InvalidArgumentError(
            wildcards ? absl::StrCat("pattern \"", shown, "\": '*' must be a whole segment (\"*\" or \"**\")")
                      : absl::StrCat(what, " \"", shown, "\" contains '*'; wildcards are for subscriptions only"));
      }
      return absl::InvalidArgumentError(absl::StrCat(what, " \"", shown, "\": segment ", index,
                                                     " has a character outside [A-Za-z0-9_.-] ('",
                                                     absl::CHexEscape(absl::string_view(&c, 1)), "')"));
    }
  }
  return absl::OkStatus();
}

// Whether segments p[pi..] match t[ti..]: dynamic programming over the two
// positions, O(|p| * |t|) whatever the pattern (a peer's pattern is
// untrusted input: no exponential backtracking).
bool Match(const std::vector<absl::string_view>& p, const std::vector<absl::string_view>& t) {
  const size_t np = p.size(), nt = t.size();
  // m[pi * (nt + 1) + ti]: p[pi..] matches t[ti..].
  std::vector<char> m((np + 1) * (nt + 1), 0);
  auto at = [&](size_t pi, size_t ti) -> char& { return m[pi * (nt + 1) + ti]; };
  at(np, nt) = 1;
  for (size_t pi = np; pi-- > 0;) {
    for (size_t ti = nt + 1; ti-- > 0;) {
      if (p[pi] == "**") {
        // Matches nothing here (skip it), or one more segment.
        at(pi, ti) = at(pi + 1, ti) || (ti < nt && at(pi, ti + 1));
      } else {
        at(pi, ti) = ti < nt && (p[pi] == "*" || p[pi] == t[ti]) && at(pi + 1, ti + 1);
      }
    }
  }
  return at(0, 0) != 0;
}

}  // namespace

absl::Status ValidateTopicName(absl::string_view name, absl::string_view what) { return Check(name, what, false); }

absl::Status ValidatePattern(absl::string_view pattern) { return Check(pattern, "pattern", true); }

bool PatternMatches(absl::string_view pattern, absl::string_view topic) {
  if (pattern == topic) return true;  // the common case: no wildcard
  const std::vector<absl::string_view> p = absl::StrSplit(pattern, '/');
  const std::vector<absl::string_view> t = absl::StrSplit(topic, '/');
  return Match(p, t);
}

}  // namespace pubsub
}  // namespace mesh
