// meshd: runs one shmesh node from a config file until SIGTERM or SIGINT.
// SIGHUP restarts the node's gRPC server only (links and messages are
// unaffected).
//
//   meshd --config node.textproto [--print] [--stdin [--exit_on_eof]]
//         [--log_level=debug|info|warning|error]
//         [--wait_peers=N [--wait_timeout_ms=M]]
//         [--subscribe=PATTERN,...]
//         [--publish=TOPIC [--history=N] [--shared_ring]] [--serve=NAME,...]
//
// Logs one timestamped line per event on stderr; with --print writes every
// received message to stdout; with --stdin sends the lines it reads (or,
// with --publish, publishes them); with --subscribe prints the topic
// messages it gets; with --serve answers requests (upper-cased).
//
// Exit status: 0 after a clean stop (signal, or EOF with --exit_on_eof);
// 1 the node could not start; 2 bad usage or a bad config file (one line on
// stderr: "meshd: <what is wrong>").
//
// Threads: main() blocks SIGINT, SIGTERM and SIGHUP before anything else (so
// every thread the node starts inherits the mask), then waits on a signalfd
// and, with --stdin, on stdin, in one poll loop. Node handlers run on the
// node's threads and only log or print.
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "mesh/cmd/flags.h"
#include "mesh/cmd/member.h"
#include "mesh/cmd/meshd_io.h"
#include "mesh/cmd/meshd_topics.h"
#include "mesh/config.h"
#include "mesh/node.h"
#include "mesh/version.h"
#include "mesh/v1/config.pb.h"

ABSL_FLAG(std::string, config, "",
          "Path of the node's config file: protobuf text format, or JSON if "
          "it ends in .json (see mesh/v1/config.proto). Required.");
ABSL_FLAG(bool, print, false,
          "Print every received message to stdout as \"<from>: <payload>\", "
          "one line each (non-printable bytes escaped as in C), flushed per "
          "line.");
ABSL_FLAG(bool, stdin, false,
          "Send the lines read from stdin: \"@peer text\" sends \"text\" to "
          "peer; \"@* text\" or any line not starting with '@' is broadcast "
          "to every linked peer. Empty lines are skipped. Send errors are "
          "logged, not fatal. EOF keeps the node running unless "
          "--exit_on_eof. With --wait_peers, reading starts once the wait "
          "ends.");
ABSL_FLAG(bool, exit_on_eof, false,
          "With --stdin: stop cleanly (exit 0) at the end of stdin, once "
          "the peers have read what was sent (waiting at most 2 s).");
ABSL_FLAG(int32_t, send_timeout_ms, 1000,
          "With --stdin: how long a send (or, with --publish, a publish) "
          "may wait for ring space when the ring to a peer is full (0: fail "
          "at once).");
ABSL_FLAG(std::string, log_level, "",
          "Override the config's log_level: debug, info, warning or error.");
ABSL_FLAG(int32_t, wait_peers, 0,
          "After starting, wait until this many peers are linked and log "
          "when they are (or when --wait_timeout_ms passes; the node keeps "
          "running either way).");
ABSL_FLAG(int32_t, wait_timeout_ms, 10000,
          "With --wait_peers: give up waiting after this many milliseconds "
          "(0: no limit).");
ABSL_FLAG(std::string, subscribe, "",
          "Subscribe to these topic patterns (comma-separated; \"*\" is one "
          "segment, \"**\" any number, e.g. \"chat/*,sensors/**\") and "
          "print every message as \"<topic> <from> <payload>\" on stdout, "
          "one line each, escaped as with --print.");
ABSL_FLAG(std::string, publish, "",
          "With --stdin: publish each line read from stdin to this topic "
          "instead of sending it to peers (the whole line, \"@\" included; "
          "empty lines are skipped).");
ABSL_FLAG(int32_t, history, 0,
          "With --publish: keep the last N lines (at most 4096) and give "
          "them to every subscriber that comes later (it subscribes, or its "
          "node joins), before the live ones.");
ABSL_FLAG(bool, shared_ring, false,
          "With --publish: publish through one shared ring for all "
          "subscribers (PublisherOptions::shared_ring): each line is written "
          "once, however many subscribe; a line may be at most half of the "
          "config's ring_capacity_bytes, and a subscriber that holds the "
          "ring past --send_timeout_ms is evicted (logged) until the next "
          "line.");
ABSL_FLAG(std::string, serve, "",
          "Serve these services (comma-separated names): each request is "
          "answered with its payload upper-cased (ASCII letters; other bytes "
          "as they are). Try: meshctl --target ADDR call NAME hello.");

namespace {

using ::mesh::cmd::Log;
using ::mesh::cmd::OneLine;
using ::mesh::cmd::StdinSender;
using ::mesh::cmd::WriteAll;
using ::mesh::v1::LogLevel;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// With --exit_on_eof: how long to wait for peers to read the last lines.
constexpr absl::Duration kEofFlushTimeout = absl::Seconds(2);

constexpr char kUsage[] =
    "usage: meshd --config FILE [--print] [--stdin [--exit_on_eof]] "
    "[--log_level=LEVEL] [--wait_peers=N [--wait_timeout_ms=M]]\n"
    "             [--subscribe=PATTERN,...] [--publish=TOPIC [--history=N] "
    "[--shared_ring]] [--serve=NAME,...]\n";

constexpr char kHelp[] =
    R"(meshd: run one shmesh node from a config file until SIGTERM or SIGINT.

usage: meshd --config FILE [flags]

The node joins the mesh through the config's seeds, links with every member
through shared memory, and serves the mesh.v1 control plane on its
grpc_listen address (inspect it with meshctl). Log lines go to stderr:
  2026-11-22T18:03:01.123Z shmesh[a] INFO peer up: b (pid 4242)

The config file is a mesh.v1.NodeConfig in protobuf text format (or JSON if
its name ends in .json); its fields are documented in mesh/v1/config.proto
(in shmesh's proto/ folder, or include/shmesh/ of an installed copy). The
least a node needs (gRPC then listens on unix:<run_dir>/<name>.grpc):
  name: "b"                               # unique in the mesh
  run_dir: "/tmp/shmesh-demo"             # the nodes' sockets
  seeds: "unix:/tmp/shmesh-demo/a.grpc"   # any member; none for the first

flags (--flag=value or --flag value; bools also --flag / --noflag):
  --version
      print meshd's version and exit.
)";

constexpr char kHelpTail[] = R"(
signals: SIGTERM or SIGINT leaves the mesh and stops. SIGHUP restarts only the
node's gRPC server (the control plane: calls in flight are cancelled, clients
reconnect); links and messages are unaffected.

exit status: 0 after a clean stop; 1 the node could not start; 2 bad usage or
a bad config file.

examples:
  meshd --config a.textproto
  meshd --config a.textproto --print --wait_peers=2
  printf '@b hello\nto everyone\n' | meshd --config a.textproto --stdin \
      --wait_peers=1 --exit_on_eof
  meshd --config b.textproto --subscribe='chat/*,sensors/**'
  meshd --config c.textproto --stdin --publish=chat/general --history=10
  meshd --config c.textproto --stdin --publish=ticks --shared_ring
  meshd --config d.textproto --serve=upper
)";

int UsageError(absl::string_view message) {
  std::cerr << "meshd: " << OneLine(message) << "\n"
            << kUsage << "Run meshd --help for details.\n";
  return kExitUsage;
}

absl::StatusOr<LogLevel> ParseLogLevel(absl::string_view text) {
  LogLevel level;
  const std::string upper = absl::AsciiStrToUpper(text);
  if (upper != "LOG_LEVEL_UNSPECIFIED" &&
      mesh::v1::LogLevel_Parse(upper, &level)) {
    return level;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("bad value \"", text,
                   "\" for --log_level; use debug, info, warning or error"));
}

// The signals meshd handles (stop: SIGINT, SIGTERM; restart the gRPC
// server: SIGHUP), blocked in every thread and read from a signalfd.
sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

absl::StatusOr<base::UniqueFd> MakeSignalFd(const sigset_t& set) {
  const int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, "signalfd(SIGINT, SIGTERM, SIGHUP)");
  }
  return base::UniqueFd(fd);
}

// Reads one pending signal from the signalfd (borrowed): its number, or 0 if
// none is pending.
int ReadSignal(int fd) {
  signalfd_siginfo info;
  const ssize_t n = ::read(fd, &info, sizeof(info));
  return n == static_cast<ssize_t>(sizeof(info))
             ? static_cast<int>(info.ssi_signo)
             : 0;
}

const char* SignalName(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "signal";
}

// Reads the pending signals from the signalfd (borrowed): restarts the
// node's gRPC server for each SIGHUP, and returns the first stop signal
// (SIGINT or SIGTERM), or 0 if none is pending.
int HandleSignals(int fd, mesh::Node* node, const Log& log) {
  while (const int sig = ReadSignal(fd)) {
    if (sig != SIGHUP) return sig;
    log.Info("received SIGHUP; restarting the gRPC server");
    // The node logs the restart itself.
    const absl::Status restarted = node->RestartControlServer();
    if (!restarted.ok()) {
      log.Error(absl::StrCat("gRPC server restart failed: ",
                             restarted.message(),
                             "; send SIGHUP again to retry"));
    }
  }
  return 0;
}

// Loads the config (honoring --log_level) and builds the node. Errors are
// config errors, already naming the file.
absl::StatusOr<std::unique_ptr<mesh::Node>> CreateNode(
    const std::string& path, std::optional<LogLevel> level_override) {
  if (!level_override.has_value()) return mesh::Node::CreateFromFile(path);
  absl::StatusOr<mesh::v1::NodeConfig> config = mesh::LoadConfigFile(path);
  if (!config.ok()) return config.status();
  config = mesh::ResolveConfig(*config, path);
  if (!config.ok()) return config.status();
  config->set_log_level(*level_override);
  return mesh::Node::Create(*config);
}

// Waits for --wait_peers peers, in slices so that a stop signal is seen
// within 100 ms. Returns the stop signal if one came, else 0.
int WaitForPeers(mesh::Node* node, const Log& log, int signal_fd, int32_t n,
                 int32_t timeout_ms) {
  const absl::Time start = absl::Now();
  const absl::Time deadline = timeout_ms > 0
                                  ? start + absl::Milliseconds(timeout_ms)
                                  : absl::InfiniteFuture();
  log.Info(absl::StrCat("waiting for ", n, n == 1 ? " peer" : " peers",
                        timeout_ms > 0
                            ? absl::StrCat(" for up to ", timeout_ms, " ms")
                            : std::string()));
  while (true) {
    if (const int sig = HandleSignals(signal_fd, node, log)) return sig;
    const absl::Time slice =
        std::min(absl::Now() + absl::Milliseconds(100), deadline);
    const absl::Status status =
        node->WaitForPeers(static_cast<size_t>(n), slice);
    if (status.ok()) {
      log.Info(absl::StrCat("have ", n, n == 1 ? " peer" : " peers", " after ",
                            absl::ToInt64Milliseconds(absl::Now() - start),
                            " ms: ", absl::StrJoin(node->Peers(), ", ")));
      return 0;
    }
    if (!absl::IsDeadlineExceeded(status)) {
      log.Error(absl::StrCat("waiting for peers: ", status.ToString()));
      return 0;
    }
    if (absl::Now() >= deadline) {
      const std::vector<std::string> peers = node->Peers();
      log.Warning(absl::StrCat("only ", peers.size(), " of ", n,
                               " peers after ", timeout_ms, " ms",
                               peers.empty() ? "" : ": ",
                               absl::StrJoin(peers, ", "), "; running anyway"));
      return 0;
    }
  }
}

int Main(int argc, char** argv) {
  absl::StatusOr<mesh::cmd::ParsedArgs> args = mesh::cmd::ParseArgs(argc, argv);
  if (!args.ok()) return UsageError(args.status().message());
  if (args->version) {
    std::cout << "meshd (shmesh) " << SHMESH_VERSION << "\n";
    return kExitOk;
  }
  if (args->help) {
    std::cout << kHelp << mesh::cmd::FlagsHelp("mesh/cmd/meshd.cc")
              << kHelpTail;
    return kExitOk;
  }
  if (!args->positional.empty()) {
    return UsageError(absl::StrCat("unexpected argument \"",
                                   args->positional[0],
                                   "\" (the config file goes in --config)"));
  }
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) return UsageError("--config FILE is required");
  std::optional<LogLevel> level_override;
  if (!absl::GetFlag(FLAGS_log_level).empty()) {
    absl::StatusOr<LogLevel> level =
        ParseLogLevel(absl::GetFlag(FLAGS_log_level));
    if (!level.ok()) return UsageError(level.status().message());
    level_override = *level;
  }
  const int32_t wait_peers = absl::GetFlag(FLAGS_wait_peers);
  if (wait_peers < 0 || absl::GetFlag(FLAGS_wait_timeout_ms) < 0 ||
      absl::GetFlag(FLAGS_send_timeout_ms) < 0) {
    return UsageError(
        "--wait_peers, --wait_timeout_ms and --send_timeout_ms must not be "
        "negative");
  }
  if (absl::GetFlag(FLAGS_exit_on_eof) && !absl::GetFlag(FLAGS_stdin)) {
    return UsageError("--exit_on_eof needs --stdin");
  }
  mesh::cmd::MeshdTopicFlags topic_flags;
  topic_flags.subscribe = absl::StrSplit(absl::GetFlag(FLAGS_subscribe), ',',
                                         absl::SkipEmpty());
  topic_flags.publish = absl::GetFlag(FLAGS_publish);
  topic_flags.serve =
      absl::StrSplit(absl::GetFlag(FLAGS_serve), ',', absl::SkipEmpty());
  if (!topic_flags.publish.empty() && !absl::GetFlag(FLAGS_stdin)) {
    return UsageError("--publish needs --stdin (the lines to publish)");
  }
  if (args->given.count("history") > 0 && topic_flags.publish.empty()) {
    return UsageError("--history needs --publish=TOPIC");
  }
  if (absl::GetFlag(FLAGS_history) < 0) {
    return UsageError("--history must not be negative");
  }
  topic_flags.history = static_cast<size_t>(absl::GetFlag(FLAGS_history));
  if (absl::GetFlag(FLAGS_shared_ring) && topic_flags.publish.empty()) {
    return UsageError("--shared_ring needs --publish=TOPIC");
  }
  topic_flags.shared_ring = absl::GetFlag(FLAGS_shared_ring);

  // Before any thread exists: every thread inherits this mask, so SIGINT,
  // SIGTERM and SIGHUP reach only the signalfd. A closed stdout (--print
  // into `head`) must not kill the node: ignore SIGPIPE and let write() fail.
  const sigset_t handled_signals = HandledSignals();
  ::pthread_sigmask(SIG_BLOCK, &handled_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  absl::StatusOr<base::UniqueFd> signal_fd = MakeSignalFd(handled_signals);
  if (!signal_fd.ok()) {
    std::cerr << "meshd: " << OneLine(signal_fd.status().ToString()) << "\n";
    return kExitFailed;
  }

  absl::StatusOr<std::unique_ptr<mesh::Node>> created =
      CreateNode(config_path, level_override);
  if (!created.ok()) {
    std::cerr << "meshd: " << OneLine(created.status().message()) << "\n";
    return kExitUsage;
  }
  std::unique_ptr<mesh::Node> node = std::move(*created);
  // Shared with the handlers, which run on the node's threads.
  auto log =
      std::make_shared<const Log>(node->name(), node->config().log_level());

  // Peer up/down lines come from the node's own log (one line each).
  // Always drain: without a handler, messages would queue for Receive() and,
  // once that queue is full, backpressure every sender.
  const bool print = absl::GetFlag(FLAGS_print);
  (void)node->SetMessageHandler([log, print](const mesh::MessageView& m) {
    if (print) {
      WriteAll(STDOUT_FILENO,
               absl::StrCat(m.from, ": ", absl::CHexEscape(m.payload), "\n"));
    } else if (log->Enabled(mesh::v1::DEBUG)) {
      log->Debug(absl::StrCat("message from ", m.from, " (", m.payload.size(),
                              " bytes)"));
    }
  });

  // Before Start, so the node's first links already carry what it
  // subscribes to and serves. A bad name is bad usage.
  absl::StatusOr<mesh::cmd::MeshdTopics> topics = mesh::cmd::SetUpTopics(
      *node, topic_flags,
      [log](absl::string_view service, absl::string_view from) {
        log->Debug(absl::StrCat("request to ", service, " from ", from));
      });
  if (!topics.ok()) return UsageError(topics.status().message());

  const absl::Status started = node->Start();
  if (!started.ok()) {
    std::cerr << "meshd: " << OneLine(started.message()) << "\n";
    return kExitFailed;
  }
  const mesh::v1::NodeConfig& config = node->config();
  log->Info(absl::StrCat(
      "started: ", node->name(), " (id ",
      absl::Hex(node->id(), absl::kZeroPad16), ", pid ", ::getpid(), ") grpc ",
      node->grpc_address(), ", seeds: ",
      config.seeds().empty() ? "none (new mesh)"
                             : absl::StrJoin(config.seeds(), ", ")));

  int stop_signal = 0;
  if (wait_peers > 0) {
    stop_signal = WaitForPeers(node.get(), *log, signal_fd->get(), wait_peers,
                               absl::GetFlag(FLAGS_wait_timeout_ms));
  }

  bool stdin_open = absl::GetFlag(FLAGS_stdin);
  const bool exit_on_eof = absl::GetFlag(FLAGS_exit_on_eof);
  if (!topic_flags.subscribe.empty() || topics->publisher != nullptr ||
      !topic_flags.serve.empty()) {
    log->Info(absl::StrCat(
        "topics: subscribes to ",
        topic_flags.subscribe.empty() ? "-"
                                      : absl::StrJoin(topic_flags.subscribe, ","),
        ", publishes ",
        topic_flags.publish.empty() ? "-" : topic_flags.publish,
        topic_flags.history > 0
            ? absl::StrCat(" (history ", topic_flags.history, ")")
            : std::string(),
        topic_flags.shared_ring ? " (shared ring)" : "",
        ", serves ",
        topic_flags.serve.empty() ? "-" : absl::StrJoin(topic_flags.serve, ",")));
  }
  StdinSender sender(node.get(), topics->publisher.get(), log.get(),
                     static_cast<size_t>(config.max_message_bytes()) + 128,
                     absl::Milliseconds(absl::GetFlag(FLAGS_send_timeout_ms)));
  bool eof_stop = false;
  while (stop_signal == 0 && !eof_stop) {
    pollfd fds[2] = {{signal_fd->get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    const int n = ::poll(fds, stdin_open ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      log->Error(std::string(absl::ErrnoToStatus(errno, "poll").message()));
      break;
    }
    if (fds[0].revents & POLLIN) {
      stop_signal = HandleSignals(signal_fd->get(), node.get(), *log);
      if (stop_signal != 0) break;
    }
    if (stdin_open && fds[1].revents != 0) {
      char buf[65536];
      ssize_t got = 0;
      if (fds[1].revents & (POLLIN | POLLHUP)) {
        got = ::read(STDIN_FILENO, buf, sizeof(buf));
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got < 0) {
          log->Error(std::string(
              absl::ErrnoToStatus(errno, "reading stdin").message()));
        }
      }
      if (got > 0) {
        sender.Feed(absl::string_view(buf, static_cast<size_t>(got)));
        continue;
      }
      // EOF, an error, or POLLNVAL (stdin closed).
      sender.Finish();
      stdin_open = false;
      if (exit_on_eof) {
        log->Info("end of stdin; stopping");
        // The peers read the last lines before the Leave makes them drop
        // the links.
        const absl::Status read =
            mesh::cmd::WaitUntilPeersRead(*node, kEofFlushTimeout);
        if (!read.ok()) {
          log->Warning(absl::StrCat(read.message(), "; stopping anyway"));
        }
        eof_stop = true;
      } else {
        log->Info("end of stdin; running until SIGTERM or SIGINT");
      }
    }
  }
  if (stop_signal != 0) {
    log->Info(absl::StrCat("received ", SignalName(stop_signal), "; stopping"));
  }
  // No subscription or service handler runs once these are gone.
  topics = mesh::cmd::MeshdTopics();
  node->Stop();
  log->Info("stopped");
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
