// Writes the seed corpus of the fuzz targets (formats in fuzz_formats.h):
//
//   bazel run //tests/fuzz:corpus_gen -- "$PWD/tests/fuzz/corpus" "$PWD/tests/fuzz/corpus"
//
// creates CORPUS_DIR/{ring_consumer,link_handshake}/* and, if given, the
// reproducers of reported bugs in FINDINGS_DIR/{ring_consumer,link_handshake}/*. Each seed is a small,
// meaningful starting point: a valid frame sequence, a good handshake with
// its two descriptors (ring memfd, doorbell end), and the classic ways to get each wrong, so the
// fuzzer starts next to the interesting checks instead of finding them.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "mesh/v1/mesh.pb.h"
#include "ringbuf/ring_layout.h"
#include "tests/fuzz/fuzz_formats.h"

namespace shmesh_fuzz {
namespace {

std::string g_dir;
int g_written = 0;

void Write(const std::string& sub, const std::string& name, const std::string& bytes) {
  const std::string dir = g_dir + "/" + sub;
  std::error_code ignored;  // a failure shows up when the file is written
  std::filesystem::create_directories(dir, ignored);
  const std::string path = dir + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "corpus_gen: cannot write %s\n", path.c_str());
    std::exit(1);
  }
  ++g_written;
}

// ------------------------------------------------------------ ring_consumer

// Capacity selectors: 256 << n.
constexpr uint8_t k256 = 0, k1024 = 2, k4096 = 4;

void RingSeeds() {
  auto ring = [](uint8_t cap) {
    InputBuilder b;
    b.U8(cap);
    return b;
  };
  {  // A valid stream: frames of several sizes, read every way there is.
    InputBuilder b = ring(k4096);
    b.U8(kWrite).U16(100).U8(kWrite).U16(0).U8(kWrite).U16(2000);
    b.U8(kTryRead).U8(kPeek).U8(kPeek).U8(kRelease).U8(kDrain).U8(16);
    b.U8(kReserve).U16(300).U8(kCommit).U16(120).U8(kWriteBatch).U8(3).U16(8).U16(9).U16(10);
    b.U8(kRead).U8(0).U8(kDrain).U8(2).U8(kDrain).U8(8).U8(kWait).U8(0x85);
    Write("ring_consumer", "valid_stream", b.str());
  }
  {  // Wrap-around with padding frames in a 256-byte ring.
    InputBuilder b = ring(k256);
    for (int i = 0; i < 6; ++i) b.U8(kWrite).U16(40 + i * 13).U8(kTryRead);
    b.U8(kWrite).U16(100).U8(kWrite).U16(100).U8(kWrite).U16(100).U8(kDrain).U8(8);
    Write("ring_consumer", "wraparound_padding", b.str());
  }
  {  // Zero-copy producer: reserve, commit shorter, publish later.
    InputBuilder b = ring(k1024);
    b.U8(kReserve).U16(200).U8(kCommitNoPublish).U16(150).U8(kPeek);
    b.U8(kProducerPublish).U8(kPeek).U8(kReleaseNoPublish).U8(kConsumerPublish);
    b.U8(kReserve).U16(600).U8(kReserve).U16(10).U8(kCommit).U16(10).U8(kTryRead);
    Write("ring_consumer", "reserve_commit", b.str());
  }
  {  // The peer rewrites the frame header between Peek() and Release().
    InputBuilder b = ring(k1024);
    b.U8(kWrite).U16(40).U8(kWrite).U16(40).U8(kPeek);
    b.U8(kPokeFrame).U16(0).U8(3).U32(9).U8(0);  // len = max + 9
    b.U8(kRelease).U8(kTryRead).U8(kPeek).U8(kWrite).U16(8).U8(kDrain).U8(4);
    Write("ring_consumer", "poke_between_peek_and_release", b.str());
  }
  {  // tail more than a capacity ahead of head.
    InputBuilder b = ring(k1024);
    b.U8(kWrite).U16(16).U8(kPokeField).U8(kFieldTail).U8(3).U64(8).U8(kPeek).U8(kTryRead).U8(kWrite).U16(8);
    Write("ring_consumer", "tail_beyond_capacity", b.str());
  }
  {  // Unaligned and backwards tail.
    InputBuilder b = ring(k256);
    b.U8(kWrite).U16(16).U8(kTryRead).U8(kPokeField).U8(kFieldTail).U8(1).U64(0xfff8);  // -8
    b.U8(kPeek).U8(kPokeField).U8(kFieldTail).U8(1).U64(3).U8(kDrain).U8(1);
    Write("ring_consumer", "tail_backwards_unaligned", b.str());
  }
  {  // A padding frame with the wrong length near the end of the buffer.
    InputBuilder b = ring(k256);
    b.U8(kWrite).U16(100).U8(kTryRead).U8(kWrite).U16(100).U8(kTryRead);
    b.U8(kWrite).U16(60);                        // needs padding: the frame wraps to offset 0
    b.U8(kPokeFrame).U16(0).U8(2).U32(8).U8(1);  // padding, 8 bytes too long
    b.U8(kDrain).U8(4).U8(kPeek);
    Write("ring_consumer", "bad_padding", b.str());
  }
  {  // Frame longer than the data published, and of an unknown type.
    InputBuilder b = ring(k4096);
    b.U8(kWrite).U16(64).U8(kPokeFrame).U16(0).U8(1).U32(63).U8(0);
    b.U8(kPokeFrame).U16(0).U8(0).U32(500).U8(0).U8(kPeek);
    b.U8(kPokeFrame).U16(0).U8(1).U32(8).U8(2).U32(0xdeadbeef).U8(kTryRead);
    Write("ring_consumer", "frame_overruns_tail", b.str());
  }
  {  // Garbage in the closed word and the sleep flags.
    InputBuilder b = ring(k1024);
    b.U8(kPokeField).U8(kFieldClosed).U8(0).U64(0x80).U8(kWrite).U16(8).U8(kPeek);
    Write("ring_consumer", "closed_garbage", b.str());
    InputBuilder c = ring(k1024);
    c.U8(kPokeField).U8(kFieldConsumerWaiting).U8(0).U64(7).U8(kWrite).U16(8);
    c.U8(kPokeField).U8(kFieldProducerWaiting).U8(0).U64(5).U8(kTryRead).U8(kWrite).U16(8);
    Write("ring_consumer", "waiting_flag_garbage", c.str());
  }
  {  // head moves backwards / past the published tail: the producer fails.
    InputBuilder b = ring(k256);
    for (int i = 0; i < 4; ++i) b.U8(kWrite).U16(50);
    b.U8(kTryRead).U8(kPokeField).U8(kFieldHead).U8(1).U64(0xfff0);
    b.U8(kWrite).U16(50).U8(kWaitForSpace).U16(100).U8(0x81).U8(kProducerPrepareToSleep).U16(100);
    b.U8(kPokeField).U8(kFieldHead).U8(2).U64(64).U8(kWrite).U16(50);
    Write("ring_consumer", "head_backwards", b.str());
  }
  {  // A racing writer flips the frame word and tail while frames are read.
    InputBuilder b = ring(k1024);
    for (int i = 0; i < 8; ++i) b.U8(kWrite).U16(20 + i);
    b.U8(kRace).U8(10).U8(2);
    b.U8(kFieldCount + 0).U64(uint64_t{0x61746164} << 32 | 0xffff);  // frame word: huge data frame
    b.U8(kFieldTail).U64(4096);
    for (int i = 0; i < 10; ++i) b.U8(i % 2 ? kTryRead : kDrain).U8(3);
    Write("ring_consumer", "race_frame_and_tail", b.str());
  }
  {  // Attach to a header the peer corrupted, and to an honest one.
    InputBuilder b = ring(k1024);
    b.U8(kWrite).U16(30).U8(kAttach).U8(3).U8(0).U16(0).U8(2).U16(4).U8(3).U16(20);
    b.U8(kPokeField).U8(kFieldCapacity).U8(0).U64(12345).U8(kAttach).U8(1).U8(0).U16(0);
    b.U8(kPokeField).U8(kFieldCapacity).U8(0).U64(512).U8(kAttach).U8(1).U8(0).U16(0);
    b.U8(kPokeField).U8(kFieldMagic).U8(0).U64(0).U8(kAttach).U8(0);
    Write("ring_consumer", "attach_corrupt_header", b.str());
  }
  {  // Sleep protocol with doorbell spam; end of stream after producer Close.
    InputBuilder b = ring(k1024);
    b.U8(kConsumerPrepareToSleep).U8(kRingDoorbell).U8(0).U8(3).U8(kWait).U8(0x88);
    b.U8(kWrite).U16(10).U8(kWait).U8(0x88).U8(kRead).U8(0x80).U8(kWrite).U16(20);
    b.U8(kProducerClose).U8(kTryRead).U8(kTryRead).U8(kPeek).U8(kConsumerClose).U8(kWrite).U16(1);
    Write("ring_consumer", "sleep_and_close", b.str());
  }
  {  // A hostile doorbell: both ends made blocking and filled in both
     // directions while each side asks for a ring; then the peer hangs up.
    InputBuilder b = ring(k1024);
    b.U8(kRingDoorbell).U8(2 | 4).U8(0).U8(kRingDoorbell).U8(1 | 4).U8(0);
    b.U8(kPokeField).U8(kFieldConsumerWaiting).U8(0).U64(1).U8(kWrite).U16(10);
    b.U8(kPokeField).U8(kFieldProducerWaiting).U8(0).U64(1).U8(kTryRead);
    b.U8(kWait).U8(0x90).U8(kConsumerDrainDoorbell).U8(kProducerDrainDoorbell);
    b.U8(kWrite).U16(20).U8(kRingDoorbell).U8(8).U8(1);  // the producer's end hangs up
    b.U8(kRead).U8(0xbf).U8(kWait).U8(0xbf).U8(kConsumerPrepareToSleep).U8(kWaitForSpace).U16(900).U8(0xbf);
    b.U8(kAttach).U8(2).U8(0).U16(0).U8(3).U16(30);
    Write("ring_consumer", "doorbell_blocking_full_hangup", b.str());
  }
  {  // A full ring: backpressure, WriteBatch stopping midway.
    InputBuilder b = ring(k256);
    b.U8(kWriteBatch).U8(7).U16(60).U16(60).U16(60).U16(60).U16(60).U16(60).U16(60);
    b.U8(kWaitForSpace).U16(60).U8(0x84).U8(kProducerPrepareToSleep).U16(60);
    b.U8(kDrain).U8(1).U8(kProducerDrainDoorbell).U8(kWrite).U16(60).U8(kWrite).U16(200);
    Write("ring_consumer", "full_ring_backpressure", b.str());
  }
  {  // Raw bytes over the whole header line 1 (tail) and the first frame.
    InputBuilder b = ring(k256);
    b.U8(kWrite).U16(24).U8(kPoke).U16(128).U8(8).Bytes(std::string("\x08\x00\x00\x00\x00\x00\x00\x80", 8));
    b.U8(kPeek).U8(kPoke).U16(512).U8(16).Bytes(std::string(16, '\xff')).U8(kDrain).U8(1);
    Write("ring_consumer", "raw_pokes", b.str());
  }
}

// ----------------------------------------------------------- link_handshake

std::string Hello(const std::string& name, uint64_t capacity, uint32_t version = kLinkHelloVersion,
                  const std::string& to_name = std::string(kSelfName), uint64_t to_id = kSelfId) {
  mesh::v1::LinkHello h;
  h.set_version(version);
  h.set_name(name);
  h.set_id(42);
  h.set_to_name(to_name);
  h.set_to_id(to_id);
  h.set_ring_capacity_bytes(capacity);
  return h.SerializeAsString();
}

std::string Welcome(const std::string& name, uint64_t id, uint64_t capacity) {
  mesh::v1::LinkReply r;
  r.mutable_welcome()->set_name(name);
  r.mutable_welcome()->set_id(id);
  r.mutable_welcome()->set_ring_capacity_bytes(capacity);
  return r.SerializeAsString();
}

std::string Handshake(uint8_t flags, std::initializer_list<uint8_t> kinds, const std::string& message,
                      const std::string& ops = "") {
  InputBuilder b;
  b.U8(flags).U8(static_cast<uint8_t>(kinds.size()));
  for (uint8_t k : kinds) b.U8(k);
  b.U16(static_cast<uint16_t>(message.size())).Bytes(message).Bytes(ops);
  return b.str();
}

// A conversation on an established link: both directions, then corruption.
std::string LinkOps() {
  InputBuilder b;
  b.U8(kLinkPeerWrite).U16(100).U8(kLinkPeerWrite).U16(0).U8(kLinkDrain).U8(8);
  b.U8(kLinkSend).U16(200).U8(kLinkSendBatch).U8(3).U16(1).U16(2).U16(3).U8(kLinkPeerRead).U8(8);
  b.U8(kLinkStats).U8(kLinkPrepareToSleep).U8(kLinkPeerDoorbell).U8(2).U8(kLinkClearDoorbell);
  b.U8(kLinkPeerWrite).U16(50).U8(kLinkPeerPokeField).U8(kFieldTail).U64(0x100001);
  b.U8(kLinkDrain).U8(8).U8(kLinkDrain).U8(8).U8(kLinkSend).U16(10).U8(kLinkPeerRead).U8(8);
  b.U8(kLinkStats).U8(kLinkMarkDown).U8(kLinkSend).U16(10).U8(kLinkStats);
  return b.str();
}

void LinkSeeds() {
  const std::string d = "link_handshake";
  const uint8_t mem = kFdRingMemfd, bell = kFdRingConsumerDoorbell;
  const std::string good = Hello("peer-a", 4096);
  // Acceptor side (the fuzzer dials).
  Write(d, "accept_good", Handshake(kLinkFlagExercise, {mem, bell}, good, LinkOps()));
  Write(d, "accept_good_small_ring",
        Handshake(kLinkFlagExercise, {kFdSmallRingMemfd, kFdStreamPairEnd}, Hello("peer-b", 256), LinkOps()));
  Write(d, "accept_producer_end_as_doorbell",
        Handshake(kLinkFlagExercise, {mem, kFdRingProducerDoorbell}, good, LinkOps()));
  Write(d, "accept_capacity_mismatch", Handshake(0, {mem, bell}, Hello("peer-a", 8192)));
  Write(d, "accept_unknown_name", Handshake(0, {mem, bell}, Hello("stranger", 4096)));
  Write(d, "accept_wrong_pid", Handshake(0, {mem, bell}, Hello("wrong-pid", 4096)));
  Write(d, "accept_wrong_target", Handshake(0, {mem, bell}, Hello("peer-a", 4096, kLinkHelloVersion, "other", 7)));
  Write(d, "accept_wrong_version", Handshake(0, {mem, bell}, Hello("peer-a", 4096, kLinkHelloVersion + 1)));
  // Protocol 1: a ring was its memfd and two eventfds.
  Write(d, "accept_version1_eventfds", Handshake(0, {mem, kFdEventfd, kFdEventfd}, Hello("peer-a", 4096, 1)));
  Write(d, "accept_uid_not_allowed", Handshake(kLinkFlagUidNotAllowed, {mem, bell}, good));
  Write(d, "accept_unsealed", Handshake(0, {kFdMemfdUnsealed, bell}, good));
  Write(d, "accept_write_sealed", Handshake(0, {kFdMemfdWriteSealed, bell}, good));
  Write(d, "accept_no_seal_seal", Handshake(0, {kFdMemfdNoSealSeal, bell}, good));
  Write(d, "accept_wrong_size", Handshake(0, {kFdMemfdWrongSize, bell}, good));
  Write(d, "accept_zero_header", Handshake(0, {kFdMemfdZeroHeader, bell}, good));
  Write(d, "accept_not_sealable", Handshake(0, {kFdMemfdNotSealable, bell}, good));
  Write(d, "accept_dev_zero", Handshake(0, {kFdDevZero, bell}, good));
  // Doorbells that are not AF_UNIX stream sockets.
  Write(d, "accept_doorbell_eventfd", Handshake(0, {mem, kFdEventfd}, good));
  Write(d, "accept_doorbell_pipe", Handshake(0, {mem, kFdPipeRead}, good));
  Write(d, "accept_doorbell_dev_null", Handshake(0, {mem, kFdDevNull}, good));
  Write(d, "accept_doorbell_datagram", Handshake(0, {mem, kFdDatagramSocket}, good));
  Write(d, "accept_doorbell_seqpacket", Handshake(0, {mem, kFdSocket}, good));
  Write(d, "accept_doorbell_memfd", Handshake(0, {mem, mem}, good));
  Write(d, "accept_three_fds", Handshake(0, {mem, bell, kFdRingProducerDoorbell}, good));
  Write(d, "accept_one_fd", Handshake(0, {mem}, good));
  Write(d, "accept_twenty_fds",
        Handshake(0, {mem, bell, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 0}, good));
  Write(d, "accept_oversize", Handshake(kLinkFlagOversize, {mem, bell}, good));
  Write(d, "accept_garbage", Handshake(0, {mem}, std::string("\x0a\xff\xff\xff\xff\x0f garbage", 15)));
  Write(d, "accept_eof", Handshake(kLinkFlagShutdownWrite, {}, ""));
  Write(d, "accept_hangup", Handshake(kLinkFlagHangUp | kLinkFlagTwist, {mem, bell}, good));
  {  // A hostile peer makes the link's doorbell blocking and full.
    InputBuilder ops;
    ops.U8(kLinkPeerDoorbell).U8(0x80).U8(kLinkPeerWrite).U16(10).U8(kLinkPrepareToSleep);
    ops.U8(kLinkClearDoorbell).U8(kLinkDrain).U8(8).U8(kLinkSend).U16(10).U8(kLinkPeerRead).U8(8);
    ops.U8(kLinkPeerDoorbell).U8(3).U8(kLinkClearDoorbell).U8(kLinkStats);
    Write(d, "accept_doorbell_blocking_full", Handshake(kLinkFlagExercise, {mem, bell}, good, ops.str()));
  }
  // Dialer side (the fuzzer listens and answers).
  const uint8_t dial = kLinkFlagDialSide;
  const std::string welcome = Welcome(std::string(kPeerName), kPeerId, 4096);
  Write(d, "dial_good", Handshake(dial | kLinkFlagExercise, {mem, bell}, welcome, LinkOps()));
  mesh::v1::LinkReply reject;
  reject.set_reject_reason("not today");
  Write(d, "dial_rejected", Handshake(dial, {}, reject.SerializeAsString()));
  Write(d, "dial_wrong_identity", Handshake(dial, {mem, bell}, Welcome("impostor", kPeerId, 4096)));
  Write(d, "dial_wrong_pid", Handshake(dial | kLinkFlagTwist, {mem, bell}, welcome));
  Write(d, "dial_uid_not_allowed", Handshake(dial | kLinkFlagUidNotAllowed, {mem, bell}, welcome));
  Write(d, "dial_zero_header", Handshake(dial, {kFdMemfdZeroHeader, bell}, welcome));
  Write(d, "dial_doorbell_eventfd", Handshake(dial, {mem, kFdEventfd}, welcome));
  Write(d, "dial_doorbell_datagram", Handshake(dial, {mem, kFdDatagramSocket}, welcome));
  Write(d, "dial_fresh_stream_pair_end",
        Handshake(dial | kLinkFlagExercise, {mem, kFdStreamPairEnd}, welcome, LinkOps()));
  Write(d, "dial_one_fd", Handshake(dial, {mem}, welcome));
  Write(d, "dial_three_fds", Handshake(dial, {mem, bell, kFdEventfd}, welcome));
  Write(d, "dial_hangup", Handshake(dial | kLinkFlagHangUp, {mem, bell}, welcome));
  Write(d, "dial_eof", Handshake(dial | kLinkFlagShutdownWrite, {}, ""));
}

// Reproducers of reported library bugs (README.md, "Findings"): they fail
// with SHMESH_FUZZ_STRICT=1 until the bug is fixed.
void FindingSeeds() {
  {  // Finding 1: after DATA_LOSS, an empty WriteBatch returns OK.
    InputBuilder b;
    b.U8(k1024).U8(kPokeField).U8(kFieldClosed).U8(0).U64(0x80);  // garbage closed word
    b.U8(kWrite).U16(8);                                          // producer: DATA_LOSS
    b.U8(kWriteBatch).U8(0);                                      // returns OK
    Write("ring_consumer", "write_batch_empty_after_data_loss", b.str());
  }
  {  // Finding 1: after DATA_LOSS, Drain(0) returns OK.
    InputBuilder b;
    b.U8(k1024).U8(kPokeField).U8(kFieldClosed).U8(0).U64(0x80);
    b.U8(kPeek);         // consumer: DATA_LOSS
    b.U8(kDrain).U8(0);  // returns 0, OK
    Write("ring_consumer", "drain_zero_after_data_loss", b.str());
  }
  {  // Finding 1 through the link: Link::Drain(0) after DATA_LOSS.
    InputBuilder ops;
    ops.U8(kLinkPeerWrite).U16(10).U8(kLinkPeerPokeField).U8(kFieldTail).U64(0x100001);
    ops.U8(kLinkDrain).U8(8).U8(kLinkDrain).U8(0);
    Write("link_handshake", "drain_zero_after_data_loss",
          Handshake(kLinkFlagExercise, {kFdRingMemfd, kFdRingConsumerDoorbell}, Hello("peer-a", 4096), ops.str()));
  }
}

}  // namespace
}  // namespace shmesh_fuzz

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr,
                 "usage: corpus_gen CORPUS_DIR [FINDINGS_DIR]\n"
                 "  writes the seeds to CORPUS_DIR/{ring_consumer,link_handshake}/ and the\n"
                 "  reproducers of reported bugs to FINDINGS_DIR/{ring_consumer,link_handshake}/\n");
    return 2;
  }
  shmesh_fuzz::g_dir = argv[1];
  shmesh_fuzz::RingSeeds();
  shmesh_fuzz::LinkSeeds();
  std::printf("corpus_gen: wrote %d seeds under %s\n", shmesh_fuzz::g_written, argv[1]);
  if (argc == 3) {
    shmesh_fuzz::g_dir = argv[2];
    shmesh_fuzz::g_written = 0;
    shmesh_fuzz::FindingSeeds();
    std::printf("corpus_gen: wrote %d reproducers under %s\n", shmesh_fuzz::g_written, argv[2]);
  }
  return 0;
}
