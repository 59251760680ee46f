// experts/cpu/cpu_amx_product.h
// Our AMX product for bf16 weights at many rows per expert (prefill): tiles of 32 rows × 32
// columns (two A tiles, two B tiles, four f32 accumulators) over the packed weights in the
// layout they already have (PackedWeight's VNNI blocks are AMX's B-tile layout), with the next
// weight panel prefetched into L2 while the current one computes. oneDNN 2.6's AMX brgemm does
// not prefetch the weights: with them in memory rather than in cache it lost ~0.9 ms an expert
// (docs/BENCHMARKS.md). Called by the CPU backend under its lock, on CPUs where the AMX
// permission was granted (cpu_features.h); stateless and thread-safe (OpenMP over column tiles,
// `threads` of them, each configuring its own tiles).
#pragma once

#include <cstdint>

#include "experts/cpu/cpu_packed_weight.h"

namespace moe::experts {

// The most of K an AMX product reads per pass over its output (K is cut into equal blocks of at
// most this, multiples of 32): a block's A rows and weight panel stay in L2. Measured 2026-12-02
// (2-core Xeon, AMX, [256, 3584] x [3584, 1024], weights cold): blocks of 1792 1.02 ms, of 1024
// 1.09-1.38, of 512 1.19, unblocked 1.28.
inline constexpr int64_t kAmxKBlock = 2048;

// y[r, j] = Σ_k x[r, k]·W[j, k] in f32 for r < rows, j < w.n_pad() (columns past w.n() come out
// 0). REQUIRES: w is bf16 and blocked; rows > 0 and a multiple of 16; x bf16 [rows, ldx] with
// ldx >= w.k_pad() and x[r, k] = 0 for k in [w.k(), w.k_pad()); y f32 with ldy >= w.n_pad(); x
// and y rows on 64-byte boundaries for speed (not for correctness); the calling process holds
// the AMX permission.
void AmxProduct(const PackedWeight& w, const uint16_t* x, int64_t ldx, int64_t rows, float* y, int64_t ldy,
                int threads, int64_t k_block = kAmxKBlock);

}  // namespace moe::experts
