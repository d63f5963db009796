// Config loading: reading a file, parsing text format or JSON, and errors
// that name the file, line, column and field (config.h). Validation and
// defaults are in config_resolve.cc.
#include "mesh/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "base/unique_fd.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"

namespace mesh {
namespace {

using ::google::protobuf::Descriptor;
using ::google::protobuf::EnumDescriptor;
using ::google::protobuf::FieldDescriptor;
using ::mesh::v1::LogLevel;
using ::mesh::v1::NodeConfig;
using ::mesh::v1::WaitPolicy;

// Where every error points the user for the list of fields.
// The file as protoc and an installed copy name it (include/shmesh/mesh/v1/).
constexpr char kProtoFile[] = "mesh/v1/config.proto";

// A config is a few hundred bytes; anything this big is the wrong file.
constexpr size_t kMaxConfigFileBytes = 1 << 20;

// ---------------------------------------------------------------------------
// Reading the file.

// Reads all of `path`. NOT_FOUND, PERMISSION_DENIED or another errno-derived
// code naming the path; INVALID_ARGUMENT for a directory or a huge file.
absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    switch (err) {
      case ENOENT: {
        // A relative path: say where it was looked for (`bazel run`, for
        // one, runs a program in another directory than the shell's).
        std::string where;
        if (!path.empty() && path[0] != '/') {
          char cwd[4096];
          where = absl::StrCat(" (looked in ", ::getcwd(cwd, sizeof cwd) != nullptr ? cwd : "the working directory",
                               "/; give an absolute path, or run from the directory that has it)");
        }
        return absl::NotFoundError(absl::StrCat("config file ", path, " not found", where));
      }
      case EACCES:
        return absl::PermissionDeniedError(absl::StrCat(
            "config file ", path, " is not readable: permission denied"));
      default:
        return absl::ErrnoToStatus(
            err, absl::StrCat("cannot open config file ", path));
    }
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    return absl::ErrnoToStatus(errno,
                               absl::StrCat("cannot stat config file ", path));
  }
  if (S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config file ", path, " is a directory; give the path of a file"));
  }
  std::string data;
  char buf[16384];
  while (true) {
    const ssize_t n = ::read(fd.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(
          errno, absl::StrCat("cannot read config file ", path));
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
    if (data.size() > kMaxConfigFileBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("config file ", path, " is larger than ",
                       kMaxConfigFileBytes, " bytes; is it the right file?"));
    }
  }
  return data;
}

// ---------------------------------------------------------------------------
// Error-message helpers shared by the text and JSON parsers.

// Optimal-string-alignment edit distance (a transposition costs 1), for
// "did you mean" suggestions.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1,
                                     std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] =
          std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// The field of `type` whose name (proto or JSON spelling) is closest to
// `unknown`, if it is close enough to be a plausible typo; else "".
std::string ClosestFieldName(const Descriptor* type,
                             absl::string_view unknown) {
  if (type == nullptr) return "";
  const std::string lower = absl::AsciiStrToLower(unknown);
  std::string best;
  size_t best_distance = 3;  // Suggest only within an edit distance of 2.
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    for (const std::string& candidate : {f->name(), f->json_name()}) {
      const size_t d = EditDistance(lower, absl::AsciiStrToLower(candidate));
      if (d < best_distance) {
        best_distance = d;
        best = f->name();
      }
    }
  }
  return best;
}

// " Fix the field name (see ...); did you mean "x"?" for an unknown field.
std::string UnknownFieldHint(const Descriptor* type, absl::string_view field) {
  std::string hint = absl::StrCat(" Fix the field name (see ", kProtoFile, ")");
  const std::string closest = ClosestFieldName(type, field);
  if (closest.empty()) {
    absl::StrAppend(&hint, ".");
  } else {
    absl::StrAppend(&hint, "; did you mean \"", closest, "\"?");
  }
  return hint;
}

// Finds an enum-typed field called `field_name` anywhere under NodeConfig.
const EnumDescriptor* FindEnumField(const Descriptor* type,
                                    absl::string_view field_name, int depth) {
  if (type == nullptr || depth > 4) return nullptr;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (f->enum_type() != nullptr && f->name() == field_name) {
      return f->enum_type();
    }
    if (f->message_type() != nullptr) {
      const EnumDescriptor* e =
          FindEnumField(f->message_type(), field_name, depth + 1);
      if (e != nullptr) return e;
    }
  }
  return nullptr;
}

// Returns the text between the first `"` after `after` and the next `"`, or
// "" if there is none.
std::string QuotedAfter(absl::string_view message, absl::string_view after) {
  const size_t at = message.find(after);
  if (at == absl::string_view::npos) return "";
  const size_t open = message.find('"', at + after.size());
  if (open == absl::string_view::npos) return "";
  const size_t close = message.find('"', open + 1);
  if (close == absl::string_view::npos) return "";
  return std::string(message.substr(open + 1, close - open - 1));
}

// Line `line` (0-based) of `text`, without its newline; "" past the end.
absl::string_view LineOf(absl::string_view text, int line) {
  size_t start = 0;
  for (int i = 0; i < line; ++i) {
    const size_t nl = text.find('\n', start);
    if (nl == absl::string_view::npos) return "";
    start = nl + 1;
  }
  const size_t end = text.find('\n', start);
  return text.substr(start, end == absl::string_view::npos ? end : end - start);
}

// The protobuf tokenizer counts a tab as advancing to the next multiple of 8;
// editors count bytes. Converts the former to a 0-based byte offset in `line`.
int TokenizerColumnToByte(absl::string_view line, int column) {
  int col = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if (col >= column) return static_cast<int>(i);
    col += line[i] == '\t' ? 8 - col % 8 : 1;
  }
  return static_cast<int>(line.size());
}

// 1-based line and column of byte `offset` in `text`.
std::pair<int, int> LineAndColumn(absl::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  int line = 1;
  size_t line_start = 0;
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++line;
      line_start = i + 1;
    }
  }
  return {line, static_cast<int>(offset - line_start) + 1};
}

// ---------------------------------------------------------------------------
// Text format.

// Keeps the first error the text-format parser reports (it stops there
// anyway); warnings are ignored. Line and column are the tokenizer's: 0-based,
// tabs expanded.
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (has_error_) return;
    has_error_ = true;
    line_ = line;
    column_ = column;
    message_ = message;
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber,
                  const std::string&) override {}

  bool has_error() const { return has_error_; }
  int line() const { return line_; }
  int column() const { return column_; }
  const std::string& message() const { return message_; }

 private:
  bool has_error_ = false;
  int line_ = -1;
  int column_ = -1;
  std::string message_;
};

absl::StatusOr<NodeConfig> ParseTextConfig(absl::string_view text,
                                           absl::string_view source) {
  NodeConfig config;
  FirstErrorCollector errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  parser.AllowUnknownField(false);
  parser.AllowUnknownExtension(false);
  if (parser.ParseFromString(std::string(text), &config)) return config;

  const std::string message =
      errors.has_error() ? errors.message() : "cannot parse text format";
  const std::string unknown = QuotedAfter(message, "has no field named");
  const int line = errors.line();
  int byte_col = -1;
  if (line >= 0) {
    const absl::string_view line_text = LineOf(text, line);
    byte_col = TokenizerColumnToByte(line_text, errors.column());
    // The parser reports an unknown field after reading its name; point at
    // the name itself, where the user has to fix it.
    if (!unknown.empty()) {
      const size_t at = line_text.rfind(unknown, byte_col);
      if (at != absl::string_view::npos) byte_col = static_cast<int>(at);
    }
  }
  std::string hint;
  if (!unknown.empty()) {
    const std::string type_name = QuotedAfter(message, "Message type");
    hint = UnknownFieldHint(google::protobuf::DescriptorPool::generated_pool()
                                ->FindMessageTypeByName(type_name),
                            unknown);
  } else if (absl::StartsWith(message, "Unknown enumeration value")) {
    const EnumDescriptor* e = FindEnumField(
        NodeConfig::descriptor(), QuotedAfter(message, "for field"), 0);
    if (e != nullptr)
      hint = absl::StrCat(" Use one of: ", config_internal::EnumValueList(e), ".");
  } else {
    hint = absl::StrCat(" (protobuf text format; see ", kProtoFile, ")");
  }
  std::string location(source);
  if (line >= 0) absl::StrAppend(&location, ":", line + 1, ":", byte_col + 1);
  return absl::InvalidArgumentError(
      absl::StrCat(location, ": ", message, hint));
}

// ---------------------------------------------------------------------------
// JSON.

// The JSON parser of protobuf 3.21 ends a syntax error with the 40 bytes
// around the error and a caret line:
//   "Unexpected token.\n<context>\n<spaces>^".
// Finds that context in `text` and returns the byte offset of the caret, or
// npos.
size_t JsonSyntaxErrorOffset(absl::string_view text, absl::string_view msg) {
  const size_t first_nl = msg.find('\n');
  const size_t last_nl = msg.rfind('\n');
  if (first_nl == absl::string_view::npos || last_nl == first_nl) {
    return absl::string_view::npos;
  }
  const absl::string_view context =
      msg.substr(first_nl + 1, last_nl - first_nl - 1);
  const absl::string_view caret = msg.substr(last_nl + 1);
  if (caret.empty() || caret.back() != '^') return absl::string_view::npos;
  const size_t caret_col = caret.size() - 1;
  const size_t at = text.find(context);
  if (at == absl::string_view::npos) return absl::string_view::npos;
  // Ambiguous if the context occurs twice.
  if (!context.empty() &&
      text.find(context, at + 1) != absl::string_view::npos) {
    return absl::string_view::npos;
  }
  return at + caret_col;
}

// Offset of the key `"name"` (followed by `:`) in `text` if it occurs exactly
// once, else npos. Best effort: used only to put a line number on an error.
size_t FindJsonKey(absl::string_view text, absl::string_view name) {
  const std::string quoted = absl::StrCat("\"", name, "\"");
  size_t found = absl::string_view::npos;
  for (size_t at = text.find(quoted); at != absl::string_view::npos;
       at = text.find(quoted, at + 1)) {
    size_t after = at + quoted.size();
    while (after < text.size() && absl::ascii_isspace(text[after])) ++after;
    if (after >= text.size() || text[after] != ':') continue;
    if (found != absl::string_view::npos) return absl::string_view::npos;
    found = at;
  }
  return found;
}

// The field of `type` called `name` in its proto or JSON spelling, or nullptr.
const FieldDescriptor* FindFieldBySpelling(const Descriptor* type,
                                           absl::string_view name) {
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (f->name() == name || f->json_name() == name) return f;
  }
  return nullptr;
}

// Message type of the field path "wait" or "wait.mode" under NodeConfig
// (the type that holds the last component's fields), or nullptr.
const Descriptor* MessageAtPath(absl::string_view path) {
  const Descriptor* type = NodeConfig::descriptor();
  if (path.empty()) return type;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    const size_t bracket = part.find('[');
    if (bracket != absl::string_view::npos) part = part.substr(0, bracket);
    const FieldDescriptor* f = FindFieldBySpelling(type, part);
    if (f == nullptr || f->message_type() == nullptr) return nullptr;
    type = f->message_type();
  }
  return type;
}

absl::StatusOr<NodeConfig> ParseJsonConfig(absl::string_view text,
                                           absl::string_view source) {
  NodeConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(text.data(), text.size()), &config,
      options);
  if (status.ok()) return config;

  const std::string full(status.message().data(), status.message().size());
  std::string first_line = full.substr(0, full.find('\n'));
  size_t offset = JsonSyntaxErrorOffset(text, full);

  // Field errors start with "(path)" naming the field: "(wait.mode): invalid
  // value ..." or "(wait) foo: Cannot find field." (unknown field "foo" in
  // the message at "wait").
  std::string path;
  absl::string_view rest = first_line;
  if (absl::StartsWith(rest, "(")) {
    const size_t close = rest.find(')');
    if (close != absl::string_view::npos) {
      path = std::string(rest.substr(1, close - 1));
      rest = absl::StripLeadingAsciiWhitespace(rest.substr(close + 1));
      if (absl::StartsWith(rest, ":")) rest.remove_prefix(1);
      rest = absl::StripLeadingAsciiWhitespace(rest);
    }
  }

  std::string message;
  // The JSON key to look for to put a line number on a field error, and the
  // message type whose field it is.
  std::string key;
  const Descriptor* holder = nullptr;
  constexpr absl::string_view kCannotFind = ": Cannot find field.";
  if (absl::EndsWith(rest, kCannotFind)) {
    key = std::string(rest.substr(0, rest.size() - kCannotFind.size()));
    holder = MessageAtPath(path);
    message = absl::StrCat(
        "Message type \"", holder != nullptr ? holder->full_name() : "?",
        "\" has no field named \"", key, "\".", UnknownFieldHint(holder, key));
  } else {
    if (!path.empty()) {
      const size_t dot = path.rfind('.');
      key = dot == std::string::npos ? path : path.substr(dot + 1);
      key = key.substr(0, key.find('['));
      holder =
          MessageAtPath(dot == std::string::npos ? "" : path.substr(0, dot));
      message = absl::StrCat("invalid JSON for field ", path, ": ", rest);
    } else {
      message = absl::StrCat("invalid JSON: ", rest);
    }
    if (!absl::EndsWith(message, ".")) absl::StrAppend(&message, ".");
    const FieldDescriptor* f =
        holder == nullptr ? nullptr : FindFieldBySpelling(holder, key);
    if (f != nullptr && f->enum_type() != nullptr) {
      absl::StrAppend(&message, " Use one of: ", config_internal::EnumValueList(f->enum_type()),
                      ".");
    } else {
      absl::StrAppend(&message, " See ", kProtoFile, ".");
    }
  }

  if (offset == absl::string_view::npos && !key.empty()) {
    offset = FindJsonKey(text, key);
    // JSON accepts both spellings: ring_capacity_bytes and ringCapacityBytes.
    const FieldDescriptor* f =
        holder == nullptr ? nullptr : FindFieldBySpelling(holder, key);
    if (offset == absl::string_view::npos && f != nullptr) {
      offset =
          FindJsonKey(text, f->json_name() == key ? f->name() : f->json_name());
    }
  }
  std::string location(source);
  if (offset != absl::string_view::npos) {
    const auto [line, col] = LineAndColumn(text, offset);
    absl::StrAppend(&location, ":", line, ":", col);
  } else {
    absl::StrAppend(&location, " (JSON)");
  }
  return absl::InvalidArgumentError(absl::StrCat(location, ": ", message));
}

}  // namespace

namespace config_internal {

std::string EnumValueList(const google::protobuf::EnumDescriptor* e) {
  std::vector<std::string> names;
  for (int i = 0; i < e->value_count(); ++i) {
    if (e->value(i)->number() == 0) continue;
    names.push_back(e->value(i)->name());
  }
  return absl::StrJoin(names, ", ");
}

}  // namespace config_internal

absl::StatusOr<NodeConfig> ParseConfig(absl::string_view text,
                                       absl::string_view source, bool json) {
  return json ? ParseJsonConfig(text, source) : ParseTextConfig(text, source);
}

absl::StatusOr<NodeConfig> LoadConfigFile(const std::string& path) {
  SHMESH_ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  return ParseConfig(text, path, absl::EndsWith(path, ".json"));
}

}  // namespace mesh
