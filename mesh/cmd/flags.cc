#include "mesh/cmd/flags.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace mesh {
namespace cmd {
namespace {

// Flags of the tools themselves: declared in a file under mesh/cmd/.
absl::CommandLineFlag* FindToolFlag(absl::string_view name) {
  absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr || flag->IsRetired()) return nullptr;
  if (!absl::StrContains(flag->Filename(), "mesh/cmd/")) return nullptr;
  return flag;
}

// Word-wraps `text` to lines of at most `width` characters, each starting
// with `indent`; newlines in `text` start new lines.
std::string Wrap(absl::string_view text, absl::string_view indent,
                 size_t width) {
  std::string out;
  for (absl::string_view paragraph : absl::StrSplit(text, '\n')) {
    std::string line(indent);
    bool first = true;
    for (absl::string_view word :
         absl::StrSplit(paragraph, ' ', absl::SkipEmpty())) {
      if (!first && line.size() + 1 + word.size() > width) {
        absl::StrAppend(&out, line, "\n");
        line = std::string(indent);
        first = true;
      }
      if (!first) line += ' ';
      absl::StrAppend(&line, word);
      first = false;
    }
    absl::StrAppend(&out, line, "\n");
  }
  return out;
}

}  // namespace

absl::StatusOr<ParsedArgs> ParseArgs(int argc, char** argv) {
  ParsedArgs out;
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) out.positional.emplace_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      out.positional.emplace_back(arg);
      continue;
    }
    absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    absl::string_view name = body;
    absl::string_view value;
    bool has_value = false;
    const size_t eq = body.find('=');
    if (eq != absl::string_view::npos) {
      name = body.substr(0, eq);
      value = body.substr(eq + 1);
      has_value = true;
    }
    if (name == "h" || name == "help" || name == "helpfull") {
      out.help = true;
      continue;
    }
    if (name == "version" && !has_value) {
      out.version = true;
      continue;
    }
    absl::CommandLineFlag* flag = FindToolFlag(name);
    if (flag == nullptr && !has_value && absl::StartsWith(name, "no")) {
      absl::CommandLineFlag* negated = FindToolFlag(name.substr(2));
      if (negated != nullptr && negated->IsOfType<bool>()) {
        flag = negated;
        name = name.substr(2);
        value = "false";
        has_value = true;
      }
    }
    if (flag == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    }
    if (!has_value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "flag --", name, " needs a value: --", name, "=VALUE"));
      }
    }
    std::string error;
    if (!flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad value \"", value, "\" for --", name, ": ", error));
    }
    out.given.insert(std::string(name));
  }
  return out;
}

std::string FlagsHelp(absl::string_view file_suffix) {
  std::vector<absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (!flag->IsRetired() && absl::EndsWith(flag->Filename(), file_suffix)) {
      flags.push_back(flag);
    }
  }
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  std::string out;
  for (const absl::CommandLineFlag* flag : flags) {
    std::string def = flag->DefaultValue();
    if (flag->IsOfType<std::string>()) def = absl::StrCat("\"", def, "\"");
    absl::StrAppend(&out, "  --", flag->Name(), "=", def, "\n",
                    Wrap(flag->Help(), "      ", 78));
  }
  return out;
}

}  // namespace cmd
}  // namespace mesh
