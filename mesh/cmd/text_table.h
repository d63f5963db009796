// An aligned text table for the tools' output (topology_format.cc,
// topics_format.cc): per-column alignment, two spaces between columns, no
// trailing blanks. Internal to //mesh/cmd:topology_format.
//
// Thread contract: thread-compatible.
#ifndef SHMESH_MESH_CMD_TEXT_TABLE_H_
#define SHMESH_MESH_CMD_TEXT_TABLE_H_

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace mesh {
namespace cmd {

class TextTable {
 public:
  // `right_aligned[i]` for numeric columns; one entry per header column.
  TextTable(std::vector<std::string> header, std::vector<bool> right_aligned)
      : right_(std::move(right_aligned)) {
    rows_.push_back(std::move(header));
  }
  // REQUIRES: `row` has as many cells as the header.
  void AddRow(std::vector<std::string> row) { rows_.push_back(std::move(row)); }

  // The header and every row, each line ending in "\n".
  std::string Render() const {
    std::vector<size_t> width(rows_[0].size(), 0);
    for (const auto& row : rows_) {
      for (size_t i = 0; i < row.size(); ++i) {
        width[i] = std::max(width[i], row[i].size());
      }
    }
    std::string out;
    for (const auto& row : rows_) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        const size_t pad = width[i] - row[i].size();
        if (i > 0) line += "  ";
        if (right_[i]) line.append(pad, ' ');
        line += row[i];
        if (!right_[i]) line.append(pad, ' ');
      }
      // No trailing blanks from a left-aligned last column.
      while (!line.empty() && line.back() == ' ') line.pop_back();
      absl::StrAppend(&out, line, "\n");
    }
    return out;
  }

 private:
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace cmd
}  // namespace mesh

#endif  // SHMESH_MESH_CMD_TEXT_TABLE_H_
