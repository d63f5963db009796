// The pieces of mesh_worker (tests/mesh_worker.cc) that its topic and
// service modes (worker_pubsub.cc, worker_rpc.cc) share with its plain
// message streams: the stdout line writer, the clock its lines are stamped
// with, and the self-checking message format. Part of the mesh_worker
// binary only (test code).
//
// Message format (host byte order; sender and receiver share the host):
//   u64 seq | u64 sender id | u32 name_len | u32 payload_len | name | payload | u64 fnv1a
// where `name` is the sender's node name for Node::Send streams, and
// "<sender>|<topic>" for topic streams, so a message delivered under the
// wrong sender or the wrong topic fails its check.
//
// Thread contract: thread-safe free functions (Emit serializes lines under
// its own mutex).
#ifndef SHMESH_TESTS_WORKER_WIRE_H_
#define SHMESH_TESTS_WORKER_WIRE_H_

#include <time.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace meshworker {

inline int64_t MonotonicNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

// One whole line on stdout per call, flushed, so the harness never sees a
// torn or buffered line.
inline void Emit(const std::string& line) {
  static absl::Mutex* out_mu = new absl::Mutex;
  absl::MutexLock lock(out_mu);
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

inline std::string Hex(uint64_t v) { return absl::StrFormat("%016x", v); }

inline uint64_t Fnv1a(absl::string_view data) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

inline constexpr size_t kHeaderBytes = 24;

inline char PayloadByte(uint64_t seq, size_t i) { return static_cast<char>((seq * 131 + i * 7 + 1) & 0xff); }

inline std::string Encode(uint64_t seq, uint64_t sender_id, absl::string_view name, size_t payload_bytes) {
  std::string m(kHeaderBytes + name.size() + payload_bytes + 8, '\0');
  uint32_t name_len = static_cast<uint32_t>(name.size());
  uint32_t payload_len = static_cast<uint32_t>(payload_bytes);
  std::memcpy(&m[0], &seq, 8);
  std::memcpy(&m[8], &sender_id, 8);
  std::memcpy(&m[16], &name_len, 4);
  std::memcpy(&m[20], &payload_len, 4);
  std::memcpy(&m[kHeaderBytes], name.data(), name.size());
  for (size_t i = 0; i < payload_bytes; ++i) m[kHeaderBytes + name.size() + i] = PayloadByte(seq, i);
  uint64_t sum = Fnv1a(absl::string_view(m.data(), m.size() - 8));
  std::memcpy(&m[m.size() - 8], &sum, 8);
  return m;
}

struct Decoded {
  uint64_t seq = 0;
  uint64_t sender_id = 0;
};

// Validates a message copied out of the ring (`name` is what the sender
// must have written); an error says what is wrong.
inline absl::Status Decode(absl::string_view m, absl::string_view name_expected, Decoded* out) {
  if (m.size() < kHeaderBytes + 8) return absl::DataLossError(absl::StrCat("short message: ", m.size(), " bytes"));
  uint32_t name_len, payload_len;
  std::memcpy(&out->seq, m.data(), 8);
  std::memcpy(&out->sender_id, m.data() + 8, 8);
  std::memcpy(&name_len, m.data() + 16, 4);
  std::memcpy(&payload_len, m.data() + 20, 4);
  if (uint64_t{kHeaderBytes} + name_len + payload_len + 8 != m.size()) {
    return absl::DataLossError(
        absl::StrCat("length mismatch: ", m.size(), " bytes, name ", name_len, " payload ", payload_len));
  }
  uint64_t sum;
  std::memcpy(&sum, m.data() + m.size() - 8, 8);
  if (sum != Fnv1a(m.substr(0, m.size() - 8))) return absl::DataLossError("checksum mismatch");
  absl::string_view name = m.substr(kHeaderBytes, name_len);
  if (name != name_expected) {
    return absl::DataLossError(absl::StrCat("sender '", name, "' arrived as '", name_expected, "'"));
  }
  absl::string_view payload = m.substr(kHeaderBytes + name_len, payload_len);
  for (size_t i = 0; i < payload.size(); ++i) {
    if (payload[i] != PayloadByte(out->seq, i)) return absl::DataLossError(absl::StrCat("payload byte ", i, " wrong"));
  }
  return absl::OkStatus();
}

// Whether topic `topic` matches subscription `pattern`, written from the
// grammar in mesh/topic.h ('*' is exactly one segment, '**' any number,
// none included) without looking at mesh/pubsub: the tests' oracle for who
// must receive what.
inline bool TopicMatches(absl::string_view pattern, absl::string_view topic) {
  auto split = [](absl::string_view s) {
    std::vector<absl::string_view> out;
    size_t at = 0;
    while (true) {
      const size_t slash = s.find('/', at);
      out.push_back(s.substr(at, slash == absl::string_view::npos ? absl::string_view::npos : slash - at));
      if (slash == absl::string_view::npos) return out;
      at = slash + 1;
    }
  };
  const std::vector<absl::string_view> p = split(pattern), t = split(topic);
  // match[i][j]: p[i..] matches t[j..].
  std::vector<std::vector<char>> match(p.size() + 1, std::vector<char>(t.size() + 1, 0));
  match[p.size()][t.size()] = 1;
  for (size_t i = p.size(); i-- > 0;) {
    for (size_t j = t.size() + 1; j-- > 0;) {
      if (p[i] == "**") {
        match[i][j] = match[i + 1][j] || (j < t.size() && match[i][j + 1]);
      } else if (j < t.size() && (p[i] == "*" || p[i] == t[j])) {
        match[i][j] = match[i + 1][j + 1];
      }
    }
  }
  return match[0][0] != 0;
}

}  // namespace meshworker

#endif  // SHMESH_TESTS_WORKER_WIRE_H_
