// Fuzz target: the link handshake (mesh::Link::Accept and Link::Dial) with a
// hostile peer, and then the established link.
//
// The input (format in fuzz_formats.h) picks a side, the peer's behaviour
// (flags), arbitrary bytes for the handshake message (LinkHello when Accept
// is under test, LinkReply when Dial is) and 0..20 attached descriptors of
// chosen kinds: a real ring's memfd and doorbell ends, memfds with wrong
// seals, sizes or headers, pipes, /dev/null, /dev/zero, eventfds, stream,
// seqpacket and datagram sockets, directories. Accept runs on one end of a
// SOCK_SEQPACKET pair whose other end already holds the message; Dial
// connects to a listening socket where a responder thread answers with the
// message. If the link comes up, the rest of the input drives it (Send,
// Drain, doorbells) while the fuzzer, as the peer, writes honest frames or
// arbitrary bytes into the link's receive ring.
//
// Properties checked (a violation aborts: a crash for libFuzzer):
//   * no crash, no sanitizer report; Accept and Dial return soon after their
//     50 ms deadline, with a documented error code when they fail;
//   * a link comes up if and only if the handshake was well-formed: the
//     right message, names and ids, an allowed uid and the announced pid,
//     exactly a ring memfd of the claimed capacity plus one AF_UNIX stream
//     socket (the doorbell end; link protocol version 2);
//   * on an established link, frames arrive intact and in order in both
//     directions while nothing hostile is written; corruption of the receive
//     ring makes Drain fail with DATA_LOSS for good, never the process, and
//     the send direction keeps working;
//   * no descriptor leaks (same /proc/self/fd count after each input).
#include <fcntl.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/unique_fd.h"
#include "fdpass/socket.h"
#include "google/protobuf/stubs/logging.h"
#include "mesh/links/link.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/region.h"
#include "ringbuf/ring.h"
#include "ringbuf/ring_layout.h"
#include "tests/fuzz/fuzz_formats.h"
#include "tests/fuzz/fuzz_util.h"

namespace shmesh_fuzz {
namespace {

using base::UniqueFd;
using ringbuf::Ring;

constexpr absl::Duration kHandshakeDeadline = absl::Milliseconds(50);
// Accept may spend up to 2 x 100 ms on a best-effort reject after its
// deadline; the rest is room for a slow, shared, sanitized machine. A
// handshake that really hangs is caught here or by libFuzzer's -timeout.
const absl::Duration kLateness = absl::Milliseconds(5200);
constexpr size_t kSmallRingBytes = ringbuf::kMinRingCapacity;
constexpr size_t kWrongPidValue = 1;  // init: a live process that is not us

// ----------------------------------------------------------------- setup

// Process-wide: a short directory under /tmp (socket paths are limited to
// 107 bytes) holding the listening socket Dial connects to. Created before
// the first input's descriptor count is taken; removed at exit.
struct DialTarget {
  std::string dir;
  std::string path;
  UniqueFd listener;
};

DialTarget& GetDialTarget() {
  static DialTarget* target = [] {
    // Hostile hellos with invalid UTF-8 in string fields make protobuf log
    // an error per parse; keep the fuzzer's output readable.
    google::protobuf::SetLogHandler(nullptr);
    auto* t = new DialTarget;
    char dir[] = "/tmp/shmesh-fuzz-XXXXXX";
    FUZZ_CHECK(::mkdtemp(dir) != nullptr, absl::StrCat("mkdtemp: ", std::strerror(errno)));
    t->dir = dir;
    t->path = t->dir + "/link.sock";
    absl::StatusOr<UniqueFd> l = fdpass::ListenSeqpacket(t->path);
    FUZZ_CHECK(l.ok(), absl::StrCat("ListenSeqpacket: ", l.status().ToString()));
    t->listener = std::move(*l);
    std::atexit([] {
      DialTarget& t = GetDialTarget();
      ::unlink(t.path.c_str());
      ::rmdir(t.dir.c_str());
    });
    return t;
  }();
  return *target;
}

UniqueFd MakeMemfd(size_t size, int seals, bool sealable) {
  const int fd = ::memfd_create("shmesh-fuzz", MFD_CLOEXEC | (sealable ? MFD_ALLOW_SEALING : 0));
  FUZZ_CHECK(fd >= 0, absl::StrCat("memfd_create: ", std::strerror(errno)));
  UniqueFd owned(fd);
  FUZZ_CHECK(::ftruncate(fd, static_cast<off_t>(size)) == 0, absl::StrCat("ftruncate: ", std::strerror(errno)));
  if (seals != 0) {
    FUZZ_CHECK(::fcntl(fd, F_ADD_SEALS, seals) == 0, absl::StrCat("F_ADD_SEALS: ", std::strerror(errno)));
  }
  return owned;
}

UniqueFd OpenOrDie(const char* path, int flags) {
  const int fd = ::open(path, flags | O_CLOEXEC);
  FUZZ_CHECK(fd >= 0, absl::StrCat("open ", path, ": ", std::strerror(errno)));
  return UniqueFd(fd);
}

// The descriptors one input attaches, made on first use and owned here
// (sendmsg gives the receiver its own duplicates).
class FdFactory {
 public:
  explicit FdFactory(const Ring& ring) : ring_(ring) { std::fill(std::begin(cache_), std::end(cache_), -1); }

  int Get(FdKind kind) {
    if (cache_[kind] >= 0) return cache_[kind];
    constexpr size_t kRegion = ringbuf::RingRegionSize(kLinkRingBytes);
    constexpr int kSeals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
    int fd = -1;
    switch (kind) {
      case kFdRingMemfd:
        fd = ring_.region_fd();
        break;
      case kFdRingConsumerDoorbell:
        fd = ring_.consumer_doorbell_fd();
        break;
      case kFdRingProducerDoorbell:
        fd = ring_.producer_doorbell_fd();
        break;
      case kFdSmallRingMemfd:
        fd = small_ring()->region_fd();
        break;
      case kFdMemfdWrongSize:
        fd = Own(MakeMemfd(kRegion + 8, kSeals, true));
        break;
      case kFdMemfdUnsealed:
        fd = Own(MakeMemfd(kRegion, 0, true));
        break;
      case kFdMemfdWriteSealed:
        fd = Own(MakeMemfd(kRegion, kSeals | F_SEAL_WRITE, true));
        break;
      case kFdMemfdNoSealSeal:
        fd = Own(MakeMemfd(kRegion, F_SEAL_SHRINK | F_SEAL_GROW, true));
        break;
      case kFdMemfdZeroHeader:
        fd = Own(MakeMemfd(kRegion, kSeals, true));
        break;
      case kFdMemfdNotSealable:
        fd = Own(MakeMemfd(kRegion, 0, false));
        break;
      case kFdPipeRead:
      case kFdPipeWrite: {
        int p[2];
        FUZZ_CHECK(::pipe2(p, O_CLOEXEC) == 0, absl::StrCat("pipe2: ", std::strerror(errno)));
        cache_[kFdPipeRead] = Own(UniqueFd(p[0]));
        cache_[kFdPipeWrite] = Own(UniqueFd(p[1]));
        return cache_[kind];
      }
      case kFdDevNull:
        fd = Own(OpenOrDie("/dev/null", O_RDWR));
        break;
      case kFdDevZero:
        fd = Own(OpenOrDie("/dev/zero", O_RDWR));
        break;
      case kFdEventfd: {
        const int e = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        FUZZ_CHECK(e >= 0, absl::StrCat("eventfd: ", std::strerror(errno)));
        fd = Own(UniqueFd(e));
        break;
      }
      case kFdSocket: {
        absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = fdpass::SeqpacketPair();
        FUZZ_CHECK(pair.ok(), pair.status().ToString());
        fd = Own(std::move(pair->first));
        Own(std::move(pair->second));
        break;
      }
      case kFdDirectory:
        fd = Own(OpenOrDie("/tmp", O_RDONLY | O_DIRECTORY));
        break;
      case kFdStreamPairEnd:
      case kFdDatagramSocket: {
        int sv[2];
        const int type = kind == kFdStreamPairEnd ? SOCK_STREAM : SOCK_DGRAM;
        FUZZ_CHECK(::socketpair(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) == 0,
                   absl::StrCat("socketpair: ", std::strerror(errno)));
        fd = Own(UniqueFd(sv[0]));
        Own(UniqueFd(sv[1]));
        break;
      }
      case kFdKindCount:
        break;
    }
    cache_[kind] = fd;
    return fd;
  }

  Ring* small_ring() {
    if (!small_ring_.has_value()) {
      absl::StatusOr<Ring> r = Ring::Create(kSmallRingBytes, ringbuf::WaitOptions::NoSpin());
      FUZZ_CHECK(r.ok(), r.status().ToString());
      small_ring_.emplace(std::move(*r));
    }
    return &*small_ring_;
  }

 private:
  int Own(UniqueFd fd) {
    owned_.push_back(std::move(fd));
    return owned_.back().get();
  }

  const Ring& ring_;
  int cache_[kFdKindCount];  // borrowed views of the fds below, -1: not made yet
  std::vector<UniqueFd> owned_;
  std::optional<Ring> small_ring_;
};

// What a handshake message must carry for the link to come up: exactly a
// ring memfd whose real capacity is the one claimed, then one AF_UNIX
// stream socket (the consumer's doorbell end; any such socket passes the
// check, even one connected to nothing of the ring's). Not an eventfd any
// more, nor any other kind of socket.
bool GoodRingFds(const std::vector<FdKind>& kinds, uint64_t claimed_capacity) {
  if (kinds.size() != 2) return false;
  const bool memfd_ok = (kinds[0] == kFdRingMemfd && claimed_capacity == kLinkRingBytes) ||
                        (kinds[0] == kFdSmallRingMemfd && claimed_capacity == kSmallRingBytes);
  return memfd_ok && IsDoorbellKind(kinds[1]);
}

absl::StatusOr<mesh::v1::Member> Lookup(const std::string& name, uint64_t id) {
  const bool known = absl::StartsWith(name, kKnownPrefix);
  if (!known && !absl::StartsWith(name, kWrongPidPrefix)) {
    return absl::NotFoundError(absl::StrCat("'", name, "' was never announced"));
  }
  mesh::v1::Member m;
  m.set_name(name);
  m.set_id(id);
  m.set_pid(known ? static_cast<int32_t>(::getpid()) : static_cast<int32_t>(kWrongPidValue));
  m.set_uid(::getuid());
  m.set_ring_capacity_bytes(kLinkRingBytes);
  return m;
}

mesh::LinkParams SelfParams(bool uid_allowed) {
  mesh::LinkParams p;
  p.name = std::string(kSelfName);
  p.id = kSelfId;
  p.ring_capacity_bytes = kLinkRingBytes;
  p.max_peer_ring_bytes = 1 << 20;
  // Without our uid, allow another one (the list is never empty in a node).
  p.allowed_uids = {uid_allowed ? static_cast<uint32_t>(::getuid()) : static_cast<uint32_t>(::getuid()) + 1};
  p.wait = ringbuf::WaitOptions::NoSpin();
  return p;
}

bool CodeIn(const absl::Status& s, std::initializer_list<absl::StatusCode> codes) {
  for (absl::StatusCode c : codes) {
    if (s.code() == c) return true;
  }
  return false;
}

// Maps the ring a handshake message from the link carried (memfd, the
// consumer's doorbell end), as the real peer would.
std::optional<Ring> MapLinkRing(std::vector<UniqueFd> fds, uint64_t capacity) {
  FUZZ_CHECK(fds.size() == 2, absl::StrCat("the link sent ", fds.size(), " descriptors, not 2"));
  absl::StatusOr<ringbuf::SharedRegion> region =
      ringbuf::SharedRegion::Map(std::move(fds[0]), ringbuf::RingRegionSize(capacity));
  FUZZ_CHECK(region.ok(), absl::StrCat("the link's own ring does not map: ", region.status().ToString()));
  absl::StatusOr<Ring> ring =
      Ring::Attach(std::move(*region), std::move(fds[1]), ringbuf::RingEnd::kConsumer, ringbuf::WaitOptions::NoSpin());
  FUZZ_CHECK(ring.ok(), absl::StrCat("the link's own ring does not attach: ", ring.status().ToString()));
  return std::move(*ring);
}

std::string Pattern(uint64_t seed, size_t len) {
  std::string s(len, '\0');
  for (size_t i = 0; i < len; ++i) s[i] = static_cast<char>((seed * 131 + i * 7 + (i >> 8)) & 0xff);
  return s;
}

// ------------------------------------------------------ established link

constexpr uint16_t kFieldOffsets[kFieldCount] = {0, 8, 12, 16, 24, 128, 136, 256, 264, 384, 388};
constexpr uint8_t kFieldWidths[kFieldCount] = {8, 4, 4, 8, 4, 8, 4, 8, 4, 4, 4};

// Drives an established link. `rx_ring` is the ring the fuzzer passed (the
// link consumes it; we produce into it and may corrupt it); `tx_ring` is the
// link's own ring mapped on our side (the link produces; we consume).
void ExerciseLink(FuzzInput& in, mesh::Link& link, Ring& rx_ring, Ring& tx_ring) {
  absl::StatusOr<ringbuf::SharedRegion> peer =
      ringbuf::SharedRegion::Map(DupOrDie(rx_ring.region_fd()), rx_ring.region_size());
  FUZZ_CHECK(peer.ok(), peer.status().ToString());
  const size_t rx_max = rx_ring.MaxFrameSize();
  const size_t tx_max = tx_ring.MaxFrameSize();
  bool tampered = false;
  bool marked_down = false;
  absl::Status drain_failed;
  std::deque<std::string> rx_model, tx_model;
  uint64_t seed = 1, tx_ok = 0, rx_ok = 0, ops = 0;

  for (; !in.empty(); ++ops) {
    switch (static_cast<LinkOp>(in.U8() % kLinkOpCount)) {
      case kLinkSend: {
        const std::string payload = Pattern(seed++, in.U16() % 3000);
        const absl::Status s = link.Send(payload, absl::InfinitePast());
        FUZZ_CHECK(CodeIn(s, {absl::StatusCode::kOk, absl::StatusCode::kResourceExhausted,
                              absl::StatusCode::kUnavailable, absl::StatusCode::kInvalidArgument}),
                   absl::StrCat("Link::Send: ", s.ToString()));
        FUZZ_CHECK(!marked_down || absl::IsUnavailable(s), "Send after MarkDown did not fail UNAVAILABLE");
        FUZZ_CHECK(payload.size() <= tx_max || !s.ok(), "Send accepted an oversized frame");
        if (s.ok()) {
          tx_model.push_back(payload);
          ++tx_ok;
        }
        break;
      }
      case kLinkSendBatch: {
        const size_t n = in.U8() % 5;
        std::vector<std::string> frames;
        for (size_t i = 0; i < n; ++i) frames.push_back(Pattern(seed++, in.U16() % 1000));
        std::vector<absl::string_view> views(frames.begin(), frames.end());
        size_t written = 0;
        const absl::Status s = link.SendBatch(views, absl::InfinitePast(), &written);
        FUZZ_CHECK(!absl::IsDataLoss(s) && written <= n, absl::StrCat("Link::SendBatch: ", s.ToString()));
        FUZZ_CHECK(!marked_down || (absl::IsUnavailable(s) && written == 0), "SendBatch after MarkDown");
        for (size_t i = 0; i < written; ++i) tx_model.push_back(frames[i]);
        tx_ok += written;
        break;
      }
      case kLinkDrain: {
        const size_t max = in.U8();
        size_t seen = 0;
        absl::StatusOr<size_t> n = link.Drain(max, [&](absl::string_view frame) {
          ++seen;
          FUZZ_CHECK(frame.size() <= rx_max, absl::StrCat("Link::Drain: frame of ", frame.size()));
          FUZZ_CHECK(drain_failed.ok(), "Link::Drain passed a frame after DATA_LOSS");
          if (tampered) return true;
          FUZZ_CHECK(!rx_model.empty() && rx_model.front() == frame, "honest link: wrong frame received");
          rx_model.pop_front();
          return true;  // taken (false would leave it first in the ring)
        });
        if (!drain_failed.ok()) {
          FUZZ_CHECK(!n.ok(), "Link::Drain recovered after DATA_LOSS");
        }
        if (n.ok()) {
          FUZZ_CHECK(*n == seen && *n <= max, "Link::Drain count");
          rx_ok += *n;
        } else {
          FUZZ_CHECK(tampered, absl::StrCat("honest link: Drain failed: ", n.status().ToString()));
          if (absl::IsDataLoss(n.status())) drain_failed = n.status();
        }
        break;
      }
      case kLinkPrepareToSleep:
        (void)link.PrepareToSleep();
        break;
      case kLinkClearDoorbell: {
        // Only a doorbell whose other end is gone may fail (UNAVAILABLE).
        const absl::Status s = link.ClearDoorbell();
        FUZZ_CHECK(s.ok() || absl::IsUnavailable(s), absl::StrCat("Link::ClearDoorbell: ", s.ToString()));
        break;
      }
      case kLinkStats: {
        const mesh::LinkStats s = link.Stats();
        FUZZ_CHECK(s.rx_queued_bytes <= s.rx_ring_bytes && s.tx_queued_bytes <= s.tx_ring_bytes,
                   "Link::Stats: queued bytes over the ring size");
        FUZZ_CHECK(s.tx_messages == tx_ok, absl::StrCat("Link::Stats: tx_messages ", s.tx_messages, " != ", tx_ok));
        FUZZ_CHECK(s.rx_messages == rx_ok, absl::StrCat("Link::Stats: rx_messages ", s.rx_messages, " != ", rx_ok));
        break;
      }
      case kLinkMarkDown:
        (void)link.MarkDown();
        marked_down = true;
        FUZZ_CHECK(link.down(), "MarkDown did not mark the link down");
        break;
      case kLinkPeerWrite: {
        const std::string payload = Pattern(seed++, in.U16() % 3000);
        if (rx_ring.producer().Write(payload, absl::InfinitePast()).ok()) rx_model.push_back(payload);
        break;
      }
      case kLinkPeerPoke: {
        const size_t offset = in.U16() % peer->size();
        absl::string_view bytes = in.Bytes(in.U8());
        const size_t n = std::min(bytes.size(), peer->size() - offset);
        for (size_t i = 0; i < n; ++i) {
          __atomic_store_n(peer->data() + offset + i, static_cast<uint8_t>(bytes[i]), __ATOMIC_RELAXED);
        }
        tampered = true;
        break;
      }
      case kLinkPeerPokeField: {
        const uint8_t f = in.U8() % kFieldCount;
        const uint64_t v = in.U64();
        uint8_t* p = peer->data() + kFieldOffsets[f];
        if (kFieldWidths[f] == 8) {
          __atomic_store_n(reinterpret_cast<uint64_t*>(p), v, __ATOMIC_RELAXED);
        } else {
          __atomic_store_n(reinterpret_cast<uint32_t*>(p), static_cast<uint32_t>(v), __ATOMIC_RELAXED);
        }
        tampered = true;
        break;
      }
      case kLinkPeerRead: {
        const size_t max = in.U8();
        absl::StatusOr<size_t> n = tx_ring.consumer().Drain(max, [&](absl::Span<const uint8_t> frame) {
          const absl::string_view got(reinterpret_cast<const char*>(frame.data()), frame.size());
          FUZZ_CHECK(!tx_model.empty() && tx_model.front() == got, "link's send ring: wrong frame");
          tx_model.pop_front();
        });
        FUZZ_CHECK(n.ok(), absl::StrCat("link's send ring is corrupt: ", n.status().ToString()));
        break;
      }
      case kLinkPeerDoorbell: {
        // Our producer end rings the link's consumer end (when we passed the
        // ring's own end). Bit 7: as a hostile peer sharing both ends' file
        // descriptions, make them blocking and fill them: the link must not
        // block (a hang is a libFuzzer timeout).
        const uint8_t count = in.U8();
        if (count & 0x80) {
          ClearNonblock(rx_ring.producer_doorbell_fd());
          ClearNonblock(rx_ring.consumer_doorbell_fd());
          (void)FillDoorbell(rx_ring.producer_doorbell_fd());
          (void)FillDoorbell(rx_ring.consumer_doorbell_fd());
        } else {
          RingDoorbell(rx_ring.producer_doorbell_fd(), count);
        }
        break;
      }
      case kLinkOpCount:
        break;
    }
  }
  if (Verbose()) {
    std::fprintf(stderr, "link_handshake: %llu link ops, %llu sent, %llu received, rx ring %s, Drain: %s\n",
                 static_cast<unsigned long long>(ops), static_cast<unsigned long long>(tx_ok),
                 static_cast<unsigned long long>(rx_ok), tampered ? "corrupted" : "honest",
                 drain_failed.ToString().c_str());
  }
}

// ----------------------------------------------------------------- sides

struct Handshake {
  uint8_t flags;
  std::vector<FdKind> kinds;
  std::string message;
};

bool Flag(const Handshake& h, LinkFlag f) { return (h.flags & f) != 0; }

// Sends the handshake message with its descriptors on `sock`, or shuts the
// socket down for writing (an EOF) when asked to send nothing at all.
// Returns false if nothing reached the peer's queue, so that it may wait
// for its deadline. Failures (the peer hung up, a full buffer) are the
// peer's business, as they would be for a real hostile process.
bool SendHandshake(int sock, const Handshake& h, const std::vector<int>& fds, int copies) {
  if (Flag(h, kLinkFlagShutdownWrite) && h.message.empty() && fds.empty()) {
    (void)::shutdown(sock, SHUT_WR);
    return true;
  }
  bool any = false;
  for (int i = 0; i < copies; ++i) any |= SendRaw(sock, h.message, fds).ok();
  return any;
}

// Link::Accept under test: the fuzzer is the dialer.
void RunAcceptSide(FuzzInput& in, const Handshake& h) {
  absl::StatusOr<Ring> ours = Ring::Create(kLinkRingBytes, ringbuf::WaitOptions::NoSpin());
  FUZZ_CHECK(ours.ok(), ours.status().ToString());
  FdFactory factory(*ours);
  std::vector<int> fds;
  for (FdKind k : h.kinds) fds.push_back(factory.Get(k));

  absl::StatusOr<std::pair<UniqueFd, UniqueFd>> pair = fdpass::SeqpacketPair();
  FUZZ_CHECK(pair.ok(), pair.status().ToString());
  UniqueFd mine = std::move(pair->first);
  const bool sent = SendHandshake(mine.get(), h, fds, Flag(h, kLinkFlagTwist) ? 2 : 1);
  if (Flag(h, kLinkFlagHangUp)) mine.reset();

  const bool uid_allowed = !Flag(h, kLinkFlagUidNotAllowed);
  const mesh::LinkParams self = SelfParams(uid_allowed);
  const absl::Time deadline = absl::Now() + kHandshakeDeadline;
  absl::StatusOr<std::shared_ptr<mesh::Link>> link =
      mesh::Link::Accept(std::move(pair->second), self, Lookup, deadline);
  const absl::Time done = absl::Now();
  FUZZ_CHECK(done <= deadline + kLateness,
             absl::StrCat("Link::Accept returned ", absl::FormatDuration(done - deadline), " after its deadline"));

  if (Verbose()) {
    std::fprintf(stderr, "link_handshake: Accept -> %s\n", link.ok() ? "link up" : link.status().ToString().c_str());
  }
  mesh::v1::LinkHello hello;
  const bool good = uid_allowed && !Flag(h, kLinkFlagOversize) && hello.ParseFromString(h.message) &&
                    !(h.message.empty() && h.kinds.empty()) && hello.version() == kLinkHelloVersion &&
                    hello.to_name() == kSelfName && hello.to_id() == kSelfId &&
                    absl::StartsWith(hello.name(), kKnownPrefix) && GoodRingFds(h.kinds, hello.ring_capacity_bytes());
  if (link.ok()) {
    FUZZ_CHECK(good, "Link::Accept accepted a bad handshake");
    FUZZ_CHECK((*link)->peer_name() == hello.name(), "Link::Accept: wrong peer name");
  } else {
    FUZZ_CHECK(CodeIn(link.status(),
                      {absl::StatusCode::kPermissionDenied, absl::StatusCode::kNotFound,
                       absl::StatusCode::kInvalidArgument, absl::StatusCode::kFailedPrecondition,
                       absl::StatusCode::kOutOfRange, absl::StatusCode::kDataLoss, absl::StatusCode::kUnavailable}) ||
                   (!sent && absl::IsDeadlineExceeded(link.status())),
               absl::StrCat("Link::Accept failed with an undocumented code: ", link.status().ToString()));
    FUZZ_CHECK(!good || Flag(h, kLinkFlagHangUp),
               absl::StrCat("Link::Accept refused a good handshake: ", link.status().ToString()));
  }
  if (!mine.valid()) return;

  // The link's answer is already queued: a welcome with its ring, or a
  // reject (best effort).
  absl::StatusOr<fdpass::ReceivedMessage> reply = fdpass::ReceiveMessage(mine.get(), absl::InfinitePast());
  if (!link.ok()) return;
  FUZZ_CHECK(reply.ok(), absl::StrCat("no LinkReply after a successful Accept: ", reply.status().ToString()));
  mesh::v1::LinkReply parsed;
  FUZZ_CHECK(parsed.ParseFromString(reply->bytes) && parsed.has_welcome() && parsed.welcome().name() == kSelfName &&
                 parsed.welcome().id() == kSelfId && parsed.welcome().ring_capacity_bytes() == kLinkRingBytes,
             "Link::Accept sent a bad welcome");
  std::optional<Ring> tx = MapLinkRing(std::move(reply->fds), kLinkRingBytes);
  if (Flag(h, kLinkFlagExercise)) {
    Ring& rx = h.kinds[0] == kFdSmallRingMemfd ? *factory.small_ring() : *ours;
    ExerciseLink(in, **link, rx, *tx);
  }
}

// Drains connections a previous input's Dial left in the listener's queue.
void DrainListener(int listener) {
  for (;;) {
    absl::StatusOr<UniqueFd> c = fdpass::Accept(listener, absl::InfinitePast());
    if (!c.ok()) return;
  }
}

// Link::Dial under test: the fuzzer listens and answers.
void RunDialSide(FuzzInput& in, const Handshake& h) {
  DialTarget& target = GetDialTarget();
  DrainListener(target.listener.get());
  absl::StatusOr<Ring> ours = Ring::Create(kLinkRingBytes, ringbuf::WaitOptions::NoSpin());
  FUZZ_CHECK(ours.ok(), ours.status().ToString());
  FdFactory factory(*ours);
  std::vector<int> fds;
  for (FdKind k : h.kinds) fds.push_back(factory.Get(k));

  mesh::v1::Member peer;
  peer.set_name(std::string(kPeerName));
  peer.set_id(kPeerId);
  const bool pid_right = !Flag(h, kLinkFlagTwist);
  peer.set_pid(pid_right ? static_cast<int32_t>(::getpid()) : static_cast<int32_t>(kWrongPidValue));
  peer.set_uid(::getuid());
  peer.set_link_socket(target.path);
  const bool uid_allowed = !Flag(h, kLinkFlagUidNotAllowed);
  const mesh::LinkParams self = SelfParams(uid_allowed);
  const absl::Time deadline = absl::Now() + kHandshakeDeadline;

  // The responder: accept, read the hello (unless hanging up), answer.
  struct Responder {
    UniqueFd conn;
    std::optional<absl::StatusOr<fdpass::ReceivedMessage>> hello;
  } r;
  const int listener = target.listener.get();
  std::thread responder([&r, &h, &fds, listener, deadline] {
    absl::StatusOr<UniqueFd> c = fdpass::Accept(listener, deadline + absl::Seconds(1));
    if (!c.ok()) return;
    if (!Flag(h, kLinkFlagHangUp)) r.hello = fdpass::ReceiveMessage(c->get(), deadline + absl::Seconds(1));
    (void)SendHandshake(c->get(), h, fds, 1);
    if (!Flag(h, kLinkFlagHangUp)) r.conn = std::move(*c);
  });
  absl::StatusOr<std::shared_ptr<mesh::Link>> link = mesh::Link::Dial(self, peer, deadline);
  const absl::Time done = absl::Now();
  responder.join();
  FUZZ_CHECK(done <= deadline + kLateness,
             absl::StrCat("Link::Dial returned ", absl::FormatDuration(done - deadline), " after its deadline"));

  if (Verbose()) {
    std::fprintf(stderr, "link_handshake: Dial -> %s\n", link.ok() ? "link up" : link.status().ToString().c_str());
  }
  mesh::v1::LinkReply reply;
  const bool good = uid_allowed && pid_right && !Flag(h, kLinkFlagOversize) && reply.ParseFromString(h.message) &&
                    !(h.message.empty() && h.kinds.empty()) && reply.has_welcome() &&
                    reply.welcome().name() == kPeerName && reply.welcome().id() == kPeerId &&
                    GoodRingFds(h.kinds, reply.welcome().ring_capacity_bytes());
  if (link.ok()) {
    FUZZ_CHECK(good, "Link::Dial accepted a bad reply");
  } else {
    FUZZ_CHECK(CodeIn(link.status(), {absl::StatusCode::kUnavailable, absl::StatusCode::kPermissionDenied,
                                      absl::StatusCode::kAborted, absl::StatusCode::kInvalidArgument,
                                      absl::StatusCode::kFailedPrecondition, absl::StatusCode::kDeadlineExceeded,
                                      absl::StatusCode::kOutOfRange, absl::StatusCode::kDataLoss}),
               absl::StrCat("Link::Dial failed with an undocumented code: ", link.status().ToString()));
    FUZZ_CHECK(!good || Flag(h, kLinkFlagHangUp) || absl::IsDeadlineExceeded(link.status()),
               absl::StrCat("Link::Dial refused a good reply: ", link.status().ToString()));
    return;
  }
  // A responder that hung up without reading the hello may still have
  // answered in time: the link is up, but we hold no hello to check.
  if (Flag(h, kLinkFlagHangUp)) return;
  FUZZ_CHECK(r.hello.has_value() && r.hello->ok(), "Link::Dial succeeded but sent no hello");
  mesh::v1::LinkHello hello;
  FUZZ_CHECK(hello.ParseFromString((*r.hello)->bytes) && hello.version() == kLinkHelloVersion &&
                 hello.name() == kSelfName && hello.id() == kSelfId && hello.to_name() == kPeerName &&
                 hello.to_id() == kPeerId && hello.ring_capacity_bytes() == kLinkRingBytes,
             "Link::Dial sent a bad hello");
  std::optional<Ring> tx = MapLinkRing(std::move((*r.hello)->fds), kLinkRingBytes);
  if (Flag(h, kLinkFlagExercise)) {
    Ring& rx = h.kinds[0] == kFdSmallRingMemfd ? *factory.small_ring() : *ours;
    ExerciseLink(in, **link, rx, *tx);
  }
}

}  // namespace
}  // namespace shmesh_fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace shmesh_fuzz;  // NOLINT(build/namespaces): a C entry point
  GetDialTarget();              // before counting descriptors: it lives for the process
  const size_t fds_before = OpenFds();
  {
    FuzzInput in(data, size);
    Handshake h;
    h.flags = in.U8();
    const size_t nfds = in.U8() % (kMaxFuzzFds + 1);
    for (size_t i = 0; i < nfds; ++i) h.kinds.push_back(static_cast<FdKind>(in.U8() % kFdKindCount));
    h.message = std::string(in.Bytes(in.U16()));
    if (Flag(h, kLinkFlagOversize)) h.message.resize(fdpass::kMaxMessageBytes + 1, '\0');
    if (Flag(h, kLinkFlagDialSide)) {
      RunDialSide(in, h);
    } else {
      RunAcceptSide(in, h);
    }
  }
  const size_t fds_after = OpenFds();
  FUZZ_CHECK(fds_after == fds_before,
             absl::StrCat("descriptor leak: ", fds_before, " open before, ", fds_after, " after"));
  return 0;
}
