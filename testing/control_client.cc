// testing/control_client: a client of a node's gRPC control plane in a
// process of its own, which may run as another uid, for
// control_server_test.cc (a test process cannot switch its own uid and
// still be root, and must not use gRPC in a fork()ed child).
//
//   control_client UID topology TARGET
//       Calls Topology.GetTopology(local_only) on TARGET with a 10 s
//       deadline; prints "uid=<uid> code=<CODE> message=<text>" and exits 0
//       whatever the call's status.
//   control_client UID topology-on-sigusr1 TARGET
//       The same, once a SIGUSR1 arrives (the caller blocks SIGUSR1 before
//       exec, so one sent early stays pending).
//   control_client UID raw PATH N
//       N times, one after the other: connects a SOCK_STREAM socket to
//       PATH, sends the HTTP/2 client preface, and waits up to 10 s for the
//       server: "answered" if bytes come back (gRPC's SETTINGS), "closed" if
//       it closes the connection first. Prints
//       "uid=<uid> answered=<a> closed=<c> failed=<f>" and exits 0.
//
// UID -1 keeps the caller's uid. Any other value makes the process drop to
// that uid and gid (setresgid, setresuid: needs root) before it does
// anything else. Exit status 2: bad usage; 3: could not change uid.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "grpcpp/grpcpp.h"
#include "mesh/v1/mesh.grpc.pb.h"

namespace {

constexpr int kTimeoutMs = 10000;

int Topology(const std::string& target) {
  auto stub =
      mesh::v1::Topology::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(kTimeoutMs));
  mesh::v1::GetTopologyRequest req;
  req.set_local_only(true);
  mesh::v1::TopologySnapshot snap;
  grpc::Status s = stub->GetTopology(&ctx, req, &snap);
  std::printf("uid=%u code=%s message=%s reporter=%s\n", ::getuid(),
              absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(),
              s.error_message().c_str(), snap.reporter().c_str());
  return 0;
}

// One raw connection: 'a' answered, 'c' closed, 'f' failed.
char RawOnce(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 'f';
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  char result = 'f';
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    static const char kPreface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // The server may already have closed: a failed write is not an answer.
    (void)!::send(fd, kPreface, sizeof(kPreface) - 1, MSG_NOSIGNAL);
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, kTimeoutMs) == 1) {
      char buf[64];
      ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
      result = n > 0 ? 'a' : (n == 0 || errno == ECONNRESET) ? 'c' : 'f';
    }
  }
  ::close(fd);
  return result;
}

int Raw(const std::string& path, int n) {
  int answered = 0, closed = 0, failed = 0;
  for (int i = 0; i < n; ++i) {
    switch (RawOnce(path)) {
      case 'a':
        ++answered;
        break;
      case 'c':
        ++closed;
        break;
      default:
        ++failed;
    }
  }
  std::printf("uid=%u answered=%d closed=%d failed=%d\n", ::getuid(), answered, closed, failed);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int uid = 0;
  if (argc < 4 || !absl::SimpleAtoi(argv[1], &uid)) {
    std::fprintf(stderr, "usage: %s UID topology[-on-sigusr1] TARGET | UID raw PATH N\n", argv[0]);
    return 2;
  }
  if (uid != -1 && (::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0)) {
    std::fprintf(stderr, "cannot become uid %d: %s\n", uid, std::strerror(errno));
    return 3;
  }
  const std::string mode = argv[2];
  if (mode == "topology" && argc == 4) return Topology(argv[3]);
  if (mode == "topology-on-sigusr1" && argc == 4) {
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ::sigprocmask(SIG_BLOCK, &usr1, nullptr);
    int sig = 0;
    if (::sigwait(&usr1, &sig) != 0) return 2;
    return Topology(argv[3]);
  }
  int n = 0;
  if (mode == "raw" && argc == 5 && absl::SimpleAtoi(argv[4], &n)) return Raw(argv[3], n);
  std::fprintf(stderr, "usage: %s UID topology[-on-sigusr1] TARGET | UID raw PATH N\n", argv[0]);
  return 2;
}
