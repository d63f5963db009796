#include "mesh/test_util.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "mesh/v1/mesh.grpc.pb.h"

namespace mesh {
namespace testing_util {

mesh::v1::NodeConfig TestConfig(const std::string& dir, const std::string& name,
                                const std::vector<std::string>& seeds) {
  mesh::v1::NodeConfig c;
  c.set_name(name);
  c.set_run_dir(dir);
  for (const auto& s : seeds) c.add_seeds(absl::StrCat("unix:", dir, "/", s, ".grpc"));
  c.set_ring_capacity_bytes(1 << 16);
  // A quarter of the ring (less the frame header and envelope): the
  // messages of the ring-only tests. Tests of large messages (the pool)
  // raise it.
  c.set_max_message_bytes((1 << 16) / 4 - 16);
  c.set_log_level(std::getenv("MESH_TEST_LOG") ? mesh::v1::DEBUG : mesh::v1::WARNING);
  return c;
}

std::string ReadLine(int fd) {
  std::string line;
  char c;
  while (::read(fd, &c, 1) == 1 && c != '\n') line += c;
  return line;
}

absl::Status AnnounceMember(const std::string& grpc_address, const std::string& dir,
                            const std::string& name, uint64_t id, pid_t pid) {
  auto stub = mesh::v1::Discovery::NewStub(grpc::CreateChannel(grpc_address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  mesh::v1::JoinRequest req;
  mesh::v1::Member* m = req.mutable_member();
  m->set_name(name);
  m->set_id(id);
  m->set_pid(pid);
  m->set_uid(::getuid());
  m->set_grpc_address(absl::StrCat("unix:", dir, "/", name, ".grpc"));
  m->set_link_socket(absl::StrCat(dir, "/", name, ".link"));
  m->set_state(mesh::v1::UP);
  m->set_ring_capacity_bytes(4096);
  mesh::v1::JoinResponse resp;
  const grpc::Status st = stub->Join(&ctx, req, &resp);
  return absl::Status(static_cast<absl::StatusCode>(st.error_code()), st.error_message());
}

void WriteLine(int fd, const std::string& line) {
  const std::string l = line + "\n";
  (void)!::write(fd, l.data(), l.size());
}

absl::Duration ThreadCpu(const std::string& comm) {
  bool found = false;
  absl::Duration total;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream c(task.path() / "comm");
    std::string name;
    std::getline(c, name);
    if (name != comm) continue;
    std::ifstream st(task.path() / "stat");
    std::string line;
    std::getline(st, line);
    // Fields after the ")" that closes comm: state is field 3; utime and
    // stime are fields 14 and 15.
    std::istringstream rest(line.substr(line.rfind(')') + 2));
    std::string field;
    long long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
      if (i == 14) utime = std::stoll(field);
      if (i == 15) stime = std::stoll(field);
    }
    found = true;
    total += absl::Seconds(static_cast<double>(utime + stime) / ::sysconf(_SC_CLK_TCK));
  }
  return found ? total : absl::Seconds(-1);
}

}  // namespace testing_util
}  // namespace mesh
