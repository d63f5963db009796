// A hostile peer against a node's pool receiver (mesh/pool/inbox.h,
// mesh/dataplane/receiver.cc): a raw link (a real mesh::Link, dialed after
// announcing itself through Discovery.Join, as in hostile_frames_test.cc)
// that hands over pool segments of its own making on the link socket
// (LinkControl.PoolSegment) and writes kPoolRef and kPoolRelease frames
// straight into its ring.
//
//   * a reference to a segment never handed over, out of its segment's
//     bounds (also with offset + length overflowing), longer than the
//     node's max_message_bytes, with reserved bytes set or segment 0, or
//     not 32 bytes long: dropped and counted (TopologySnapshot.pools[0].
//     dropped_bad_refs), nothing delivered, and the node keeps serving the
//     link (a valid reference that follows is delivered with its bytes and
//     released back);
//   * a segment that is not a memfd (a pipe, a regular file), unsealed,
//     partly sealed, write-sealed, of another size than announced, with id
//     0, handed over twice, without its descriptor, or one more than
//     pool.max_peer_segments: the node fails the link (peer-down, "peer
//     broke the pool protocol") and goes on running;
//   * releases of tokens the node never sent, a token released twice, and
//     malformed release frames: counted (bad_releases) or dropped, the
//     node's own pool stays consistent and the node keeps serving;
//   * the sender cannot shrink or grow a segment it handed over (ftruncate
//     fails with EPERM: the seals), so the receiver's mapping can never
//     raise SIGBUS; punching a hole only reads back as zeros.
//
// Everything is real (memfd segments and rings, the link socket, gRPC
// discovery); the peer runs in the test process, with the test's pid.
//
// Thread contract: the test's main thread drives the raw link (the single
// consumer of its receive ring); the node runs its own threads; state its
// handlers share with the test is under a mutex.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "mesh/dataplane/envelope.h"
#include "mesh/links/link.h"
#include "mesh/node.h"
#include "tests/raw_peer.h"
#include "tests/stderr_capture.h"
#include "mesh/pool/pool_ref.h"
#include "mesh/v1/mesh.grpc.pb.h"
#include "mesh/v1/mesh.pb.h"
#include "ringbuf/region.h"

namespace {

using mesh::FrameKind;

constexpr char kEvil[] = "0evil";  // sorts first: it dials
constexpr uint64_t kEvilId = 0x0e0e0e0e0e0e0e0eULL;
constexpr uint64_t kRingBytes = 1 << 16;
constexpr uint64_t kSegmentBytes = 1 << 16;
constexpr uint64_t kMaxMessageBytes = 16384;
constexpr uint32_t kMaxPeerSegments = 2;

std::string Frame(FrameKind kind, uint32_t channel, absl::string_view payload) {
  mesh::FrameHeader h;
  h.kind = static_cast<uint8_t>(kind);
  h.channel = channel;
  char buf[mesh::kMaxFrameHeaderBytes];
  const size_t n = mesh::EncodeFrameHeader(h, buf);
  return std::string(buf, n) + std::string(payload);
}

std::string RefBytes(uint32_t segment, uint64_t offset, uint64_t length, uint64_t token) {
  mesh::pool::PoolRef ref;
  ref.segment = segment;
  ref.offset = offset;
  ref.length = length;
  ref.token = token;
  char b[mesh::pool::kPoolRefBytes];
  mesh::pool::EncodePoolRef(ref, b);
  return std::string(b, sizeof b);
}

std::string RefFrame(uint32_t segment, uint64_t offset, uint64_t length, uint64_t token) {
  return Frame(FrameKind::kPoolRef, 0, RefBytes(segment, offset, length, token));
}

std::string Tokens(const std::vector<uint64_t>& tokens) {
  std::string out;
  for (uint64_t t : tokens) {
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((t >> (8 * i)) & 0xff));
  }
  return out;
}

using shmesh::testing::StderrCapture;

// `level`: the peer-down line with its reason is logged at INFO.
mesh::v1::NodeConfig Config(const std::string& dir, const std::string& name, mesh::v1::LogLevel level) {
  mesh::v1::NodeConfig c;
  c.set_name(name);
  c.set_run_dir(dir);
  c.set_ring_capacity_bytes(kRingBytes);
  c.set_max_message_bytes(kMaxMessageBytes);
  c.mutable_pool()->set_threshold_bytes(1024);
  c.mutable_pool()->set_max_peer_segments(kMaxPeerSegments);
  c.set_log_level(getenv("MESH_TEST_LOG") ? mesh::v1::DEBUG : level);
  return c;
}

// The hostile peer's side: a raw link to node `a` and what it read.
class RawPeer {
 public:
  static absl::StatusOr<std::unique_ptr<RawPeer>> Connect(mesh::Node* a, const std::string& dir) {
    absl::StatusOr<std::shared_ptr<mesh::Link>> link =
        shmesh::testing::DialAsRawPeer(a, dir, kEvil, kEvilId, kRingBytes);
    if (!link.ok()) return link.status();
    return std::unique_ptr<RawPeer>(new RawPeer(std::move(*link)));
  }

  mesh::Link& link() { return *link_; }

  absl::Status Write(const std::string& frame) { return link_->Send(frame, absl::Now() + absl::Seconds(5)); }

  absl::Status HandOver(uint32_t id, uint64_t size, std::vector<int> fds) {
    mesh::v1::LinkControl msg;
    msg.mutable_pool_segment()->set_id(id);
    msg.mutable_pool_segment()->set_size(size);
    return link_->SendControl(msg, fds);
  }

  // Reads control messages and frames until `done` (checked after each)
  // or `timeout`. Pool segments the node hands over are kept.
  bool PumpUntil(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(10)) {
    for (absl::Time end = absl::Now() + timeout;;) {
      absl::StatusOr<std::optional<mesh::ControlMessage>> c = link_->ReadControl();
      if (c.ok() && c->has_value()) {
        if ((*c)->message.has_pool_segment() && (*c)->fds.size() == 1) {
          const auto& seg = (*c)->message.pool_segment();
          absl::StatusOr<ringbuf::SharedRegion> r = ringbuf::SharedRegion::MapReadOnly(std::move((*c)->fds[0]), seg.size());
          EXPECT_TRUE(r.ok()) << r.status();
          if (r.ok()) segments.emplace(seg.id(), std::make_unique<ringbuf::SharedRegion>(std::move(*r)));
        }
        continue;
      }
      absl::StatusOr<size_t> n = link_->Drain(64, [&](absl::string_view f) {
        mesh::ParsedFrame p = mesh::ParseFrame(f);
        EXPECT_TRUE(p.ok()) << "the node wrote an invalid frame: " << mesh::FrameErrorName(p.error);
        frames.push_back({p.header, std::string(p.payload)});
        return true;
      });
      if (done()) return true;
      if (absl::Now() > end) return false;
      if (!n.ok() || *n == 0) absl::SleepFor(absl::Milliseconds(1));
    }
  }

  // Tokens of the kPoolRelease frames read so far.
  std::vector<uint64_t> Released() const {
    std::vector<uint64_t> out;
    for (const auto& f : frames) {
      if (f.first.frame_kind() != FrameKind::kPoolRelease) continue;
      EXPECT_TRUE(mesh::pool::IsReleasePayload(f.second));
      for (size_t i = 0; i < f.second.size() / 8; ++i) out.push_back(mesh::pool::ReleaseToken(f.second, i));
    }
    return out;
  }

  std::vector<std::pair<mesh::FrameHeader, std::string>> frames;
  std::map<uint32_t, std::unique_ptr<ringbuf::SharedRegion>> segments;

 private:
  explicit RawPeer(std::shared_ptr<mesh::Link> link) : link_(std::move(link)) {}
  std::shared_ptr<mesh::Link> link_;
};

class HostilePoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mhp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    evil_.reset();
    if (node_ != nullptr) node_->Stop();
    node_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts node "a" (in its own run directory `sub`) and connects the
  // hostile peer to it.
  void StartNodeAndPeer(const std::string& sub = "run", mesh::v1::LogLevel level = mesh::v1::WARNING) {
    evil_.reset();
    if (node_ != nullptr) node_->Stop();
    node_.reset();
    downs_.Clear();
    const std::string dir = dir_ + "/" + sub;
    std::filesystem::create_directories(dir);
    auto a = mesh::Node::Create(Config(dir, "a", level));
    ASSERT_TRUE(a.ok()) << a.status();
    node_ = std::move(*a);
    ASSERT_TRUE(node_->SetPeerDownHandler(downs_.Handler()).ok());
    ASSERT_TRUE(node_->Start().ok());
    auto evil = RawPeer::Connect(node_.get(), dir);
    ASSERT_TRUE(evil.ok()) << evil.status();
    evil_ = std::move(*evil);
    for (absl::Time end = absl::Now() + absl::Seconds(10); node_->Peers().empty() && absl::Now() < end;) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ASSERT_EQ(node_->Peers(), std::vector<std::string>{kEvil});
  }

  mesh::v1::PoolUsage Pool() {
    absl::StatusOr<mesh::v1::TopologySnapshot> t = node_->Topology(true);
    EXPECT_TRUE(t.ok()) << t.status();
    if (!t.ok() || t->pools_size() == 0) {
      ADD_FAILURE() << "no pool in the topology";
      return {};
    }
    return t->pools(0);
  }

  // A sealed segment of the peer's, with `text` at `offset`.
  static std::unique_ptr<ringbuf::SharedRegion> Segment(uint64_t offset = 0, absl::string_view text = {}) {
    absl::StatusOr<ringbuf::SharedRegion> r = ringbuf::SharedRegion::Create("evil-pool", kSegmentBytes);
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return nullptr;
    if (!text.empty()) std::memcpy(r->data() + offset, text.data(), text.size());
    return std::make_unique<ringbuf::SharedRegion>(std::move(*r));
  }

  // An honest plain message from the peer, then the node's Receive must
  // return exactly it (nothing the hostile frames before it carried).
  void ExpectHonestMessageDelivered(const std::string& text) {
    ASSERT_TRUE(evil_->Write(Frame(FrameKind::kMessage, 0, text)).ok());
    absl::StatusOr<mesh::Message> m = node_->Receive(absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status() << " (the node stopped serving the link)";
    EXPECT_EQ(m->from, kEvil);
    EXPECT_EQ(m->data(), text) << "something hostile was delivered";
  }

  void ExpectNothingMore() {
    absl::StatusOr<mesh::Message> m = node_->Receive(absl::Now() + absl::Milliseconds(50));
    EXPECT_FALSE(m.ok()) << "delivered: " << m->data().size() << " bytes";
  }

  // The node fails the link: peer-down, no more peers.
  void ExpectLinkFails(const std::string& what) { downs_.ExpectLinkFails(node_.get(), kEvil, what); }

  std::string dir_;
  std::unique_ptr<mesh::Node> node_;
  std::unique_ptr<RawPeer> evil_;
  shmesh::testing::PeerDowns downs_;
};

// (a) A reference to a segment never handed over: the node reads its
// control channel once for it, then drops it and counts it.
TEST_F(HostilePoolTest, ReferenceToUnknownSegmentIsDroppedAndCounted) {
  ASSERT_NO_FATAL_FAILURE(StartNodeAndPeer());
  auto capture = std::make_unique<StderrCapture>(dir_ + "/stderr");
  ASSERT_TRUE(evil_->Write(RefFrame(7, 0, 5, 1)).ok());
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRef, 9, RefBytes(8, 0, 5, 2))).ok());  // as a topic
  ASSERT_NO_FATAL_FAILURE(ExpectHonestMessageDelivered("after unknown segments"));
  ExpectNothingMore();
  EXPECT_EQ(Pool().dropped_bad_refs(), 2u);
  EXPECT_EQ(Pool().mapped_segments(), 0u);
  EXPECT_EQ(node_->Peers(), std::vector<std::string>{kEvil});
  const std::string log = capture->Text();
  EXPECT_NE(log.find("a pool reference that does not resolve (unknown_segment)"), std::string::npos) << log;
}

// (b) Segments the node must refuse: each fails the link.
TEST_F(HostilePoolTest, BadSegmentsFailTheLink) {
  struct Case {
    std::string name;
    // Hands the bad segment(s) over.
    std::function<void(RawPeer&)> hand_over;
  };
  auto memfd = [](unsigned seals, uint64_t size) {
    const int fd = ::memfd_create("evil-raw", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    EXPECT_GE(fd, 0) << std::strerror(errno);
    EXPECT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0) << std::strerror(errno);
    if (seals != 0) {
      EXPECT_EQ(::fcntl(fd, F_ADD_SEALS, seals), 0) << std::strerror(errno);
    }
    return fd;
  };
  constexpr unsigned kAll = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL;
  const std::vector<Case> cases = {
      {"unsealed memfd",
       [&](RawPeer& p) {
         const int fd = memfd(0, kSegmentBytes);
         EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {fd}).ok());
         ::close(fd);
       }},
      {"memfd sealed against shrinking only",
       [&](RawPeer& p) {
         const int fd = memfd(F_SEAL_SHRINK, kSegmentBytes);
         EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {fd}).ok());
         ::close(fd);
       }},
      {"memfd sealed against writing too",
       [&](RawPeer& p) {
         const int fd = memfd(kAll | F_SEAL_WRITE, kSegmentBytes);
         EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {fd}).ok());
         ::close(fd);
       }},
      {"sealed memfd smaller than announced",
       [&](RawPeer& p) {
         const int fd = memfd(kAll, kSegmentBytes / 2);
         EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {fd}).ok());
         ::close(fd);
       }},
      {"sealed memfd larger than announced",
       [&](RawPeer& p) {
         const int fd = memfd(kAll, kSegmentBytes * 2);
         EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {fd}).ok());
         ::close(fd);
       }},
      {"announced size 0",
       [&](RawPeer& p) {
         const int fd = memfd(kAll, kSegmentBytes);
         EXPECT_TRUE(p.HandOver(1, 0, {fd}).ok());
         ::close(fd);
       }},
      {"a pipe",
       [&](RawPeer& p) {
         int fds[2];
         ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
         EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {fds[0]}).ok());
         ::close(fds[0]);
         ::close(fds[1]);
       }},
      {"a regular file",
       [&](RawPeer& p) {
         const std::string path = dir_ + "/regular";
         const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
         ASSERT_GE(fd, 0);
         EXPECT_EQ(::ftruncate(fd, kSegmentBytes), 0);
         EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {fd}).ok());
         ::close(fd);
       }},
      {"no descriptor",
       [&](RawPeer& p) { EXPECT_TRUE(p.HandOver(1, kSegmentBytes, {}).ok()); }},
      {"id 0",
       [&](RawPeer& p) {
         auto seg = Segment();
         EXPECT_TRUE(p.HandOver(0, kSegmentBytes, {seg->fd()}).ok());
       }},
      {"the same id twice",
       [&](RawPeer& p) {
         auto seg = Segment();
         auto seg2 = Segment();
         EXPECT_TRUE(p.HandOver(3, kSegmentBytes, {seg->fd()}).ok());
         EXPECT_TRUE(p.HandOver(3, kSegmentBytes, {seg2->fd()}).ok());
       }},
      {"more than max_peer_segments",
       [&](RawPeer& p) {
         for (uint32_t id = 1; id <= kMaxPeerSegments + 1; ++id) {
           auto seg = Segment();
           EXPECT_TRUE(p.HandOver(id, kSegmentBytes, {seg->fd()}).ok());
         }
       }},
  };
  int i = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_NO_FATAL_FAILURE(StartNodeAndPeer(absl::StrCat("run", i++), mesh::v1::INFO));
    auto capture = std::make_unique<StderrCapture>(absl::StrCat(dir_, "/stderr", i));
    c.hand_over(*evil_);
    ExpectLinkFails(c.name);
    // The peer-down line is logged after the handler's event is posted.
    std::string log = capture->Text();
    for (absl::Time end = absl::Now() + absl::Seconds(5);
         log.find("peer broke the pool protocol") == std::string::npos && absl::Now() < end;
         log = capture->Text()) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    EXPECT_NE(log.find("peer broke the pool protocol"), std::string::npos) << log;
    for (absl::Time end = absl::Now() + absl::Seconds(10); Pool().mapped_segments() != 0 && absl::Now() < end;) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    EXPECT_EQ(Pool().mapped_segments(), 0u) << "segments of a failed link stay mapped";
  }
}

// (c) A valid segment, then references that do not resolve in it: each is
// dropped and counted; then a valid one is delivered and released.
TEST_F(HostilePoolTest, BadReferencesToAValidSegmentAreDroppedAndCounted) {
  ASSERT_NO_FATAL_FAILURE(StartNodeAndPeer());
  auto seg = Segment(4096, "pooled hello");
  ASSERT_NE(seg, nullptr);
  ASSERT_TRUE(evil_->HandOver(5, kSegmentBytes, {seg->fd()}).ok());
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  std::string reserved = RefBytes(5, 4096, 12, 10);
  reserved[4] = 1;
  std::string reserved_high = RefBytes(5, 4096, 12, 10);
  reserved_high[7] = static_cast<char>(0x80);
  const std::string good = RefBytes(5, 4096, 12, 99);
  auto capture = std::make_unique<StderrCapture>(dir_ + "/stderr");
  const std::vector<std::string> bad = {
      RefFrame(5, kSegmentBytes + 1, 0, 1),           // offset past the end
      RefFrame(5, kSegmentBytes, 1, 2),               // one byte past the end
      RefFrame(5, kSegmentBytes - 10, 11, 3),         // ends one byte past the end
      RefFrame(5, 8, kMax - 4, 4),                    // offset + length overflows
      RefFrame(5, kMax, 2, 5),                        // offset + length overflows
      RefFrame(5, kMax, kMax, 6),                     // both huge
      RefFrame(5, 0, kSegmentBytes + 1, 7),           // longer than the segment
      RefFrame(5, 0, kMaxMessageBytes + 1, 8),        // in bounds, over max_message_bytes
      RefFrame(0, 4096, 12, 9),                       // segment 0
      Frame(FrameKind::kPoolRef, 0, reserved),        // reserved bytes set
      Frame(FrameKind::kPoolRef, 0, reserved_high),   // reserved bytes set
      Frame(FrameKind::kPoolRef, 0, good.substr(0, 31)),
      Frame(FrameKind::kPoolRef, 0, good + "x"),      // 33 bytes
      Frame(FrameKind::kPoolRef, 0, ""),
      RefFrame(6, 0, 12, 11),                         // a segment never handed over
  };
  for (const std::string& f : bad) ASSERT_TRUE(evil_->Write(f).ok());
  ASSERT_NO_FATAL_FAILURE(ExpectHonestMessageDelivered("after bad references"));
  ExpectNothingMore();
  mesh::v1::PoolUsage pool = Pool();
  EXPECT_EQ(pool.dropped_bad_refs(), bad.size());
  EXPECT_EQ(pool.mapped_segments(), 1u);
  EXPECT_EQ(pool.mapped_bytes(), kSegmentBytes);
  EXPECT_EQ(node_->Peers(), std::vector<std::string>{kEvil});
  const std::string log = capture->Text();
  EXPECT_NE(log.find("a pool reference that does not resolve ("), std::string::npos) << log;
  capture.reset();
  // None of them was released (they were never taken).
  ASSERT_TRUE(evil_->PumpUntil([] { return true; }));
  EXPECT_TRUE(evil_->Released().empty());

  // The valid reference: delivered zero-copy, with the right bytes, and
  // released back once dropped. At the very end of the segment too.
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRef, 0, good)).ok());
  std::memcpy(seg->data() + kSegmentBytes - 3, "end", 3);
  ASSERT_TRUE(evil_->Write(RefFrame(5, kSegmentBytes - 3, 3, 100)).ok());
  ASSERT_TRUE(evil_->Write(RefFrame(5, kSegmentBytes, 0, 101)).ok());  // empty, at the end
  {
    absl::StatusOr<mesh::Message> m = node_->Receive(absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->from, kEvil);
    EXPECT_EQ(m->data(), "pooled hello");
    EXPECT_NE(m->shared, nullptr) << "not zero-copy";
    m = node_->Receive(absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->data(), "end");
    m = node_->Receive(absl::Now() + absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->data(), "");
  }
  EXPECT_TRUE(evil_->PumpUntil([&] { return evil_->Released().size() >= 3; }));
  std::vector<uint64_t> released = evil_->Released();
  std::sort(released.begin(), released.end());
  EXPECT_EQ(released, (std::vector<uint64_t>{99, 100, 101}));
  EXPECT_EQ(Pool().dropped_bad_refs(), bad.size());
}

// (d) Releases of tokens the node never sent, twice the same token, and
// malformed release frames: counted or dropped; the node keeps serving.
TEST_F(HostilePoolTest, ForgedAndMalformedReleasesAreCountedAndIgnored) {
  ASSERT_NO_FATAL_FAILURE(StartNodeAndPeer());
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, Tokens({1, 2, 0xffffffffffffffffULL}))).ok());
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, std::string(7, '\x01'))).ok());  // 7 bytes
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, "")).ok());                     // no token
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, std::string(8 * 513, '\x02'))).ok());  // too many
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, std::string(8 * 512, '\x00'))).ok());  // 512 of 0
  ASSERT_NO_FATAL_FAILURE(ExpectHonestMessageDelivered("after forged releases"));
  EXPECT_EQ(Pool().bad_releases(), 3u + 512u);
  EXPECT_EQ(Pool().blocks_in_use(), 0u);

  // A real token: the node sends a large message through its pool; the
  // peer releases it twice (the second is a bad release) and a neighbour
  // token that was never handed out.
  const std::string big(5000, 'B');
  ASSERT_TRUE(node_->Send(kEvil, big, absl::Now() + absl::Seconds(10)).ok());
  const std::pair<mesh::FrameHeader, std::string>* ref_frame = nullptr;
  ASSERT_TRUE(evil_->PumpUntil([&] {
    for (const auto& f : evil_->frames) {
      if (f.first.frame_kind() == FrameKind::kPoolRef) ref_frame = &f;
    }
    return ref_frame != nullptr;
  }));
  mesh::pool::PoolRef ref;
  ASSERT_EQ(mesh::pool::ParsePoolRef(ref_frame->second, &ref), mesh::pool::RefError::kNone);
  ASSERT_EQ(evil_->segments.count(ref.segment), 1u) << "the segment came after its reference";
  const ringbuf::SharedRegion& seg = *evil_->segments[ref.segment];
  ASSERT_EQ(mesh::pool::CheckRefBounds(ref, seg.size()), mesh::pool::RefError::kNone);
  EXPECT_EQ(absl::string_view(reinterpret_cast<const char*>(seg.data()) + ref.offset, ref.length), big);
  EXPECT_EQ(Pool().blocks_in_use(), 1u);
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, Tokens({ref.token + 1}))).ok());
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, Tokens({ref.token, ref.token}))).ok());
  ASSERT_TRUE(evil_->Write(Frame(FrameKind::kPoolRelease, 0, Tokens({ref.token}))).ok());
  ASSERT_NO_FATAL_FAILURE(ExpectHonestMessageDelivered("after a double release"));
  mesh::v1::PoolUsage pool = Pool();
  EXPECT_EQ(pool.bad_releases(), 3u + 512u + 3u);
  EXPECT_EQ(pool.blocks_in_use(), 0u);
  // The pool still works: another large message goes through.
  ASSERT_TRUE(node_->Send(kEvil, std::string(6000, 'C'), absl::Now() + absl::Seconds(10)).ok());
  int refs = 0;
  EXPECT_TRUE(evil_->PumpUntil([&] {
    refs = 0;
    for (const auto& f : evil_->frames) refs += f.first.frame_kind() == FrameKind::kPoolRef;
    return refs == 2;
  }));
  EXPECT_EQ(node_->Peers(), std::vector<std::string>{kEvil});
}

// (e) The sender cannot change the size of a segment it handed over: the
// seals refuse ftruncate (EPERM), so the node's mapping never raises
// SIGBUS. Punching a hole (allowed without F_SEAL_WRITE) reads as zeros.
TEST_F(HostilePoolTest, HandedOverSegmentCannotBeTruncated) {
  ASSERT_NO_FATAL_FAILURE(StartNodeAndPeer());
  auto seg = Segment(kSegmentBytes - 8192, std::string(8192, 'T'));
  ASSERT_NE(seg, nullptr);
  ASSERT_TRUE(evil_->HandOver(2, kSegmentBytes, {seg->fd()}).ok());
  ASSERT_TRUE(evil_->Write(RefFrame(2, kSegmentBytes - 4, 4, 1)).ok());
  absl::StatusOr<mesh::Message> held = node_->Receive(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(held->data(), "TTTT");

  errno = 0;
  EXPECT_EQ(::ftruncate(seg->fd(), 0), -1);
  EXPECT_EQ(errno, EPERM) << std::strerror(errno);
  errno = 0;
  EXPECT_EQ(::ftruncate(seg->fd(), kSegmentBytes / 2), -1);
  EXPECT_EQ(errno, EPERM) << std::strerror(errno);
  errno = 0;
  EXPECT_EQ(::ftruncate(seg->fd(), kSegmentBytes * 2), -1);
  EXPECT_EQ(errno, EPERM) << std::strerror(errno);
  // Nor can it drop or change the seals.
  errno = 0;
  EXPECT_EQ(::fcntl(seg->fd(), F_ADD_SEALS, F_SEAL_WRITE), -1);
  EXPECT_EQ(errno, EPERM) << std::strerror(errno);
  struct stat st;
  ASSERT_EQ(::fstat(seg->fd(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), kSegmentBytes);

  // A hole in the last pages: the payload it held reads as zeros, no fault.
  const int punched = ::fallocate(seg->fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                  static_cast<off_t>(kSegmentBytes - 8192), 8192);
  EXPECT_EQ(held->data().size(), 4u);
  if (punched == 0) {
    EXPECT_EQ(held->data(), std::string(4, '\0'));
  }
  held = absl::UnknownError("dropped");  // released
  ASSERT_TRUE(evil_->Write(RefFrame(2, kSegmentBytes - 8192, 8192, 2)).ok());
  absl::StatusOr<mesh::Message> m = node_->Receive(absl::Now() + absl::Seconds(10));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->data().size(), 8192u);
  if (punched == 0) {
    EXPECT_EQ(m->data(), std::string(8192, '\0'));
  }
  ASSERT_NO_FATAL_FAILURE(ExpectHonestMessageDelivered("after truncation attempts"));
  EXPECT_EQ(Pool().dropped_bad_refs(), 0u);
}

}  // namespace
