#include "mesh/control/control_server.h"

#include <sys/epoll.h>

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/base/call_once.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/epoll.h"
#include "base/eventfd.h"
#include "base/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_posix.h"
#include "mesh/base/os.h"

#ifndef GPR_SUPPORT_CHANNELS_FROM_FD
#error "ControlServer needs grpc::AddInsecureChannelFromFd (POSIX gRPC)"
#endif

namespace mesh {
namespace control {
namespace {

// Tags in the accept thread's epoll set.
constexpr uint64_t kTagWake = 0;
constexpr uint64_t kTagListen = 1;

// Process-wide gRPC settings every server of ours relies on: the standard
// health service and server reflection. Both are global switches read by
// each ServerBuilder; set them once, before the first build.
void InitGrpcServerGlobals() {
  static absl::once_flag once;
  absl::call_once(once, [] {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  });
}

}  // namespace

ControlServer::ControlServer(std::string listen, std::vector<uint32_t> allowed_uids, ServiceFactory make_services,
                             const Logger* log)
    : listen_(std::move(listen)),
      unix_path_(absl::StartsWith(listen_, "unix:") ? listen_.substr(5) : std::string()),
      allowed_uids_(std::move(allowed_uids)),
      make_services_(std::move(make_services)),
      log_(log) {}

ControlServer::~ControlServer() { Stop(); }

std::string ControlServer::address() const {
  absl::MutexLock lock(&mu_);
  return address_;
}

absl::Status ControlServer::Start() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kNew) {
    return absl::FailedPreconditionError("the gRPC server was already started; use Restart()");
  }
  InitGrpcServerGlobals();
  if (unix_path_.empty()) {
    tcp_listen_ = listen_;
  } else {
    absl::StatusOr<base::UniqueFd> listener = fdpass::ListenStream(unix_path_, 0600);
    if (!listener.ok()) {
      return absl::Status(listener.status().code(),
                          absl::StrCat("gRPC server cannot listen on ", listen_, ": ", listener.status().message(),
                                       absl::IsAlreadyExists(listener.status())
                                           ? " (another process serves there; change grpc_listen)"
                                           : ""));
    }
    absl::StatusOr<base::UniqueFd> wake = base::MakeEventFd();
    if (!wake.ok()) {
      RemoveFile(unix_path_);
      return wake.status();
    }
    listen_fd_ = std::move(*listener);
    accept_wake_ = std::move(*wake);
  }
  absl::Status built = BuildServerLocked();
  if (!built.ok()) {
    if (listen_fd_) {
      listen_fd_.reset();
      accept_wake_.reset();
      RemoveFile(unix_path_);
    }
    return built;
  }
  state_ = State::kServing;
  return absl::OkStatus();
}

absl::Status ControlServer::Restart() {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kNew || state_ == State::kStopped) {
    return absl::FailedPreconditionError(absl::StrCat("the gRPC server on ", listen_, " is ",
                                                      state_ == State::kNew ? "not started" : "stopped",
                                                      "; nothing to restart"));
  }
  ShutdownServerLocked();
  state_ = State::kDown;
  SHMESH_RETURN_IF_ERROR(BuildServerLocked());
  state_ = State::kServing;
  return absl::OkStatus();
}

void ControlServer::Stop() {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kStopped) return;
  ShutdownServerLocked();
  if (listen_fd_) {
    // Only a file this object bound: a Start that failed with ALREADY_EXISTS
    // must not remove the live owner's socket.
    listen_fd_.reset();
    RemoveFile(unix_path_);
  }
  accept_wake_.reset();
  state_ = State::kStopped;
}

absl::Status ControlServer::BuildServerLocked() {
  grpc::ServerBuilder builder;
  builder.SetMaxReceiveMessageSize(kMaxRequestBytes);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, kMaxStreamsPerConnection);
  int selected_port = 0;
  if (unix_path_.empty()) {
    builder.AddListeningPort(tcp_listen_, grpc::InsecureServerCredentials(), &selected_port);
  }
  std::vector<std::unique_ptr<grpc::Service>> services = make_services_();
  for (auto& service : services) builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || (unix_path_.empty() && selected_port == 0)) {
    if (server != nullptr) server->Shutdown(std::chrono::system_clock::now());
    return absl::UnavailableError(absl::StrCat("gRPC server cannot listen on '",
                                               unix_path_.empty() ? tcp_listen_ : listen_,
                                               "' (address in use or not allowed?); change grpc_listen"));
  }
  if (unix_path_.empty()) {
    const std::string host = tcp_listen_.substr(0, tcp_listen_.rfind(':'));
    tcp_listen_ = absl::StrCat(host, ":", selected_port);
    address_ = tcp_listen_;
  } else {
    address_ = listen_;
    // [AcceptStop] relaxed: no accept thread runs now; starting the thread
    // below orders this store before everything it does.
    accept_stop_.store(false, std::memory_order_relaxed);
    (void)base::DrainEventFd(accept_wake_.get());
    accept_thread_ = std::thread(
        [this, raw = server.get(), listen_fd = listen_fd_.get(), wake_fd = accept_wake_.get()] {
          AcceptLoop(raw, listen_fd, wake_fd);
        });
  }
  services_ = std::move(services);
  server_ = std::move(server);
  return absl::OkStatus();
}

void ControlServer::ShutdownServerLocked() {
  if (accept_thread_.joinable()) {
    // [AcceptStop] release: pairs with the acquire load in the accept
    // thread, which sees the flag once accept_wake_ wakes it.
    accept_stop_.store(true, std::memory_order_release);
    (void)base::SignalEventFd(accept_wake_.get());
    accept_thread_.join();
  }
  if (server_ == nullptr) return;
  // Calls in flight get the grace period, then are cancelled; Shutdown
  // returns once every call has finished (watch streams see the
  // cancellation and end), and closes every connection.
  server_->Shutdown(absl::ToChronoTime(absl::Now() + kShutdownGrace));
  server_->Wait();
  server_.reset();
  services_.clear();
}

bool ControlServer::AcceptStopRequested() const {
  // [AcceptStop] acquire: pairs with the release store in
  // ShutdownServerLocked.
  return accept_stop_.load(std::memory_order_acquire);
}

void ControlServer::AcceptLoop(grpc::Server* server, int listen_fd, int wake_fd) {
  absl::StatusOr<base::Epoll> epoll = base::Epoll::Create();
  if (!epoll.ok() || !epoll->Add(wake_fd, EPOLLIN, kTagWake).ok() ||
      !epoll->Add(listen_fd, EPOLLIN, kTagListen).ok()) {
    log_->Error("gRPC accept thread cannot start (epoll failed); clients of %s will time out", listen_);
    return;
  }
  epoll_event events[2];
  while (!AcceptStopRequested()) {
    const int n = epoll->Wait(events, 2, -1);
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kTagListen && !AcceptStopRequested()) AcceptPending(server, listen_fd, wake_fd);
    }
  }
}

void ControlServer::AcceptPending(grpc::Server* server, int listen_fd, int wake_fd) {
  while (!AcceptStopRequested()) {
    absl::StatusOr<base::UniqueFd> conn = fdpass::Accept(listen_fd, absl::InfinitePast());
    if (absl::IsDeadlineExceeded(conn.status())) return;  // nothing pending
    // The client gave up before we got to it (ECONNABORTED): next one.
    if (absl::IsUnavailable(conn.status())) continue;
    if (!conn.ok()) {
      // Out of descriptors (EMFILE/ENFILE: RESOURCE_EXHAUSTED), or worse:
      // the connection stays queued and the listen socket readable, so
      // returning at once would spin the level-triggered epoll. Back off (a
      // stop request cuts the wait short); serving resumes when the cause
      // goes away.
      uint64_t left_out = 0;
      if (exhausted_log_.Allow(absl::Now(), &left_out)) {
        log_->Warning("cannot accept gRPC connections on %s: %s; retrying every %s%s", listen_,
                      conn.status().message(), absl::FormatDuration(kAcceptBackoff), LogLimiter::LeftOut(left_out));
      }
      (void)fdpass::WaitReadable(wake_fd, absl::Now() + kAcceptBackoff);
      return;
    }
    absl::StatusOr<fdpass::PeerCred> cred = fdpass::GetPeerCred(conn->get());
    if (!cred.ok()) {
      log_->Debug("dropping a gRPC connection without credentials: %s", cred.status().message());
      continue;
    }
    if (std::find(allowed_uids_.begin(), allowed_uids_.end(), cred->uid) == allowed_uids_.end()) {
      Refuse(std::move(*conn), *cred);
      continue;
    }
    // gRPC owns the descriptor from here on and closes it with the
    // connection.
    grpc::AddInsecureChannelFromFd(server, conn->release());
  }
}

void ControlServer::Refuse(base::UniqueFd conn, const fdpass::PeerCred& cred) {
  // Logged (or counted for the next line) before the descriptor closes, so
  // the refusal is on record by the time the client sees it.
  uint64_t left_out = 0;
  if (refusal_log_.Allow(absl::Now(), &left_out)) {
    log_->Warning(
        "refused a gRPC connection on %s from pid %d, uid %d: uid %d is not in allowed_peer_uids; "
        "add uid %d to allowed_peer_uids to let it call this node%s",
        unix_path_, cred.pid, cred.uid, cred.uid, cred.uid, LogLimiter::LeftOut(left_out, "refused"));
  }
  conn.reset();  // then at once: the client's call fails with UNAVAILABLE
}

}  // namespace control
}  // namespace mesh
