// The GoogleTest fixture of the topic and service suites
// (topics_integration_test.cc, services_integration_test.cc): a short run
// directory per test, mesh_worker processes launched into it, kill -9 and
// clean stops, and the `report` round trip. Every check that fails inside
// it is a test failure. Test-only.
//
// Thread contract: used from the test's main thread only (workers die with
// the thread that launched them: PR_SET_PDEATHSIG).
#ifndef SHMESH_TESTS_WORKER_FIXTURE_H_
#define SHMESH_TESTS_WORKER_FIXTURE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/worker_process.h"

namespace meshtest {

inline constexpr absl::Duration kStepTimeout = absl::Seconds(30);
inline constexpr absl::Duration kExitTimeout = absl::Seconds(20);

class WorkerFixture : public ::testing::Test {
 protected:
  void SetUp() override;
  // Kills and reaps every worker still running, removes the run directory.
  void TearDown() override;

  // "unix:<dir>/<name>.grpc".
  std::string Target(const std::string& name) const;
  // Launches mesh_worker `name` joining through `seeds` (node names) with
  // `extra` flags; nullptr (and a test failure) if it cannot be started.
  Worker* Launch(const std::string& name, const std::vector<std::string>& seeds,
                 const std::vector<std::string>& extra);
  // Launches and waits for READY; nullptr (and a test failure) otherwise.
  Worker* LaunchReady(const std::string& name, const std::vector<std::string>& seeds,
                      const std::vector<std::string>& extra);
  // kill -9 and reap; returns CLOCK_MONOTONIC just before the kill.
  int64_t KillHard(Worker* w);
  // SIGTERM to every live worker: each must print EXITING and exit 0; the
  // run directory must then hold only the sockets of nodes killed with -9
  // and never restarted.
  void StopAllAndCheckClean();

  // `report`: the lines between the command and REPORTED.
  std::vector<std::string> Report(Worker* w);
  // Sends `report` every 50 ms until `done` accepts the lines (true) or
  // `timeout` passes (false, with the last lines in *last if given).
  bool ReportUntil(Worker* w, const std::function<bool(const std::vector<std::string>&)>& done,
                   absl::Duration timeout, std::vector<std::string>* last = nullptr);
  // Waits for a line of `w` (from line `from` on) starting with `prefix`
  // and returns it; "" (and a test failure naming `what`) at the timeout.
  std::string Expect(Worker* w, const std::string& prefix, const std::string& what,
                     absl::Duration timeout = kStepTimeout, size_t from = 0);

  std::string dir_;
  std::string binary_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::set<std::string> killed_;
};

// The lines of `lines` that start with `prefix`.
std::vector<std::string> WithPrefix(const std::vector<std::string>& lines, const std::string& prefix);

}  // namespace meshtest

#endif  // SHMESH_TESTS_WORKER_FIXTURE_H_
