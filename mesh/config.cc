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
#include "fdpass/status_macros.h"
#include "fdpass/unique_fd.h"
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
constexpr char kProtoFile[] = "proto/mesh/v1/config.proto";

// A config is a few hundred bytes; anything this big is the wrong file.
constexpr size_t kMaxConfigFileBytes = 1 << 20;

// sockaddr_un.sun_path is 108 bytes, one of them the terminating NUL.
constexpr size_t kMaxSocketPathBytes = 107;

constexpr size_t kMaxNameLength = 64;
constexpr uint64_t kDefaultRingCapacity = uint64_t{1} << 20;
constexpr uint64_t kMinRingCapacity = 4096;
constexpr uint64_t kMaxRingCapacity = uint64_t{1} << 30;
// Each frame in a ring carries an 8-byte header.
constexpr uint64_t kFrameHeaderBytes = 8;
constexpr uint32_t kDefaultSpinUs = 50;
constexpr uint32_t kMaxSpinUs = 1000000;
// unresponsive_after_ms: see config.proto (a node beats four times per its
// setting, so the minimum keeps beats at least 75 ms apart).
constexpr uint32_t kDefaultUnresponsiveMs = 2000;
constexpr uint32_t kMinUnresponsiveMs = 300;
constexpr uint32_t kMaxUnresponsiveMs = 3600000;

// ---------------------------------------------------------------------------
// Reading the file.

// Reads all of `path`. NOT_FOUND, PERMISSION_DENIED or another errno-derived
// code naming the path; INVALID_ARGUMENT for a directory or a huge file.
absl::StatusOr<std::string> ReadConfigFile(const std::string& path) {
  fdpass::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    const int err = errno;
    switch (err) {
      case ENOENT:
        return absl::NotFoundError(
            absl::StrCat("config file ", path, " not found"));
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

// "ADAPTIVE, SPIN, SLEEP": the values a user may write (not *_UNSPECIFIED).
std::string EnumValueList(const EnumDescriptor* e) {
  std::vector<std::string> names;
  for (int i = 0; i < e->value_count(); ++i) {
    if (e->value(i)->number() == 0) continue;
    names.push_back(e->value(i)->name());
  }
  return absl::StrJoin(names, ", ");
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
      hint = absl::StrCat(" Use one of: ", EnumValueList(e), ".");
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
      absl::StrAppend(&message, " Use one of: ", EnumValueList(f->enum_type()),
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

// ---------------------------------------------------------------------------
// Validation.

std::string Quote(absl::string_view s) {
  return absl::StrCat("\"", absl::CHexEscape(s), "\"");
}

absl::Status FieldError(absl::string_view source, absl::string_view field,
                        absl::string_view what, absl::string_view allowed) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": field ", field, ": ", what, "; ", allowed));
}

// A parsed gRPC address: "unix:/abs/path" or "host:port".
struct Address {
  std::string normalized;  // "unix:/abs/path" or "host:port"
  std::string unix_path;   // set for unix: addresses
};

// Parses `s`. On error returns "what is wrong" in `*what`.
bool ParseAddress(absl::string_view s, bool allow_port_zero, Address* out,
                  std::string* what) {
  if (s.empty()) {
    *what = "is empty";
    return false;
  }
  if (absl::StartsWith(s, "unix:")) {
    absl::string_view path = s.substr(5);
    // gRPC also spells it "unix:///abs/path".
    if (absl::StartsWith(path, "//")) path.remove_prefix(2);
    if (path.empty() || path[0] != '/') {
      *what = absl::StrCat(Quote(s), " is not an absolute unix: path");
      return false;
    }
    if (path.find('\0') != absl::string_view::npos) {
      *what = absl::StrCat(Quote(s), " contains a NUL byte");
      return false;
    }
    out->unix_path = std::string(path);
    out->normalized = absl::StrCat("unix:", path);
    return true;
  }
  const size_t colon = s.rfind(':');
  if (colon == absl::string_view::npos) {
    *what = absl::StrCat(Quote(s), " has no port (or unix: prefix)");
    return false;
  }
  absl::string_view host = s.substr(0, colon);
  const absl::string_view port_text = s.substr(colon + 1);
  if (host.empty()) {
    *what = absl::StrCat(Quote(s), " has no host");
    return false;
  }
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      *what = absl::StrCat(Quote(s), " has a malformed [IPv6] host");
      return false;
    }
    for (char c : host.substr(1, host.size() - 2)) {
      if (!absl::ascii_isxdigit(c) && c != ':' && c != '.' && c != '%') {
        *what = absl::StrCat(Quote(s), " has a malformed [IPv6] host");
        return false;
      }
    }
  } else {
    if (host.find(':') != absl::string_view::npos) {
      *what = absl::StrCat(Quote(s),
                           " looks like an IPv6 address without brackets "
                           "(write [::1]:7001)");
      return false;
    }
    for (char c : host) {
      if (!absl::ascii_isalnum(c) && c != '.' && c != '-' && c != '_') {
        *what = absl::StrCat(Quote(s), " has a bad character in its host");
        return false;
      }
    }
  }
  uint32_t port = 0;
  const bool digits =
      !port_text.empty() && port_text.size() <= 5 &&
      std::all_of(port_text.begin(), port_text.end(),
                  [](char c) { return absl::ascii_isdigit(c); });
  if (!digits || !absl::SimpleAtoi(port_text, &port) || port > 65535 ||
      (port == 0 && !allow_port_zero)) {
    *what = absl::StrCat(Quote(s), " has port ", Quote(port_text));
    return false;
  }
  out->normalized = absl::StrCat(host, ":", port);
  return true;
}

bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

std::string JoinPath(absl::string_view dir, absl::string_view file) {
  if (absl::EndsWith(dir, "/")) return absl::StrCat(dir, file);
  return absl::StrCat(dir, "/", file);
}

std::string DefaultRunDir() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  // The XDG spec says to ignore a relative XDG_RUNTIME_DIR.
  if (xdg != nullptr && xdg[0] == '/') return JoinPath(xdg, "shmesh");
  return absl::StrCat("/tmp/shmesh-", ::getuid());
}

constexpr char kAddressAllowed[] =
    "use \"unix:/absolute/path\" or \"host:port\"";

}  // namespace

absl::StatusOr<NodeConfig> ParseConfig(absl::string_view text,
                                       absl::string_view source, bool json) {
  return json ? ParseJsonConfig(text, source) : ParseTextConfig(text, source);
}

absl::StatusOr<NodeConfig> LoadConfigFile(const std::string& path) {
  SHMESH_ASSIGN_OR_RETURN(std::string text, ReadConfigFile(path));
  return ParseConfig(text, path, absl::EndsWith(path, ".json"));
}

absl::StatusOr<NodeConfig> ResolveConfig(const NodeConfig& config,
                                         absl::string_view source) {
  NodeConfig out = config;

  // name
  const std::string& name = out.name();
  constexpr char kNameAllowed[] = "use 1 to 64 characters from [A-Za-z0-9_.-]";
  if (name.empty()) {
    return FieldError(source, "name", "is missing (it is required)",
                      kNameAllowed);
  }
  if (name.size() > kMaxNameLength) {
    return FieldError(
        source, "name",
        absl::StrCat(Quote(name), " is ", name.size(), " characters long"),
        kNameAllowed);
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!absl::ascii_isalnum(c) && c != '_' && c != '.' && c != '-') {
      return FieldError(
          source, "name",
          absl::StrCat(Quote(name), " has ", Quote(absl::string_view(&c, 1)),
                       " at position ", i + 1),
          kNameAllowed);
    }
  }

  // run_dir
  constexpr char kRunDirAllowed[] =
      "use an absolute path, or leave it empty for $XDG_RUNTIME_DIR/shmesh "
      "(else /tmp/shmesh-<uid>)";
  if (out.run_dir().empty()) out.set_run_dir(DefaultRunDir());
  if (out.run_dir()[0] != '/') {
    return FieldError(source, "run_dir",
                      absl::StrCat(Quote(out.run_dir()), " is not absolute"),
                      kRunDirAllowed);
  }
  if (out.run_dir().find('\0') != std::string::npos) {
    return FieldError(
        source, "run_dir",
        absl::StrCat(Quote(out.run_dir()), " contains a NUL byte"),
        kRunDirAllowed);
  }
  // Drop trailing slashes so that derived paths are canonical ("/" stays).
  while (out.run_dir().size() > 1 && out.run_dir().back() == '/') {
    out.mutable_run_dir()->pop_back();
  }
  const std::string link_path =
      JoinPath(out.run_dir(), absl::StrCat(name, ".link"));
  if (link_path.size() > kMaxSocketPathBytes) {
    return FieldError(
        source, "run_dir",
        absl::StrCat("the link socket path ", Quote(link_path), " is ",
                     link_path.size(), " bytes"),
        absl::StrCat("a Unix socket path must fit in ", kMaxSocketPathBytes,
                     " bytes: use a shorter run_dir or name"));
  }

  // grpc_listen
  if (out.grpc_listen().empty()) {
    out.set_grpc_listen(absl::StrCat(
        "unix:", JoinPath(out.run_dir(), absl::StrCat(name, ".grpc"))));
  }
  Address listen;
  std::string what;
  if (!ParseAddress(out.grpc_listen(), /*allow_port_zero=*/true, &listen,
                    &what)) {
    return FieldError(
        source, "grpc_listen", what,
        absl::StrCat(kAddressAllowed,
                     " (port 0 to 65535; 0 picks a free port), or leave it "
                     "empty for unix:<run_dir>/<name>.grpc"));
  }
  if (listen.unix_path.size() > kMaxSocketPathBytes) {
    return FieldError(
        source, "grpc_listen",
        absl::StrCat("the socket path ", Quote(listen.unix_path), " is ",
                     listen.unix_path.size(), " bytes"),
        absl::StrCat("a Unix socket path must fit in ", kMaxSocketPathBytes,
                     " bytes: use a shorter path"));
  }
  out.set_grpc_listen(listen.normalized);

  // seeds
  std::vector<std::string> seeds;
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < config.seeds_size(); ++i) {
    const std::string field = absl::StrCat("seeds[", i, "]");
    Address seed;
    if (!ParseAddress(config.seeds(i), /*allow_port_zero=*/false, &seed,
                      &what)) {
      return FieldError(source, field, what,
                        absl::StrCat(kAddressAllowed, " (port 1 to 65535)"));
    }
    if (seed.unix_path.size() > kMaxSocketPathBytes) {
      return FieldError(source, field,
                        absl::StrCat("the socket path ", Quote(seed.unix_path),
                                     " is ", seed.unix_path.size(), " bytes"),
                        absl::StrCat("a Unix socket path must fit in ",
                                     kMaxSocketPathBytes, " bytes"));
    }
    if (seed.normalized == listen.normalized) {
      return FieldError(
          source, field,
          absl::StrCat(Quote(config.seeds(i)),
                       " is this node's own grpc_listen address"),
          "list other members' addresses (leave seeds empty to start a new "
          "mesh)");
    }
    // A repeated seed is harmless: keep the first.
    if (seen.insert(seed.normalized).second) seeds.push_back(seed.normalized);
  }
  out.clear_seeds();
  for (std::string& s : seeds) out.add_seeds(std::move(s));

  // ring_capacity_bytes
  if (out.ring_capacity_bytes() == 0) {
    out.set_ring_capacity_bytes(kDefaultRingCapacity);
  }
  const uint64_t capacity = out.ring_capacity_bytes();
  if (!IsPowerOfTwo(capacity) || capacity < kMinRingCapacity ||
      capacity > kMaxRingCapacity) {
    return FieldError(source, "ring_capacity_bytes",
                      absl::StrCat(capacity, " is not allowed"),
                      absl::StrCat("use a power of two from ", kMinRingCapacity,
                                   " to ", kMaxRingCapacity, ", or 0 for ",
                                   kDefaultRingCapacity, " (1 MiB)"));
  }

  // max_message_bytes
  const uint64_t max_message = capacity / 4 - kFrameHeaderBytes;
  if (out.max_message_bytes() == 0) out.set_max_message_bytes(max_message);
  if (out.max_message_bytes() > max_message) {
    return FieldError(
        source, "max_message_bytes",
        absl::StrCat(out.max_message_bytes(), " is too large for a ring of ",
                     capacity, " bytes"),
        absl::StrCat("use 1 to ", max_message,
                     " (ring_capacity_bytes / 4 - 8), or 0 for that maximum"));
  }

  // allowed_peer_uids
  for (int i = 0; i < out.allowed_peer_uids_size(); ++i) {
    if (out.allowed_peer_uids(i) == static_cast<uint32_t>(-1)) {
      return FieldError(source, absl::StrCat("allowed_peer_uids[", i, "]"),
                        "4294967295 is not a valid uid ((uid_t)-1)",
                        "list real uids (see `id -u`), or leave it empty "
                        "for this process's own uid");
    }
  }
  if (out.allowed_peer_uids_size() == 0) {
    out.add_allowed_peer_uids(static_cast<uint32_t>(::getuid()));
  }

  // wait
  WaitPolicy* wait = out.mutable_wait();
  if (wait->mode() == WaitPolicy::MODE_UNSPECIFIED) {
    wait->set_mode(WaitPolicy::ADAPTIVE);
  }
  if (wait->mode() != WaitPolicy::ADAPTIVE &&
      wait->mode() != WaitPolicy::SPIN && wait->mode() != WaitPolicy::SLEEP) {
    return FieldError(
        source, "wait.mode",
        absl::StrCat(static_cast<int>(wait->mode()), " is not a known mode"),
        absl::StrCat("use one of ",
                     EnumValueList(WaitPolicy::Mode_descriptor()),
                     ", or leave it unset for ADAPTIVE"));
  }
  if (wait->spin_us() == 0) wait->set_spin_us(kDefaultSpinUs);
  if (wait->spin_us() > kMaxSpinUs) {
    return FieldError(source, "wait.spin_us",
                      absl::StrCat(wait->spin_us(), " is too large"),
                      absl::StrCat("use at most ", kMaxSpinUs, ", or 0 for ",
                                   kDefaultSpinUs));
  }

  // unresponsive_after_ms
  if (out.unresponsive_after_ms() == 0) out.set_unresponsive_after_ms(kDefaultUnresponsiveMs);
  if (out.unresponsive_after_ms() < kMinUnresponsiveMs || out.unresponsive_after_ms() > kMaxUnresponsiveMs) {
    return FieldError(source, "unresponsive_after_ms",
                      absl::StrCat(out.unresponsive_after_ms(), " is out of range"),
                      absl::StrCat("use ", kMinUnresponsiveMs, " to ", kMaxUnresponsiveMs,
                                   ", or 0 for ", kDefaultUnresponsiveMs));
  }

  // log_level
  if (out.log_level() == mesh::v1::LOG_LEVEL_UNSPECIFIED) {
    out.set_log_level(mesh::v1::INFO);
  }
  if (!mesh::v1::LogLevel_IsValid(out.log_level())) {
    return FieldError(
        source, "log_level",
        absl::StrCat(static_cast<int>(out.log_level()),
                     " is not a known level"),
        absl::StrCat("use one of ",
                     EnumValueList(mesh::v1::LogLevel_descriptor()),
                     ", or leave it unset for INFO"));
  }

  return out;
}

}  // namespace mesh
