// Loading and validating NodeConfig (proto/mesh/v1/config.proto).
//
// Config files are protobuf text format, or JSON when the path ends in
// ".json". Every error names the file, the line (and column) where the parser
// knows it, and the field, and says how to fix it, e.g.
//   node.textproto:3:1: Message type "mesh.v1.NodeConfig" has no field named
//   "nmae". Fix the field name (see mesh/v1/config.proto); did you mean "name"?
// Thread contract: free functions, thread-safe.
#ifndef SHMESH_MESH_CONFIG_H_
#define SHMESH_MESH_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "mesh/v1/config.pb.h"

namespace mesh {

// Reads and parses `path`. NOT_FOUND if it does not exist, PERMISSION_DENIED
// if unreadable, INVALID_ARGUMENT for syntax errors or unknown fields. Does
// not validate values: see ResolveConfig.
absl::StatusOr<mesh::v1::NodeConfig> LoadConfigFile(const std::string& path);

// Parses `text` in text format (or JSON if `json`); `source` names it in
// error messages (a file path, or "<string>").
absl::StatusOr<mesh::v1::NodeConfig> ParseConfig(absl::string_view text,
                                                 absl::string_view source,
                                                 bool json = false);

// Checks every value and fills in every default, returning a config with no
// field left to interpretation (run_dir, grpc_listen, ring_capacity_bytes,
// max_message_bytes, allowed_peer_uids, wait, log_level all set).
// INVALID_ARGUMENT names the field, the bad value and what is allowed;
// `source` prefixes the message.
absl::StatusOr<mesh::v1::NodeConfig> ResolveConfig(
    const mesh::v1::NodeConfig& config, absl::string_view source = "config");

namespace config_internal {
// "A, B, C": the names of an enum's values, 0 left out (error messages of
// config.cc and config_resolve.cc).
std::string EnumValueList(const google::protobuf::EnumDescriptor* e);
}  // namespace config_internal

}  // namespace mesh

#endif  // SHMESH_MESH_CONFIG_H_
