// The input formats of the two fuzz targets, shared by the targets and by
// corpus_gen (which writes the seed corpus). README.md describes them.
//
// ring_consumer_fuzz input:
//   u8 capacity selector      capacity = 256 << (selector % 5): 256..4096
//   then ops until the input ends, each `u8 op` (RingOp, op % kRingOpCount)
//   followed by its arguments (see RingOp).
//
// link_handshake_fuzz input:
//   u8 flags                  LinkFlag bits
//   u8 fd count               n = count % 21
//   n x u8 fd kind            FdKind, kind % kFdKindCount
//   u16 message length L      then L bytes: the LinkHello (Accept side) or
//                             LinkReply (Dial side) message, as sent
//   then, if the link comes up and kLinkFlagExercise is set, link ops until
//   the input ends, each `u8 op` (LinkOp, op % kLinkOpCount) + arguments.
#ifndef SHMESH_TESTS_FUZZ_FUZZ_FORMATS_H_
#define SHMESH_TESTS_FUZZ_FUZZ_FORMATS_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace shmesh_fuzz {

// ------------------------------------------------------------ ring_consumer

// Ring header fields a kPokeField / kRace write can target (ring_layout.h).
enum RingField : uint8_t {
  kFieldMagic = 0,
  kFieldVersion,
  kFieldHeaderSize,
  kFieldCapacity,
  kFieldClosed,
  kFieldTail,
  kFieldProducerCpu,
  kFieldHead,
  kFieldConsumerCpu,
  kFieldConsumerWaiting,
  kFieldProducerWaiting,
  kFieldCount,
};

// A u16 "len" argument is taken modulo MaxFrameSize() + 17, so it sometimes
// exceeds the maximum. A u8 "deadline" is InfinitePast() unless bit 7 is
// set; then it is now + (deadline & 63) microseconds.
enum RingOp : uint8_t {
  // Hostile writes through a second mapping of the memfd, as the peer would:
  kPoke = 0,   // u16 offset, u8 n, n bytes: raw bytes at offset % region size
  kPokeField,  // u8 field (RingField), u8 mode, u64 value; mode % 4:
               //   0 value; 1 current + (int16)value; 2 tail/head: the other
               //   index + (int16)value, else value & 0xff; 3 tail/head: the
               //   other index +- capacity + (int16)value, else 1 << (value % 32)
  kPokeFrame,  // u16 slot, u8 len mode, u32 len, u8 type mode [, u32 type]:
               //   frame word at data offset (head + 8 * slot) % capacity;
               //   len mode % 4: 0 len, 1 len % 64, 2 bytes to buffer end - 8
               //   + (int8)len, 3 MaxFrameSize() + (int8)len; type mode % 4:
               //   0 data, 1 padding, 2 the u32 type, 3 zero
  // Consumer calls:
  kPeek,
  kRelease,
  kReleaseNoPublish,
  kConsumerPublish,
  kTryRead,
  kDrain,                   // u8 max frames
  kConsumerPrepareToSleep,  // (then drains the doorbell)
  kConsumerDrainDoorbell,
  kWait,  // u8 deadline
  kRead,  // u8 deadline
  kConsumerClose,
  // Producer calls:
  kWrite,            // u16 len
  kReserve,          // u16 len (fills the span)
  kCommit,           // u16 len (% reserved + 9)
  kCommitNoPublish,  // u16 len (% reserved + 9)
  kProducerPublish,
  kWriteBatch,              // u8 n (% 8), n x u16 len
  kProducerPrepareToSleep,  // u16 len
  kProducerDrainDoorbell,
  kWaitForSpace,  // u16 len, u8 deadline
  kProducerClose,
  // The peer's other powers:
  kRingDoorbell,  // u8 how, u8 count: the peer's doorbell powers, on the ends
                  //   of the ring's doorbell socket pair (which it shares, as
                  //   SCM_RIGHTS copies share the file description):
                  //   bit 0: which end sends: 0 the producer's (wakes the
                  //     consumer), 1 the consumer's (wakes the producer);
                  //   bit 1: first clear O_NONBLOCK on both ends;
                  //   bit 2: send until the buffers are full (EAGAIN)
                  //     instead of `count` (0: 1) bytes;
                  //   bit 3: then shut the sending end down (SHUT_RDWR): the
                  //     peer hung up, the other end reads EOF for ever.
  kAttach,        // u8 n (% 8), n x (u8 sub-op, u16 arg): Ring::Attach a second
                  //   ring to the (corrupt) memory as consumer, and a third as
                  //   producer (each with a dup of its doorbell end); sub-op
                  //   % 4: TryRead, Peek+Release, Drain(arg % 16) on the
                  //   second, Write(arg) on the third
  kRace,          // u8 ops (% 16), u8 writes (% 8 + 1), writes x (u8 target,
                  //   u64 value): a thread alternates each target between its
                  //   current and the given value while the next `ops` ops
                  //   run; target < kFieldCount is a RingField, else the frame
                  //   word at slot target - kFieldCount (as kPokeFrame).
                  //   Skipped (ops run, writes applied once) under TSAN.
  kRingOpCount,
};

// ----------------------------------------------------------- link_handshake

enum LinkFlag : uint8_t {
  // 0: test Link::Accept (the fuzzer dials); 1: test Link::Dial (the fuzzer
  // listens and answers).
  kLinkFlagDialSide = 1 << 0,
  // Our uid is not in LinkParams::allowed_uids.
  kLinkFlagUidNotAllowed = 1 << 1,
  // Accept side: close the fuzzer's end right after sending the hello.
  // Dial side: answer without reading the hello, then close at once.
  kLinkFlagHangUp = 1 << 2,
  // Accept side: send the hello twice. Dial side: the peer's announced pid
  // is not ours (PERMISSION_DENIED before any hello).
  kLinkFlagTwist = 1 << 3,
  // Pad the message to fdpass::kMaxMessageBytes + 1 bytes (truncated).
  kLinkFlagOversize = 1 << 4,
  // If the link comes up, run link ops from the rest of the input.
  kLinkFlagExercise = 1 << 5,
  // An empty message with no descriptors reads as EOF; with this flag the
  // fuzzer sends nothing at all and shuts its end down instead.
  kLinkFlagShutdownWrite = 1 << 6,
};

// Descriptors the fuzzer can attach. "Real ring": a ringbuf::Ring of 4096
// bytes created for this input (the LinkHello/LinkWelcome of a good
// handshake carries its memfd and its consumer's doorbell end, in that
// order: link protocol version 2).
enum FdKind : uint8_t {
  kFdRingMemfd = 0,         // the real ring's sealed memfd (4096 + 512 bytes)
  kFdRingConsumerDoorbell,  // the real ring's consumer doorbell end (AF_UNIX stream)
  kFdRingProducerDoorbell,  // its producer end: also an AF_UNIX stream socket,
                            //   so a valid (if useless) doorbell for the link
  kFdSmallRingMemfd,        // a real ring of 256 bytes: its memfd
  kFdMemfdWrongSize,        // sealed memfd, 4096 + 512 + 8 bytes
  kFdMemfdUnsealed,         // memfd, right size, no seals
  kFdMemfdWriteSealed,      // right size, seals + F_SEAL_WRITE
  kFdMemfdNoSealSeal,       // right size, F_SEAL_SHRINK | F_SEAL_GROW only
  kFdMemfdZeroHeader,       // right size and seals, all zero (no ring header)
  kFdMemfdNotSealable,      // memfd without MFD_ALLOW_SEALING, right size
  kFdPipeRead,
  kFdPipeWrite,
  kFdDevNull,
  kFdDevZero,         // mappable, but not a memfd
  kFdEventfd,         // a fresh eventfd (protocol 1's doorbell: refused now)
  kFdSocket,          // one end of a SOCK_SEQPACKET pair (not a doorbell)
  kFdDirectory,       // /tmp, O_DIRECTORY
  kFdStreamPairEnd,   // one end of a fresh AF_UNIX SOCK_STREAM pair: a valid
                      //   doorbell, connected to nothing of the ring's
  kFdDatagramSocket,  // one end of an AF_UNIX SOCK_DGRAM pair (not a doorbell)
  kFdKindCount,
};

// True for the kinds Ring::Attach takes as a doorbell (AF_UNIX stream).
inline constexpr bool IsDoorbellKind(FdKind k) {
  return k == kFdRingConsumerDoorbell || k == kFdRingProducerDoorbell || k == kFdStreamPairEnd;
}

// The LinkHello version the link speaks (mesh/links/link.cc kLinkProtocolVersion).
inline constexpr uint32_t kLinkHelloVersion = 2;

inline constexpr int kMaxFuzzFds = 20;

// Ops on an established link. The fuzzer plays the peer: it holds the
// producer of the link's receive ring (which it created and passed) and the
// consumer of the link's send ring (mapped from the link's reply/hello).
enum LinkOp : uint8_t {
  kLinkSend = 0,   // u16 len (% 3000): Link::Send, past deadline
  kLinkSendBatch,  // u8 n (% 5), n x u16 len (% 1000): Link::SendBatch
  kLinkDrain,      // u8 max frames: Link::Drain
  kLinkPrepareToSleep,
  kLinkClearDoorbell,
  kLinkStats,
  kLinkMarkDown,
  kLinkPeerWrite,      // u16 len (% 3000): the peer writes an honest frame
  kLinkPeerPoke,       // u16 offset, u8 n, n bytes into the link's rx region
  kLinkPeerPokeField,  // u8 field (RingField), u64 value
  kLinkPeerRead,       // u8 max frames: the peer consumes what the link sent
  kLinkPeerDoorbell,   // u8 count: ring the link's rx doorbell (from our
                       //   producer end) count % 128 times; bit 7: instead
                       //   clear O_NONBLOCK on both ends and fill them
  kLinkOpCount,
};

// Names and ids the link target uses. A LinkHello from a name starting with
// kKnownPrefix is a member announced with our pid; kWrongPidPrefix: announced
// with another pid; anything else was never announced (NOT_FOUND).
inline constexpr absl::string_view kSelfName = "fuzz-self";
inline constexpr uint64_t kSelfId = 0x5e1f5e1f5e1f5e1fULL;
inline constexpr absl::string_view kPeerName = "peer-fuzz";
inline constexpr uint64_t kPeerId = 0x0123456789abcdefULL;
inline constexpr absl::string_view kKnownPrefix = "peer";
inline constexpr absl::string_view kWrongPidPrefix = "wrong";
inline constexpr uint64_t kLinkRingBytes = 4096;

// Appends little-endian values: what FuzzInput reads back (corpus_gen).
class InputBuilder {
 public:
  InputBuilder& U8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  InputBuilder& U16(uint16_t v) { return U8(v & 0xff).U8(v >> 8); }
  InputBuilder& U32(uint32_t v) { return U16(v & 0xffff).U16(v >> 16); }
  InputBuilder& U64(uint64_t v) { return U32(v & 0xffffffffu).U32(v >> 32); }
  InputBuilder& Bytes(absl::string_view b) {
    out_.append(b.data(), b.size());
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

}  // namespace shmesh_fuzz

#endif  // SHMESH_TESTS_FUZZ_FUZZ_FORMATS_H_
