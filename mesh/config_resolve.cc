// Config validation and defaults (ResolveConfig in config.h). Parsing is in
// config.cc.
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

// sockaddr_un.sun_path is 108 bytes, one of them the terminating NUL.
constexpr size_t kMaxSocketPathBytes = 107;

constexpr size_t kMaxNameLength = 64;
constexpr uint64_t kDefaultRingCapacity = uint64_t{1} << 20;
constexpr uint64_t kMinRingCapacity = 4096;
constexpr uint64_t kMaxRingCapacity = uint64_t{1} << 30;
// Each plain message in a ring carries the ring's 8-byte frame header and
// the mesh's 8-byte message envelope (kMessagePrefix in
// mesh/dataplane/envelope.h) before the payload.
constexpr uint64_t kFrameOverheadBytes = 8 + 8;
// pool and max_message_bytes: see config.proto.
constexpr uint64_t kDefaultPoolLimit = uint64_t{1} << 32;
constexpr uint64_t kMinPoolLimit = uint64_t{1} << 20;
constexpr uint64_t kDefaultPeerQuota = uint64_t{1} << 30;
constexpr uint64_t kDefaultPoolThreshold = uint64_t{1} << 16;
constexpr uint32_t kDefaultMaxPeerSegments = 4096;
constexpr uint64_t kDefaultPoolRetain = uint64_t{256} << 20;
constexpr uint64_t kDefaultMaxMessage = uint64_t{1} << 30;
constexpr uint32_t kDefaultSpinUs = 50;
constexpr uint32_t kMaxSpinUs = 1000000;
// unresponsive_after_ms: see config.proto (a node beats four times per its
// setting, so the minimum keeps beats at least 75 ms apart).
constexpr uint32_t kDefaultUnresponsiveMs = 2000;
constexpr uint32_t kMinUnresponsiveMs = 300;
constexpr uint32_t kMaxUnresponsiveMs = 3600000;

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

  // pool (before max_message_bytes, whose upper bound is the pool's limit)
  mesh::v1::PoolConfig* pool = out.mutable_pool();
  if (pool->limit_bytes() == 0) pool->set_limit_bytes(kDefaultPoolLimit);
  if (pool->limit_bytes() < kMinPoolLimit) {
    return FieldError(source, "pool.limit_bytes", absl::StrCat(pool->limit_bytes(), " is too small"),
                      absl::StrCat("use at least ", kMinPoolLimit, " (1 MiB), or 0 for ", kDefaultPoolLimit,
                                   " (4 GiB)"));
  }
  if (pool->peer_quota_bytes() == 0) pool->set_peer_quota_bytes(std::min(kDefaultPeerQuota, pool->limit_bytes()));
  if (pool->peer_quota_bytes() > pool->limit_bytes()) {
    return FieldError(source, "pool.peer_quota_bytes",
                      absl::StrCat(pool->peer_quota_bytes(), " exceeds pool.limit_bytes (", pool->limit_bytes(), ")"),
                      "use at most pool.limit_bytes, or 0 for 1 GiB (or the limit, if smaller)");
  }
  const uint64_t ring_message = capacity / 4 - kFrameOverheadBytes;
  if (pool->threshold_bytes() == 0) pool->set_threshold_bytes(kDefaultPoolThreshold);
  pool->set_threshold_bytes(std::min<uint64_t>(pool->threshold_bytes(), ring_message));
  if (pool->max_peer_segments() == 0) pool->set_max_peer_segments(kDefaultMaxPeerSegments);
  if (pool->retain_bytes() == 0) pool->set_retain_bytes(kDefaultPoolRetain);

  // max_message_bytes
  if (out.max_message_bytes() == 0) out.set_max_message_bytes(std::min(kDefaultMaxMessage, pool->limit_bytes()));
  if (out.max_message_bytes() > pool->limit_bytes()) {
    return FieldError(
        source, "max_message_bytes",
        absl::StrCat(out.max_message_bytes(), " exceeds pool.limit_bytes (", pool->limit_bytes(), ")"),
        "use 1 to pool.limit_bytes (raise that for larger messages), or 0 for 1 GiB");
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
                     config_internal::EnumValueList(WaitPolicy::Mode_descriptor()),
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
                     config_internal::EnumValueList(mesh::v1::LogLevel_descriptor()),
                     ", or leave it unset for INFO"));
  }

  return out;
}

}  // namespace mesh
