// Command-line parsing for meshd and meshctl over the Abseil flag registry.
//
// absl::ParseCommandLine exits with status 1 on a usage error and on --help;
// the tools want 2 for bad usage, 0 for --help, and a one-line message of
// their own. So flags are declared with ABSL_FLAG as usual, and ParseArgs
// sets them through the registry, reporting errors as a Status instead.
// Only flags declared in files under mesh/cmd/ can be set (not Abseil's own
// --flagfile, --fromenv, ...).
//
// Thread contract: call from main() before starting threads (flag values are
// set as a side effect).
#ifndef SHMESH_MESH_CMD_FLAGS_H_
#define SHMESH_MESH_CMD_FLAGS_H_

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mesh {
namespace cmd {

struct ParsedArgs {
  // Arguments that are not flags, in order (everything after "--" too).
  std::vector<std::string> positional;
  // Names of the flags given on the command line.
  std::set<std::string> given;
  // -h, -help or --help was given.
  bool help = false;
  // -version or --version was given.
  bool version = false;
};

// Parses argv[1..argc). Accepts --name=value and -name=value, "--name value"
// for non-bool flags, --name / --noname for bools, and "--" to end flags.
// INVALID_ARGUMENT (one line, naming the flag) for an unknown flag, a missing
// value or a value that does not parse.
absl::StatusOr<ParsedArgs> ParseArgs(int argc, char** argv);

// Help text for every settable flag declared in a file whose path ends with
// `file_suffix` (e.g. "mesh/cmd/meshd.cc"), sorted by name:
//   "  --name=<default>\n      help text\n"
std::string FlagsHelp(absl::string_view file_suffix);

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_FLAGS_H_
