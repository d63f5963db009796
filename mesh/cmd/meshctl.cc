// meshctl: inspect and poke a running shmesh mesh through any node's gRPC
// control plane (mesh.v1.Topology, and mesh.v1.Messaging for `send`), or
// take part in it for a moment as a member of its own (echo, hz, pub,
// call: see member.h), to watch topics, publish and call services.
//
//   meshctl --target unix:/run/user/1000/shmesh/a.grpc topology
//   meshctl --target 127.0.0.1:7001 watch --format=json --count=5
//   meshctl --target unix:/tmp/m/a.grpc send --to=b --payload=hello
//   meshctl --target unix:/tmp/m/a.grpc topics
//   meshctl --target unix:/tmp/m/a.grpc echo 'camera/*'
//   meshctl --target unix:/tmp/m/a.grpc pub camera/front hello --count=10
//
// Exit status: 0 success, 1 the RPC or the command failed (or the target
// is unreachable), 2 bad usage.
#include <signal.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "mesh/cmd/flags.h"
#include "mesh/cmd/member.h"
#include "mesh/cmd/member_commands.h"
#include "mesh/cmd/topology_format.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "mesh/v1/mesh.pb.h"
#include "mesh/version.h"

ABSL_FLAG(std::string, target, "",
          "gRPC address of any node: \"unix:/path/to/node.grpc\" or "
          "\"host:port\" (a bare \"/path\" means unix:/path). Required.");
ABSL_FLAG(std::string, format, "table",
          "Output of topology, members, links, watch and topics: table, "
          "json (protobuf JSON of the TopologySnapshot; one line per snapshot "
          "for watch) or dot (Graphviz: pipe into `dot -Tsvg`; not for "
          "topics).");
ABSL_FLAG(int32_t, timeout_ms, 3000,
          "Deadline of every RPC in milliseconds. For watch it bounds the "
          "wait for the first snapshot; for send, --send_wait_ms is added. "
          "echo, hz, pub, call: also how long to wait for this meshctl's "
          "node to link with the mesh's members; call: also the deadline of "
          "the service call.");
ABSL_FLAG(bool, local_only, false,
          "topology, links, watch: only the answering node's own links "
          "instead of gathering every member's; topics: only its own "
          "topics and services.");
ABSL_FLAG(int32_t, count, 0,
          "watch: stop after this many snapshots; echo: after this many "
          "messages; hz: after this many reports (0: until Ctrl-C). pub: "
          "publish this many messages (not given: one; 0: until Ctrl-C).");
ABSL_FLAG(int32_t, min_interval_ms, 0,
          "watch: at least this many milliseconds between two snapshots "
          "(0: the node's default, 100).");
ABSL_FLAG(std::string, to, "", "send: name of the destination peer.");
ABSL_FLAG(bool, broadcast, false,
          "send: send to every peer linked with the target node instead of "
          "--to.");
ABSL_FLAG(std::string, payload, "",
          "send: the message text (sent as is, without a newline).");
ABSL_FLAG(int32_t, send_wait_ms, 1000,
          "send: how long the node may wait for ring space if the ring to the "
          "peer is full (0: fail at once with RESOURCE_EXHAUSTED). pub: the "
          "same for each message and each subscriber.");
ABSL_FLAG(int32_t, wait_ms, 5000,
          "pub: how long to wait, once linked, until the subscribers that "
          "the target reported match (at least one; none by then: nothing "
          "is published, exit 1); 0: publish at once. call: how long to "
          "wait for a server of the service.");
ABSL_FLAG(double, rate, 10,
          "pub: messages per second when --count is over 1 (0: as fast as "
          "the rings take them).");
ABSL_FLAG(int32_t, window, 1000,
          "hz: the statistics cover the gaps between the last N+1 messages "
          "of each topic.");
ABSL_FLAG(std::string, server, "",
          "call: the node to call (default: any node that serves the "
          "service, in turn).");

namespace {

using ::mesh::cmd::OutputFormat;
using ::mesh::cmd::Section;

using ::mesh::cmd::kExitFailed;
using ::mesh::cmd::kExitOk;
using ::mesh::cmd::kExitUsage;

constexpr char kUsage[] =
    "usage: meshctl --target ADDR COMMAND [flags]\n"
    "commands: topology | members | links | watch | send | topics |\n"
    "          echo PATTERN | hz PATTERN | pub TOPIC DATA | call SERVICE DATA\n";

constexpr char kHelp[] =
    R"(meshctl: inspect a running shmesh mesh through a node's gRPC control plane,
or take part in it for a moment to watch topics, publish and call services.

usage: meshctl --target ADDR COMMAND [flags]

ADDR is the gRPC address of any node of the mesh (its grpc_listen):
"unix:/path/to/node.grpc" (the default is unix:$XDG_RUNTIME_DIR/shmesh/NAME.grpc,
else unix:/tmp/shmesh-UID/NAME.grpc) or "host:port". Any member answers for
the whole mesh.

commands:
  topology   Topology.GetTopology: every member (name, id, pid, state, gRPC
             address) and every link (a<->b, messages and bytes each way,
             queued bytes, ring-full events, confirmed by both ends).
  members    the members part only.
  links      the links part only.
  watch      Topology.WatchTopology: print a snapshot now and after every
             change, until Ctrl-C or --count snapshots.
  send       Messaging.Send: ask the target node to send --payload to peer
             --to (or to all its peers with --broadcast), and print the
             peers it was delivered to. A debugging aid, NOT the fast path:
             the payload goes through the control plane (this gRPC call) to
             the node, which then writes it into its shared-memory ring.
  topics     Topology.GetTopology: per topic, the nodes that publish it
             and the nodes that subscribe to it (with their matching
             patterns), messages and bytes published and received; every
             subscription; every service with its server and the requests
             it handled. --format=json: the TopologySnapshot's topics.

The next four (echo, hz, pub, call) JOIN THE MESH AS A MEMBER while they
run: meshctl asks the target for the mesh (GetTopology), starts a node of
its own named meshctl-<pid> (run directory /tmp/meshctl-<pid>.XXXXXX, seed:
the target), links with every member through shared memory (up to
--timeout_ms), does its job, then leaves and removes the directory, also on
Ctrl-C or SIGTERM. The other nodes see it come and go like any peer (it
stays listed as DOWN in their topology).
  echo PATTERN
             print every message of the topics matching PATTERN as
             "<topic> <from> <payload>" lines (C escapes for non-printable
             bytes), until Ctrl-C or --count messages.
  hz PATTERN every second, per topic matching PATTERN: the mean rate and
             the min, max and standard deviation of the gaps between
             messages over the last --window gaps; "no new messages" when
             none came that second.
  pub TOPIC DATA
             publish DATA (the bytes as given) to TOPIC: --count times
             (default once) at --rate per second. First waits until the
             subscribers the target knew of match (at least one, up to
             --wait_ms), so a one-shot publish is not lost; fails if none.
  call SERVICE DATA
             send DATA as a request to SERVICE (on --server, or on any node
             that serves it) and print the response, waiting --timeout_ms.

Topic names: segments of [A-Za-z0-9_.-] separated by '/', e.g.
"camera/front". Patterns may use "*" (one segment) and "**" (any number),
e.g. "camera/*", "**". Quote them for the shell. DATA that starts with '-'
goes after "--".

flags (--flag=value or --flag value; bools also --flag / --noflag):
  --version
      print meshctl's version and exit.
)";

constexpr char kHelpTail[] = R"(
output formats (--format): table (default), json, dot (not for topics).
For watch, json prints one snapshot per line.

exit status: 0 success (also after Ctrl-C); 1 the RPC or the command failed
(target unreachable, no subscriber or server, the call's error); 2 bad usage
(also a bad topic name or pattern).

examples:
  meshctl --target unix:/tmp/shmesh-1000/a.grpc topology
  meshctl --target 127.0.0.1:7001 links --format=json
  meshctl --target unix:/tmp/shmesh-1000/a.grpc topology --format=dot | dot -Tsvg > mesh.svg
  meshctl --target unix:/tmp/shmesh-1000/a.grpc watch --count=10 --format=json
  meshctl --target unix:/tmp/shmesh-1000/a.grpc send --to=b --payload=hello
  meshctl --target unix:/tmp/shmesh-1000/a.grpc send --broadcast --payload=ping
  meshctl --target unix:/tmp/shmesh-1000/a.grpc topics
  meshctl --target unix:/tmp/shmesh-1000/a.grpc echo 'sensors/**' --count=5
  meshctl --target unix:/tmp/shmesh-1000/a.grpc hz sensors/temperature
  meshctl --target unix:/tmp/shmesh-1000/a.grpc pub chat/general hello
  meshctl --target unix:/tmp/shmesh-1000/a.grpc pub tick x --count=50 --rate=100
  meshctl --target unix:/tmp/shmesh-1000/a.grpc call upper "make me loud"
)";

int UsageError(absl::string_view message) {
  std::cerr << "meshctl: " << message << "\n"
            << kUsage << "Run meshctl --help for details.\n";
  return kExitUsage;
}

// Accepts "unix:/abs", "unix:///abs", "host:port", and the gRPC schemes
// dns:, ipv4:, ipv6:, unix-abstract:. A bare absolute path is a unix socket.
absl::StatusOr<std::string> NormalizeTarget(const std::string& target) {
  if (target.empty()) {
    return absl::InvalidArgumentError(
        "--target is required (unix:/path/to/node.grpc or host:port)");
  }
  if (target[0] == '/') return absl::StrCat("unix:", target);
  for (const char* scheme :
       {"unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:"}) {
    if (absl::StartsWith(target, scheme)) return target;
  }
  if (target.find(':') == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--target \"", target, "\" is neither unix:/path nor host:port"));
  }
  return target;
}

std::string CodeName(grpc::StatusCode code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// Prints why `rpc` failed and returns the exit status. A target that never
// answered gets the "cannot reach" line.
int ReportRpcError(const std::string& target, absl::string_view rpc,
                   const grpc::Status& status, grpc::Channel* channel) {
  const bool never_connected =
      status.error_code() == grpc::StatusCode::UNAVAILABLE ||
      (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED &&
       channel->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY);
  if (never_connected) {
    std::cerr << "meshctl: cannot reach " << target << ": "
              << status.error_message() << "; is a node running there?\n";
  } else {
    std::cerr << "meshctl: " << rpc
              << " failed: " << CodeName(status.error_code()) << ": "
              << status.error_message() << "\n";
  }
  return kExitFailed;
}

void SetDeadline(grpc::ClientContext* context, int64_t ms) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(ms));
}

// Writes one rendered snapshot to stdout and flushes it.
bool PrintSnapshot(const mesh::v1::TopologySnapshot& snapshot,
                   OutputFormat format, Section section, bool multiline_json) {
  absl::StatusOr<std::string> text =
      mesh::cmd::FormatSnapshot(snapshot, format, section, multiline_json);
  if (!text.ok()) {
    std::cerr << "meshctl: " << text.status().message() << "\n";
    return false;
  }
  std::fwrite(text->data(), 1, text->size(), stdout);
  std::fflush(stdout);
  return true;
}

// Asks the target for the topology (the whole mesh unless `local_only`).
// Prints why not and returns false if it fails.
bool FetchTopology(const std::string& target,
                   const std::shared_ptr<grpc::Channel>& channel,
                   bool local_only, mesh::v1::TopologySnapshot* snapshot) {
  auto stub = mesh::v1::Topology::NewStub(channel);
  grpc::ClientContext context;
  SetDeadline(&context, absl::GetFlag(FLAGS_timeout_ms));
  mesh::v1::GetTopologyRequest request;
  request.set_local_only(local_only);
  const grpc::Status status = stub->GetTopology(&context, request, snapshot);
  if (!status.ok()) {
    ReportRpcError(target, "GetTopology", status, channel.get());
    return false;
  }
  return true;
}

int RunGetTopology(const std::string& target,
                   const std::shared_ptr<grpc::Channel>& channel,
                   OutputFormat format, Section section) {
  mesh::v1::TopologySnapshot snapshot;
  if (!FetchTopology(target, channel, absl::GetFlag(FLAGS_local_only),
                     &snapshot)) {
    return kExitFailed;
  }
  return PrintSnapshot(snapshot, format, section, /*multiline_json=*/true)
             ? kExitOk
             : kExitFailed;
}

// Cancels the watch on SIGINT/SIGTERM, or when no snapshot arrived within
// the deadline. Runs on its own thread; the signals are blocked in every
// thread (before gRPC starts any), so only sigtimedwait here sees them.
class WatchCanceller {
 public:
  WatchCanceller(grpc::ClientContext* context, int64_t first_timeout_ms)
      : context_(context),
        first_deadline_(std::chrono::steady_clock::now() +
                        std::chrono::milliseconds(first_timeout_ms)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~WatchCanceller() { Stop(); }
  // Ends and joins the thread. Idempotent.
  void Stop() {
    done_.store(true, std::memory_order_relaxed);
    if (thread_.joinable()) thread_.join();
  }
  // A snapshot arrived: the first-snapshot deadline no longer applies.
  void GotSnapshot() { got_snapshot_.store(true, std::memory_order_relaxed); }
  // Why the thread cancelled the watch, if it did. REQUIRES: Stop() called.
  bool interrupted() const {
    return interrupted_.load(std::memory_order_relaxed);
  }
  bool timed_out() const { return timed_out_.load(std::memory_order_relaxed); }

 private:
  // Every flag is a one-way latch that guards no other data. done_ and
  // got_snapshot_ are polled, so a late read only costs one more 100 ms
  // round; interrupted_ and timed_out_ are read after join(), which orders
  // them. Relaxed order is enough for all four.
  void Run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    while (!done_.load(std::memory_order_relaxed)) {
      timespec poll = {0, 100 * 1000 * 1000};
      if (sigtimedwait(&set, nullptr, &poll) > 0) {
        interrupted_.store(true, std::memory_order_relaxed);
        context_->TryCancel();
        return;
      }
      if (!got_snapshot_.load(std::memory_order_relaxed) &&
          std::chrono::steady_clock::now() > first_deadline_) {
        timed_out_.store(true, std::memory_order_relaxed);
        context_->TryCancel();
        return;
      }
    }
  }

  grpc::ClientContext* const context_;
  const std::chrono::steady_clock::time_point first_deadline_;
  std::atomic<bool> done_{false};
  std::atomic<bool> got_snapshot_{false};
  std::atomic<bool> interrupted_{false};
  std::atomic<bool> timed_out_{false};
  std::thread thread_;
};

int RunWatch(const std::string& target,
             const std::shared_ptr<grpc::Channel>& channel,
             OutputFormat format) {
  auto stub = mesh::v1::Topology::NewStub(channel);
  grpc::ClientContext context;
  mesh::v1::WatchTopologyRequest request;
  request.set_min_interval_ms(
      static_cast<uint32_t>(absl::GetFlag(FLAGS_min_interval_ms)));
  request.set_local_only(absl::GetFlag(FLAGS_local_only));
  const int count = absl::GetFlag(FLAGS_count);
  const int64_t timeout_ms = absl::GetFlag(FLAGS_timeout_ms);

  int received = 0;
  bool print_failed = false;
  grpc::Status status;
  bool interrupted = false;
  bool timed_out = false;
  {
    WatchCanceller canceller(&context, timeout_ms);
    std::unique_ptr<grpc::ClientReader<mesh::v1::TopologySnapshot>> reader =
        stub->WatchTopology(&context, request);
    mesh::v1::TopologySnapshot snapshot;
    while (reader->Read(&snapshot)) {
      canceller.GotSnapshot();
      ++received;
      if (received > 1 && format != OutputFormat::kJson) {
        std::fputs("\n", stdout);
      }
      if (!PrintSnapshot(snapshot, format, Section::kAll,
                         /*multiline_json=*/false)) {
        print_failed = true;
        context.TryCancel();
        break;
      }
      if (count > 0 && received >= count) {
        context.TryCancel();
        break;
      }
    }
    status = reader->Finish();
    canceller.Stop();
    interrupted = canceller.interrupted();
    timed_out = canceller.timed_out();
  }
  if (print_failed) return kExitFailed;
  if (interrupted || (count > 0 && received >= count)) return kExitOk;
  if (timed_out) {
    std::cerr << "meshctl: cannot reach " << target << ": no snapshot within "
              << timeout_ms << " ms; is a node running there?\n";
    return kExitFailed;
  }
  if (!status.ok()) {
    if (received > 0) {
      std::cerr << "meshctl: watch ended after " << received
                << " snapshots: " << CodeName(status.error_code()) << ": "
                << status.error_message() << "\n";
      return kExitFailed;
    }
    return ReportRpcError(target, "WatchTopology", status, channel.get());
  }
  std::cerr << "meshctl: the node ended the watch after " << received
            << " snapshots\n";
  return kExitFailed;
}

int RunSend(const std::string& target,
            const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = mesh::v1::Messaging::NewStub(channel);
  mesh::v1::SendRequest request;
  request.set_to(absl::GetFlag(FLAGS_to));
  request.set_broadcast(absl::GetFlag(FLAGS_broadcast));
  request.set_payload(absl::GetFlag(FLAGS_payload));
  const int32_t wait_ms = absl::GetFlag(FLAGS_send_wait_ms);
  request.set_timeout_ms(static_cast<uint32_t>(wait_ms));
  grpc::ClientContext context;
  SetDeadline(&context, int64_t{absl::GetFlag(FLAGS_timeout_ms)} + wait_ms);
  mesh::v1::SendResponse response;
  const grpc::Status status = stub->Send(&context, request, &response);
  if (!status.ok()) {
    return ReportRpcError(target,
                          request.broadcast()
                              ? std::string("send --broadcast")
                              : absl::StrCat("send to ", request.to()),
                          status, channel.get());
  }
  if (response.delivered_to_size() == 0) {
    std::cout << "delivered to no peers\n";
  } else {
    std::cout << "delivered to " << absl::StrJoin(response.delivered_to(), ", ")
              << "\n";
  }
  return kExitOk;
}

int Main(int argc, char** argv) {
  absl::StatusOr<mesh::cmd::ParsedArgs> args = mesh::cmd::ParseArgs(argc, argv);
  if (!args.ok()) return UsageError(args.status().message());
  if (args->version) {
    std::cout << "meshctl (shmesh) " << SHMESH_VERSION << "\n";
    return kExitOk;
  }
  if (args->help ||
      (!args->positional.empty() && args->positional[0] == "help")) {
    std::cout << kHelp << mesh::cmd::FlagsHelp("mesh/cmd/meshctl.cc")
              << kHelpTail;
    return kExitOk;
  }
  if (args->positional.empty()) return UsageError("no command given");
  const std::string& command = args->positional[0];
  // Each command and the arguments it takes after its name.
  const std::map<std::string, std::vector<std::string>> commands = {
      {"topology", {}}, {"members", {}},
      {"links", {}},    {"watch", {}},
      {"send", {}},     {"topics", {}},
      {"echo", {"PATTERN"}},
      {"hz", {"PATTERN"}},
      {"pub", {"TOPIC", "DATA"}},
      {"call", {"SERVICE", "DATA"}},
  };
  const auto known = commands.find(command);
  if (known == commands.end()) {
    return UsageError(absl::StrCat("unknown command \"", command, "\""));
  }
  const std::vector<std::string>& wanted = known->second;
  if (args->positional.size() > wanted.size() + 1) {
    return UsageError(absl::StrCat(
        "unexpected argument \"", args->positional[wanted.size() + 1], "\"",
        wanted.empty() ? "" : absl::StrCat(" (", command, " takes ",
                                           absl::StrJoin(wanted, " "), ")")));
  }
  if (args->positional.size() < wanted.size() + 1) {
    return UsageError(absl::StrCat(command, " needs ",
                                   wanted[args->positional.size() - 1],
                                   ": meshctl --target ADDR ", command, " ",
                                   absl::StrJoin(wanted, " ")));
  }
  Section section = Section::kAll;
  if (command == "members") section = Section::kMembers;
  if (command == "links") section = Section::kLinks;
  if (command == "topics") section = Section::kTopics;
  const bool member_command = command == "echo" || command == "hz" ||
                              command == "pub" || command == "call";

  absl::StatusOr<std::string> target =
      NormalizeTarget(absl::GetFlag(FLAGS_target));
  if (!target.ok()) return UsageError(target.status().message());
  absl::StatusOr<OutputFormat> format =
      mesh::cmd::ParseOutputFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return UsageError(format.status().message());
  if (absl::GetFlag(FLAGS_timeout_ms) <= 0) {
    return UsageError("--timeout_ms must be positive");
  }
  if (section == Section::kTopics && *format == OutputFormat::kDot) {
    return UsageError("topics has no dot format; use --format=table or json");
  }
  if (absl::GetFlag(FLAGS_count) < 0 ||
      absl::GetFlag(FLAGS_min_interval_ms) < 0 ||
      absl::GetFlag(FLAGS_send_wait_ms) < 0 ||
      absl::GetFlag(FLAGS_wait_ms) < 0) {
    return UsageError(
        "--count, --min_interval_ms, --send_wait_ms and --wait_ms must not "
        "be negative");
  }
  const double rate = absl::GetFlag(FLAGS_rate);
  if (!(rate >= 0 && rate <= 1e9)) {
    return UsageError("--rate must be between 0 and 1e9 messages per second");
  }
  if (absl::GetFlag(FLAGS_window) < 1) {
    return UsageError("--window must be at least 1");
  }
  if (command == "send") {
    const bool to = !absl::GetFlag(FLAGS_to).empty();
    const bool broadcast = absl::GetFlag(FLAGS_broadcast);
    if (to == broadcast) {
      return UsageError("send needs exactly one of --to=PEER and --broadcast");
    }
    if (args->given.count("payload") == 0) {
      return UsageError("send needs --payload=TEXT");
    }
  }

  if (command == "watch" || member_command) {
    // Block the stop signals before gRPC (or the node) starts threads, so
    // they are only ever read synchronously: by the canceller's
    // sigtimedwait, or by StopRequested() between the steps of a member
    // command, which then leaves the mesh and removes its directory.
    mesh::cmd::BlockStopSignals();
  }
  if (member_command) {
    // echo into a closed pipe (`| head`): write() fails, echo stops.
    ::signal(SIGPIPE, SIG_IGN);
  }
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateChannel(*target, grpc::InsecureChannelCredentials());

  if (command == "watch") return RunWatch(*target, channel, *format);
  if (command == "send") return RunSend(*target, channel);
  if (!member_command) return RunGetTopology(*target, channel, *format, section);

  // The mesh as the target sees it: whom to link with, and who subscribes
  // or serves. Also the quickest way to say the target is unreachable.
  mesh::v1::TopologySnapshot mesh;
  if (!FetchTopology(*target, channel, /*local_only=*/false, &mesh)) {
    return kExitFailed;
  }
  mesh::cmd::MemberFlags flags;
  flags.target = *target;
  flags.wait = absl::Milliseconds(absl::GetFlag(FLAGS_wait_ms));
  flags.timeout = absl::Milliseconds(absl::GetFlag(FLAGS_timeout_ms));
  flags.publish_timeout =
      absl::Milliseconds(absl::GetFlag(FLAGS_send_wait_ms));
  flags.count = args->given.count("count") > 0 ? absl::GetFlag(FLAGS_count)
                                                 : (command == "pub" ? -1 : 0);
  flags.rate_hz = rate;
  flags.window = absl::GetFlag(FLAGS_window);
  flags.server = absl::GetFlag(FLAGS_server);
  const std::vector<std::string>& a = args->positional;
  if (command == "echo") return mesh::cmd::RunEcho(flags, mesh, a[1]);
  if (command == "hz") return mesh::cmd::RunHz(flags, mesh, a[1]);
  if (command == "pub") return mesh::cmd::RunPub(flags, mesh, a[1], a[2]);
  return mesh::cmd::RunCall(flags, mesh, a[1], a[2]);
}

}  // namespace

int main(int argc, char** argv) { return Main(argc, argv); }
