// bench/dense_peers.h
// The ceilings moe-bench-local measures beside the expert FFN in the same run: one oneDNN dense
// matmul (its own best weight layout, reordered once) and a streaming-read loop. Benchmark code
// only; single-threaded callers (each call uses `threads` OpenMP threads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace moe::bench {

struct DenseResult {
  double median_s = 0;
  double gflops = 0;
  std::string impl;  // oneDNN's implementation name (and why f32 where bf16 was asked)
  bool bf16 = false;  // whether it ran in bf16
};

// [m, k] x [k, n] in bf16 (f32 accumulate, f32 out) or f32, median of `repeats` after warm-up.
// Where oneDNN has no bf16 matmul for this CPU (AVX2, AVX-512 without BF16, or MOE_CPU_ISA
// capped there) it runs the f32 matmul instead and `impl` says so.
DenseResult DenseMatmul(int64_t m, int64_t k, int64_t n, bool bf16, int repeats);

// Bytes per second read by `threads` threads summing a `bytes` buffer (touched first), best of
// `repeats` passes each with plain loads and with software prefetch 2 KiB ahead.
double StreamReadBandwidth(size_t bytes, int threads, int repeats);

}  // namespace moe::bench
