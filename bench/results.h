// The rows a benchmark run collects (one value per repetition and field),
// their medians, and the two ways they are printed: the Markdown table and
// the JSON file (--json).
#ifndef SHMESH_BENCH_RESULTS_H_
#define SHMESH_BENCH_RESULTS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shmesh_bench {

// The statistics a row may carry, in the JSON file's order.
inline constexpr const char* kFields[] = {"p50_ns",   "p99_ns",      "p999_ns",  "msgs_per_s",
                                          "gb_per_s", "cpu_percent", "setup_ms", "shm_resident_mib"};

struct Row {
  std::string name;
  uint64_t payload = 0;
  std::map<std::string, std::vector<double>> reps;  // field -> one value per repetition

  // The median of `field` over the repetitions (none: nullopt).
  std::optional<double> Median(const std::string& field) const;
};

class Results {
 public:
  // Parses "ROW name payload key=value ..." (dies on a malformed line).
  void Add(const std::string& line);
  void AddAll(const std::vector<std::string>& lines) {
    for (const std::string& line : lines) Add(line);
  }
  void AddValue(const std::string& name, uint64_t payload, const std::string& field, double value) {
    Get(name, payload).reps[field].push_back(value);
  }

  const Row* Find(const std::string& name, uint64_t payload) const {
    for (const Row& r : rows_) {
      if (r.name == name && r.payload == payload) return &r;
    }
    return nullptr;
  }
  std::optional<double> Median(const std::string& name, uint64_t payload, const std::string& field) const {
    const Row* r = Find(name, payload);
    return r == nullptr ? std::nullopt : r->Median(field);
  }

  // Rows in the table's order: by name (kOrder in results.cc), then payload.
  std::vector<Row> Sorted() const;

 private:
  Row& Get(const std::string& name, uint64_t payload) {
    for (Row& r : rows_) {
      if (r.name == name && r.payload == payload) return r;
    }
    rows_.push_back(Row{name, payload, {}});
    return rows_.back();
  }
  std::vector<Row> rows_;
};

// "64 B", "1 KiB", "8 MiB"; "-" for 0.
std::string HumanSize(uint64_t bytes);
// The Markdown table of every row's medians (stdout).
void PrintTable(const Results& results);
// The medians as a JSON array; false if `path` cannot be written.
bool WriteJson(const std::string& path, const Results& results);

}  // namespace shmesh_bench

#endif  // SHMESH_BENCH_RESULTS_H_
