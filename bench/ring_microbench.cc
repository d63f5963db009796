// ring_microbench: single-thread costs of the ringbuf ring operations
// (Google Benchmark). Producer and consumer run on one thread, so these are
// instruction and cache costs without any cross-core transfer.
#include <sched.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "benchmark/benchmark.h"
#include "ringbuf/ring.h"

namespace {

using ringbuf::Ring;

Ring MakeRing(size_t capacity = size_t{1} << 20) {
  absl::StatusOr<Ring> ring = Ring::Create(capacity);
  if (!ring.ok()) std::abort();
  return std::move(*ring);
}

// Write (copy in) + TryRead-style Peek / copy out / Release, one frame.
void BM_WriteRead(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  Ring ring = MakeRing();
  const std::string payload(size, 'x');
  std::vector<uint8_t> sink(size);
  for (auto _ : state) {
    if (!ring.producer().Write(payload, absl::InfinitePast()).ok()) std::abort();
    auto frame = ring.consumer().Peek();
    if (!frame.ok() || !frame->has_value()) std::abort();
    std::memcpy(sink.data(), (*frame)->data(), (*frame)->size());
    if (!ring.consumer().Release().ok()) std::abort();
    benchmark::DoNotOptimize(sink.data());
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
}
BENCHMARK(BM_WriteRead)->Arg(64)->Arg(4096);

// Zero-copy: Reserve + fill + Commit, Peek + Release.
void BM_ReserveCommitPeekRelease(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  Ring ring = MakeRing();
  for (auto _ : state) {
    auto span = ring.producer().Reserve(size, absl::InfinitePast());
    if (!span.ok()) std::abort();
    std::memset(span->data(), 1, size);
    if (!ring.producer().Commit(size).ok()) std::abort();
    auto frame = ring.consumer().Peek();
    if (!frame.ok() || !frame->has_value()) std::abort();
    benchmark::DoNotOptimize((*frame)->data());
    if (!ring.consumer().Release().ok()) std::abort();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size));
}
BENCHMARK(BM_ReserveCommitPeekRelease)->Arg(64)->Arg(4096);

// WriteBatch of 32 frames (one tail store) + one Drain (one head store).
void BM_WriteBatchDrain(benchmark::State& state) {
  const size_t size = static_cast<size_t>(state.range(0));
  constexpr int kBatch = 32;
  Ring ring = MakeRing();
  const std::string payload(size, 'b');
  std::vector<absl::string_view> frames(kBatch, payload);
  std::vector<uint8_t> sink(size);
  for (auto _ : state) {
    if (!ring.producer().WriteBatch(frames, absl::InfinitePast()).ok()) std::abort();
    auto n = ring.consumer().Drain(
        kBatch, [&](absl::Span<const uint8_t> f) { std::memcpy(sink.data(), f.data(), f.size()); });
    if (!n.ok() || *n != kBatch) std::abort();
    benchmark::DoNotOptimize(sink.data());
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.SetBytesProcessed(state.iterations() * kBatch * static_cast<int64_t>(size));
}
BENCHMARK(BM_WriteBatchDrain)->Arg(64)->Arg(4096);

// Polling an empty ring (the consumer's spin-loop step).
void BM_PeekEmpty(benchmark::State& state) {
  Ring ring = MakeRing();
  for (auto _ : state) {
    auto frame = ring.consumer().Peek();
    benchmark::DoNotOptimize(frame);
  }
}
BENCHMARK(BM_PeekEmpty);

// The CPU hint stored with every index publish.
void BM_SchedGetcpu(benchmark::State& state) {
  for (auto _ : state) benchmark::DoNotOptimize(sched_getcpu());
}
BENCHMARK(BM_SchedGetcpu);

}  // namespace
