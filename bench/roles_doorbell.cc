// The doorbell rows: the wake-up latency of ringbuf's old doorbell primitive
// (a pair of eventfds, one per direction) against the new one (one
// connected AF_UNIX SOCK_STREAM socket pair), measured in the same run.
//
// Two processes, pinned to different CPUs: the client (A, this process)
// and the echo server (B, forked), both always asleep in poll() when
// waiting, never spinning, so that every message is one wake-up:
//   doorbell_eventfd:    A write(efd_ab, 1); B, asleep in poll(efd_ab),
//                        wakes, read(efd_ab), write(efd_ba, 1); A, asleep
//                        in poll(efd_ba), wakes and read(efd_ba).
//   doorbell_socketpair: the same with one socket pair: send(1 byte,
//                        MSG_DONTWAIT | MSG_NOSIGNAL) on one's own end,
//                        poll() it, recv(MSG_DONTWAIT), as ringbuf's
//                        DoorbellRing / WaitReadable / DoorbellDrain do.
// One-way wake-up latency = round trip / 2, p50/p99/p99.9.
//
// B waits on exactly one descriptor at a time, as a ring endpoint does; A
// switches it between the two primitives with control values sent through
// the primitive B currently waits on (an eventfd count of kSwitch, a byte
// 's' or 'e' on the socket), and stops it the same way.
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <vector>

#include "bench/harness.h"
#include "bench/roles.h"

namespace shmesh_bench {
namespace {

// Eventfd values and socket bytes of the protocol between A and B.
constexpr uint64_t kEventPing = 1;
constexpr uint64_t kEventSwitch = 2;  // B: now wait on the socket
constexpr uint64_t kEventQuit = 3;
constexpr char kBytePing = 'p';
constexpr char kByteSwitch = 'e';  // B: now wait on the eventfd
constexpr char kByteQuit = 'q';

// poll() for POLLIN on `fd`, without a timeout (B and A always answer).
void WaitIn(int fd) {
  struct pollfd p = {fd, POLLIN, 0};
  for (;;) {
    const int n = ::poll(&p, 1, -1);
    if (n > 0) return;
    if (n < 0 && errno != EINTR) Die("doorbell: poll failed");
  }
}

void WriteEvent(int fd, uint64_t value) {
  ssize_t n;
  do {
    n = ::write(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  if (n != sizeof(value)) Die("doorbell: eventfd write failed");
}

// Reads the (non-blocking) eventfd after poll() said it is readable.
uint64_t ReadEvent(int fd) {
  uint64_t value = 0;
  ssize_t n;
  do {
    n = ::read(fd, &value, sizeof(value));
  } while (n < 0 && errno == EINTR);
  if (n != sizeof(value)) Die("doorbell: eventfd read failed");
  return value;
}

void SendByte(int fd, char byte) {
  ssize_t n;
  do {
    n = ::send(fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != 1) Die("doorbell: send failed");
}

// recv(MSG_DONTWAIT) after poll() said the end is readable; 0 at EOF.
char RecvByte(int fd) {
  char byte = 0;
  ssize_t n;
  do {
    n = ::recv(fd, &byte, 1, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) Die("doorbell: recv failed");
  return n == 0 ? kByteQuit : byte;
}

// B: echoes every ping through the primitive it came on.
void EchoServer(int efd_ab, int efd_ba, int sock) {
  bool on_socket = false;
  for (;;) {
    if (!on_socket) {
      WaitIn(efd_ab);
      const uint64_t v = ReadEvent(efd_ab);
      if (v == kEventQuit) return;
      if (v == kEventSwitch) on_socket = true;
      WriteEvent(efd_ba, kEventPing);  // a ping's echo, or the switch's ack
    } else {
      WaitIn(sock);
      const char c = RecvByte(sock);
      if (c == kByteQuit) return;
      if (c == kByteSwitch) on_socket = false;
      SendByte(sock, kBytePing);
    }
  }
}

class Client {
 public:
  Client(int efd_ab, int efd_ba, int sock) : efd_ab_(efd_ab), efd_ba_(efd_ba), sock_(sock) {}

  // One eventfd round trip: A rings B, B rings A back.
  void EventRoundTrip(uint64_t value) {
    WriteEvent(efd_ab_, value);
    WaitIn(efd_ba_);
    if (ReadEvent(efd_ba_) != kEventPing) Die("doorbell: bad eventfd echo");
  }
  void SocketRoundTrip(char byte) {
    SendByte(sock_, byte);
    WaitIn(sock_);
    if (RecvByte(sock_) != kBytePing) Die("doorbell: bad socket echo");
  }

  void UseSocket(bool socket) {
    if (socket == on_socket_) return;
    if (socket) {
      EventRoundTrip(kEventSwitch);
    } else {
      SocketRoundTrip(kByteSwitch);
    }
    on_socket_ = socket;
  }

  // `warmup` + `samples` round trips on the current primitive; emits its row.
  void Measure(const char* row, uint64_t warmup, uint64_t samples) {
    std::vector<int64_t> one_way;
    one_way.reserve(samples);
    for (uint64_t i = 0; i < warmup + samples; ++i) {
      const int64_t t0 = NowNs();
      if (on_socket_) {
        SocketRoundTrip(kBytePing);
      } else {
        EventRoundTrip(kEventPing);
      }
      const int64_t t1 = NowNs();
      if (i >= warmup) one_way.push_back((t1 - t0) / 2);
    }
    const Percentiles pc = ComputePercentiles(one_way);
    Emit(RowLine(row, 0, {{"p50_ns", pc.p50}, {"p99_ns", pc.p99}, {"p999_ns", pc.p999}}));
  }

  void Quit() {
    if (on_socket_) {
      SendByte(sock_, kByteQuit);
    } else {
      WriteEvent(efd_ab_, kEventQuit);
    }
  }

 private:
  const int efd_ab_, efd_ba_, sock_;
  bool on_socket_ = false;
};

}  // namespace

int DoorbellRole(const RoleConfig& config) {
  // As ringbuf created them: non-blocking and close-on-exec.
  const int efd_ab = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  const int efd_ba = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int sv[2];
  if (efd_ab < 0 || efd_ba < 0 ||
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) {
    Die("doorbell: cannot create the eventfds and the socket pair");
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) Die("fork failed");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    PinToCpu(1);
    ::close(sv[0]);
    EchoServer(efd_ab, efd_ba, sv[1]);
    std::_Exit(0);
  }
  ::close(sv[1]);
  PinToCpu(0);
  Emit("READY");
  Client client(efd_ab, efd_ba, sv[0]);
  for (int rep = 0; std::optional<ClientCommand> command = NextCommand(); ++rep) {
    if (command->kind != ClientCommand::kPing) Die("doorbell: only 'ping' is measured");
    // Both rows in every repetition, back to back, in alternating order.
    for (int i = 0; i < 2; ++i) {
      const bool socket = (i + rep) % 2 == 1;
      client.UseSocket(socket);
      client.Measure(socket ? "doorbell_socketpair" : "doorbell_eventfd", config.warmup,
                     config.samples);
    }
    Emit("OK");
  }
  client.Quit();
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) Die("doorbell echo server failed");
  ::close(sv[0]);
  ::close(efd_ab);
  ::close(efd_ba);
  return 0;
}

}  // namespace shmesh_bench
