// Regression driver for the fuzz targets: a main() that links with one
// target's LLVMFuzzerTestOneInput and runs it without libFuzzer, so the gcc
// build of `./meshw test` (and its ASan/UBSan/TSAN configs) runs every
// target briefly.
//
//   replay_main --corpus=DIR [--iterations=N] [--seed=S] [--max_seconds=T]
//       Runs every file of DIR, then N inputs made by mutating them with a
//       PRNG seeded with S (byte flips, inserted/erased/copied ranges,
//       interesting values, splices; one in eight is random bytes), stopping
//       early after T seconds. Deterministic for a given S and corpus.
//   replay_main FILE_OR_DIR...
//       Runs just these inputs (e.g. a crash file from `./meshw fuzz`);
//       relative paths are taken from where `bazel run` was started.
//
// A broken property aborts the process (the test fails); the input that did
// it is named on stderr, and with --save_failing=DIR it is also written
// there. A SIGALRM watchdog aborts an input that runs for over 20 s.
#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

constexpr unsigned kWatchdogSeconds = 20;
constexpr size_t kMaxLen = 4096;

// What the watchdog and the abort handler print.
const char* g_current = "(none)";
std::string g_current_storage;
std::string g_save_dir;
std::string g_current_bytes;

void SaveCurrent() {
  if (g_save_dir.empty()) return;
  const std::string path = g_save_dir + "/failing-input";
  std::ofstream out(path, std::ios::binary);
  out.write(g_current_bytes.data(), static_cast<std::streamsize>(g_current_bytes.size()));
  std::fprintf(stderr, "replay: failing input saved to %s\n", path.c_str());
}

void OnSignal(int sig) {
  // Best effort diagnostics on the way down; the process is dying anyway.
  std::fprintf(stderr, "replay: %s while running input %s (%zu bytes)\n",
               sig == SIGALRM ? "watchdog timeout (input ran for over 20 s)" : strsignal(sig), g_current,
               g_current_bytes.size());
  SaveCurrent();
  ::signal(SIGABRT, SIG_DFL);
  std::abort();
}

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  return true;
}

bool IsDir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// Files of `dir`, sorted (so runs are deterministic).
std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> files;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) {
    std::fprintf(stderr, "replay: cannot open directory %s: %s\n", dir.c_str(), std::strerror(errno));
    std::exit(2);
  }
  while (struct dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string path = dir + "/" + e->d_name;
    if (!IsDir(path)) files.push_back(path);
  }
  ::closedir(d);
  std::sort(files.begin(), files.end());
  return files;
}

void RunOne(const std::string& name, const std::string& bytes) {
  g_current_storage = name;
  g_current = g_current_storage.c_str();
  g_current_bytes = bytes;
  ::alarm(kWatchdogSeconds);
  LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  ::alarm(0);
}

std::string Mutate(const std::vector<std::string>& corpus, std::mt19937_64& rng) {
  auto below = [&rng](size_t n) { return n == 0 ? size_t{0} : static_cast<size_t>(rng() % n); };
  std::string s;
  if (corpus.empty() || below(8) == 0) {
    s.resize(below(512));
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  }
  s = corpus[below(corpus.size())];
  static const uint8_t kInteresting[] = {0, 1, 7, 8, 0x10, 0x3f, 0x40, 0x7f, 0x80, 0xfe, 0xff};
  const size_t rounds = 1 + below(8);
  for (size_t r = 0; r < rounds; ++r) {
    switch (below(7)) {
      case 0:  // flip one bit
        if (!s.empty()) s[below(s.size())] ^= static_cast<char>(1u << below(8));
        break;
      case 1:  // random byte
        if (!s.empty()) s[below(s.size())] = static_cast<char>(rng());
        break;
      case 2:  // interesting byte
        if (!s.empty()) s[below(s.size())] = static_cast<char>(kInteresting[below(sizeof(kInteresting))]);
        break;
      case 3: {  // insert random bytes
        std::string ins(1 + below(16), '\0');
        for (char& c : ins) c = static_cast<char>(rng());
        s.insert(below(s.size() + 1), ins);
        break;
      }
      case 4:  // erase a range
        if (!s.empty()) {
          const size_t at = below(s.size());
          s.erase(at, 1 + below(std::min<size_t>(16, s.size() - at)));
        }
        break;
      case 5:  // duplicate a range
        if (!s.empty()) {
          const size_t at = below(s.size());
          const std::string chunk = s.substr(at, 1 + below(32));
          s.insert(below(s.size() + 1), chunk);
        }
        break;
      default: {  // splice: our prefix + another seed's suffix
        const std::string& other = corpus[below(corpus.size())];
        s = s.substr(0, below(s.size() + 1)) + other.substr(below(other.size() + 1));
        break;
      }
    }
  }
  if (s.size() > kMaxLen) s.resize(kMaxLen);
  return s;
}

bool StartsWith(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> corpus_dirs, inputs;
  uint64_t iterations = 2000, seed = 0x5eed5eed;
  double max_seconds = 15;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (StartsWith(a, "--corpus=")) {
      corpus_dirs.push_back(a.substr(9));
    } else if (StartsWith(a, "--iterations=")) {
      iterations = std::strtoull(a.c_str() + 13, nullptr, 10);
    } else if (StartsWith(a, "--seed=")) {
      seed = std::strtoull(a.c_str() + 7, nullptr, 0);
    } else if (StartsWith(a, "--max_seconds=")) {
      max_seconds = std::strtod(a.c_str() + 14, nullptr);
    } else if (StartsWith(a, "--save_failing=")) {
      g_save_dir = a.substr(15);
    } else if (StartsWith(a, "--")) {
      std::fprintf(stderr, "replay: unknown flag %s\n", a.c_str());
      return 2;
    } else {
      inputs.push_back(a);
    }
  }
  if (const char* env = std::getenv("FUZZ_REPLAY_ITERATIONS")) iterations = std::strtoull(env, nullptr, 10);
  if (const char* env = std::getenv("FUZZ_REPLAY_SEED")) seed = std::strtoull(env, nullptr, 0);
  if (g_save_dir.empty()) {
    // Under `bazel test`, keep the failing input with the test's outputs.
    if (const char* env = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR")) g_save_dir = env;
  }
  ::signal(SIGALRM, OnSignal);
  ::signal(SIGABRT, OnSignal);

  // Explicit inputs: replay them and nothing else.
  if (!inputs.empty()) {
    const char* cwd = std::getenv("BUILD_WORKING_DIRECTORY");
    size_t n = 0;
    for (std::string path : inputs) {
      if (path[0] != '/' && cwd != nullptr) path = std::string(cwd) + "/" + path;
      std::vector<std::string> files = IsDir(path) ? ListDir(path) : std::vector<std::string>{path};
      for (const std::string& f : files) {
        std::string bytes;
        if (!ReadFile(f, &bytes)) {
          std::fprintf(stderr, "replay: cannot read %s\n", f.c_str());
          return 2;
        }
        std::fprintf(stderr, "replay: running %s (%zu bytes)\n", f.c_str(), bytes.size());
        RunOne(f, bytes);
        ++n;
      }
    }
    std::fprintf(stderr, "replay: %zu input(s) ran clean\n", n);
    return 0;
  }

  std::vector<std::string> corpus;
  for (const std::string& dir : corpus_dirs) {
    for (const std::string& f : ListDir(dir)) {
      std::string bytes;
      if (!ReadFile(f, &bytes)) {
        std::fprintf(stderr, "replay: cannot read %s\n", f.c_str());
        return 2;
      }
      RunOne(f, bytes);
      corpus.push_back(std::move(bytes));
    }
  }
  if (!corpus_dirs.empty() && corpus.empty()) {
    std::fprintf(stderr, "replay: the corpus is empty\n");
    return 2;
  }
  const auto start = std::chrono::steady_clock::now();
  std::mt19937_64 rng(seed);
  uint64_t ran = 0;
  for (; ran < iterations; ++ran) {
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (elapsed > max_seconds) break;
    RunOne("mutation #" + std::to_string(ran) + " of seed " + std::to_string(seed), Mutate(corpus, rng));
  }
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("replay: %zu corpus files and %llu of %llu mutated inputs ran clean in %.1f s (seed %llu)\n",
              corpus.size(), static_cast<unsigned long long>(ran), static_cast<unsigned long long>(iterations), elapsed,
              static_cast<unsigned long long>(seed));
  return 0;
}
