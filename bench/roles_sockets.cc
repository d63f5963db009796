// The alternatives a user would otherwise pick, carrying the same traffic:
// a Unix domain stream socket, ZeroMQ over ipc://, and gRPC over a Unix
// socket (unary Echo for latency, client streaming for throughput).
#include <unistd.h>
#include <zmq.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/bench.grpc.pb.h"
#include "bench/harness.h"
#include "bench/roles.h"
#include "grpcpp/grpcpp.h"

namespace shmesh_bench {
namespace {

struct Payloads {
  explicit Payloads(size_t size) : ping(size, 'x'), data(size, 'x'), end(size, 'x') {
    ping[0] = kPingByte;
    data[0] = kDataByte;
    end[0] = kEndByte;
  }
  std::string ping, data, end;
};

void WaitForStdinEof() {
  char buf[256];
  while (::read(0, buf, sizeof(buf)) > 0) {
  }
}

Command MakeCommand(Op op, uint64_t size, uint64_t count) {
  Command cmd;
  cmd.op = op;
  cmd.size = size;
  cmd.count = count;
  return cmd;
}

void EmitLatency(const std::string& row, std::vector<int64_t>& one_way) {
  const Percentiles pc = ComputePercentiles(one_way);
  Emit(RowLine(row, 64, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
}

void EmitThroughput(const std::string& row, uint64_t size, uint64_t n, int64_t ns) {
  const double seconds = static_cast<double>(ns) / 1e9;
  Emit(RowLine(row, size, {{"msgs_per_s", n / seconds}, {"gb_per_s", n * size / seconds / 1e9}}));
}

// A generic message client over `send(data, n)` / `recv(buf, cap) -> n`,
// running the commands from stdin (harness.h).
template <typename SendFn, typename RecvFn>
void MessageClient(const RoleConfig& config, const std::string& row, SendFn send, RecvFn recv) {
  std::vector<char> buf(kMaxPayload + 64);
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind == ClientCommand::kPingSleep) Die("ping_sleep is for the raw ring only");
    if (command->kind == ClientCommand::kPing) {
      const Payloads p(64);
      const uint64_t total = config.warmup + config.samples;
      const Command cmd = MakeCommand(Op::kPing, 64, total);
      send(&cmd, sizeof(cmd));
      std::vector<int64_t> one_way;
      one_way.reserve(config.samples);
      for (uint64_t i = 0; i < total; ++i) {
        const int64_t t0 = NowNs();
        send(p.ping.data(), 64);
        if (recv(buf.data(), 64) != 64) Die(row + " client: bad reply");
        const int64_t t1 = NowNs();
        if (i >= config.warmup) one_way.push_back((t1 - t0) / 2);
      }
      EmitLatency(row, one_way);
    } else {
      const uint64_t size = command->size;
      const Payloads p(size);
      const Command cmd = MakeCommand(Op::kThroughput, size, 0);
      send(&cmd, sizeof(cmd));
      uint64_t n = 0;
      const int64_t t0 = NowNs();
      const int64_t end_at = t0 + config.duration_ms * 1000000;
      do {
        for (int k = 0; k < config.batch; ++k) send(p.data.data(), size);
        n += config.batch;
      } while (NowNs() < end_at);
      send(p.end.data(), size);
      Ack ack;
      if (recv(&ack, sizeof(ack)) != sizeof(ack)) Die(row + " client: bad ack");
      const int64_t t1 = NowNs();
      if (ack.magic != kAckMagic || ack.count != n) {
        Die(absl::StrCat(row, " client: server got ", ack.count, " of ", n, " messages"));
      }
      EmitThroughput(row, size, n, t1 - t0);
    }
    Emit("OK");
  }
  const Command quit = MakeCommand(Op::kQuit, 0, 0);
  send(&quit, sizeof(quit));
}

// ------------------------------------------------------------------ uds

void UdsServe(int fd) {
  std::vector<char> buf(256 * 1024);
  for (;;) {
    Command cmd;
    ReadFull(fd, &cmd, sizeof(cmd));
    if (cmd.magic != kCommandMagic) Die("uds server: bad command");
    if (cmd.op == Op::kQuit) return;
    if (cmd.op == Op::kPing) {
      for (uint64_t i = 0; i < cmd.count; ++i) {
        ReadFull(fd, buf.data(), cmd.size);
        WriteFull(fd, buf.data(), cmd.size);
      }
      continue;
    }
    // Throughput: a stream of fixed-size frames; the one starting with
    // kEndByte is the last.
    uint64_t n = 0, in_frame = 0;
    char first = 0;
    bool end = false;
    while (!end) {
      const ssize_t r = ::read(fd, buf.data(), buf.size());
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) Die("uds server: read failed");
      size_t pos = 0;
      while (pos < static_cast<size_t>(r)) {
        if (in_frame == 0) first = buf[pos];
        const size_t take = std::min<size_t>(cmd.size - in_frame, static_cast<size_t>(r) - pos);
        pos += take;
        in_frame += take;
        if (in_frame == cmd.size) {
          in_frame = 0;
          if (first == kEndByte) {
            end = true;
          } else {
            ++n;
          }
        }
      }
    }
    Ack ack;
    ack.count = n;
    WriteFull(fd, &ack, sizeof(ack));
  }
}

// ------------------------------------------------------------------ zmq

void ZmqCheck(int rc, const char* what) {
  if (rc < 0) Die(absl::StrCat("zmq ", what, ": ", zmq_strerror(zmq_errno())));
}

// ------------------------------------------------------------------ grpc

// Callback API: Echo answers at once; Stream counts until the client ends.
class BenchService final : public shmesh::bench::Bench::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* context,
                                 const shmesh::bench::Payload* request,
                                 shmesh::bench::Payload* response) override {
    *response->mutable_data() = request->data();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerReadReactor<shmesh::bench::Payload>* Stream(
      grpc::CallbackServerContext* context, shmesh::bench::Count* response) override {
    class Counter : public grpc::ServerReadReactor<shmesh::bench::Payload> {
     public:
      explicit Counter(shmesh::bench::Count* response) : response_(response) { StartRead(&payload_); }
      void OnReadDone(bool ok) override {
        if (!ok) {
          response_->set_messages(count_);
          Finish(grpc::Status::OK);
          return;
        }
        ++count_;
        StartRead(&payload_);
      }
      void OnDone() override { delete this; }

     private:
      shmesh::bench::Count* response_;
      shmesh::bench::Payload payload_;
      uint64_t count_ = 0;
    };
    return new Counter(response);
  }
};

}  // namespace

int UdsServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  const int listen_fd = UnixListen(config.run_dir + "/uds.sock");
  Emit("READY");
  const int fd = UnixAccept(listen_fd);
  UdsServe(fd);
  ::close(fd);
  ::close(listen_fd);
  WaitForStdinEof();
  return 0;
}

int UdsClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  const int fd = UnixConnect(config.run_dir + "/uds.sock", absl::Seconds(10));
  MessageClient(
      config, "uds", [fd](const void* data, size_t n) { WriteFull(fd, data, n); },
      [fd](void* buf, size_t n) {
        ReadFull(fd, buf, n);
        return n;
      });
  ::close(fd);
  return 0;
}

int ZmqServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_PAIR);
  if (sock == nullptr) Die("zmq_socket failed");
  ZmqCheck(zmq_bind(sock, ("ipc://" + config.run_dir + "/zmq.ipc").c_str()), "bind");
  Emit("READY");
  std::vector<char> buf(kMaxPayload + 64);
  auto recv = [&]() {
    const int n = zmq_recv(sock, buf.data(), buf.size(), 0);
    ZmqCheck(n, "recv");
    return static_cast<size_t>(n);
  };
  for (bool quit = false; !quit;) {
    Command cmd;
    if (recv() != sizeof(cmd)) Die("zmq server: bad command");
    std::memcpy(&cmd, buf.data(), sizeof(cmd));
    switch (cmd.op) {
      case Op::kPing:
        for (uint64_t i = 0; i < cmd.count; ++i) {
          const size_t n = recv();
          ZmqCheck(zmq_send(sock, buf.data(), n, 0), "send");
        }
        break;
      case Op::kThroughput: {
        uint64_t count = 0;
        for (;;) {
          const size_t n = recv();
          if (n > 0 && buf[0] == kEndByte) break;
          ++count;
        }
        Ack ack;
        ack.count = count;
        ZmqCheck(zmq_send(sock, &ack, sizeof(ack), 0), "send");
        break;
      }
      case Op::kQuit:
        quit = true;
        break;
      case Op::kPingSleep:
        Die("zmq server: ping_sleep is for the raw ring only");
      case Op::kPingLoan:
      case Op::kThroughputLoan:
        Die("zmq server: loans are for the pool roles only");
    }
  }
  WaitForStdinEof();
  zmq_close(sock);
  zmq_ctx_term(ctx);
  return 0;
}

int ZmqClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  void* ctx = zmq_ctx_new();
  void* sock = zmq_socket(ctx, ZMQ_PAIR);
  if (sock == nullptr) Die("zmq_socket failed");
  ZmqCheck(zmq_connect(sock, ("ipc://" + config.run_dir + "/zmq.ipc").c_str()), "connect");
  MessageClient(
      config, "zmq",
      [sock](const void* data, size_t n) { ZmqCheck(zmq_send(sock, data, n, 0), "send"); },
      [sock](void* buf, size_t n) {
        const int r = zmq_recv(sock, buf, n, 0);
        ZmqCheck(r, "recv");
        return static_cast<size_t>(r);
      });
  int linger = 1000;
  zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger));
  zmq_close(sock);
  zmq_ctx_term(ctx);
  return 0;
}

int GrpcServerRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  BenchService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + config.run_dir + "/grpc.sock", grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) Die("grpc server failed to start");
  Emit("READY");
  WaitForStdinEof();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

int GrpcClientRole(const RoleConfig& config) {
  PinToCpu(config.cpu);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel("unix:" + config.run_dir + "/grpc.sock", grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    Die("grpc client: cannot connect");
  }
  std::unique_ptr<shmesh::bench::Bench::Stub> stub = shmesh::bench::Bench::NewStub(channel);
  Emit("READY");
  while (std::optional<ClientCommand> command = NextCommand()) {
    if (command->kind == ClientCommand::kPingSleep) Die("ping_sleep is for the raw ring only");
    if (command->kind == ClientCommand::kPing) {
      shmesh::bench::Payload request;
      request.set_data(Payloads(64).ping);
      shmesh::bench::Payload response;
      const uint64_t total = config.warmup + config.samples;
      std::vector<int64_t> one_way;
      one_way.reserve(config.samples);
      for (uint64_t i = 0; i < total; ++i) {
        const int64_t t0 = NowNs();
        grpc::ClientContext context;
        const grpc::Status status = stub->Echo(&context, request, &response);
        const int64_t t1 = NowNs();
        if (!status.ok() || response.data().size() != 64) Die("grpc client: echo failed");
        if (i >= config.warmup) one_way.push_back((t1 - t0) / 2);
      }
      EmitLatency("grpc_unary", one_way);
    } else {
      const uint64_t size = command->size;
      shmesh::bench::Payload data;
      data.set_data(Payloads(size).data);
      grpc::ClientContext context;
      shmesh::bench::Count count;
      uint64_t n = 0;
      const int64_t t0 = NowNs();
      const int64_t end_at = t0 + config.duration_ms * 1000000;
      std::unique_ptr<grpc::ClientWriter<shmesh::bench::Payload>> writer = stub->Stream(&context, &count);
      do {
        for (int k = 0; k < config.batch; ++k) {
          if (!writer->Write(data)) Die("grpc client: stream write failed");
        }
        n += config.batch;
      } while (NowNs() < end_at);
      writer->WritesDone();
      const grpc::Status status = writer->Finish();
      const int64_t t1 = NowNs();
      if (!status.ok() || count.messages() != n) {
        Die(absl::StrCat("grpc client: stream failed or short: ", count.messages(), " of ", n));
      }
      EmitThroughput("grpc_stream", size, n, t1 - t0);
    }
    Emit("OK");
  }
  return 0;
}

}  // namespace shmesh_bench
