// The payload pattern and hash that tests/pool_integration_test and its
// peer process (pool_peer) agree on. Test-only.
#ifndef SHMESH_TESTS_POOL_HASH_H_
#define SHMESH_TESTS_POOL_HASH_H_

#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace pool_test {

// Byte i of message k: (i * 31 + k) & 0xff.
inline void Fill(uint8_t* data, size_t size, uint64_t k) {
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<uint8_t>(i * 31 + k);
}

// A 64-bit hash of `bytes`, 8 bytes at a time (fast enough for 1 GiB),
// as hex.
inline std::string Hash(absl::string_view bytes) {
  uint64_t h = 1469598103934665603ull ^ bytes.size();
  size_t i = 0;
  for (; i + 8 <= bytes.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, bytes.data() + i, 8);
    h = (h ^ w) * 1099511628211ull;
    h ^= h >> 29;
  }
  for (; i < bytes.size(); ++i) h = (h ^ static_cast<uint8_t>(bytes[i])) * 1099511628211ull;
  return absl::StrCat(absl::Hex(h));
}

}  // namespace pool_test

#endif  // SHMESH_TESTS_POOL_HASH_H_
