// experts/cpu/cpu_small_rows.h
// Our own product kernels for few rows (decode: 1–4 tokens per expert), where a GEMM library's
// packing and tiling cost more than reading the weights: each 64-column tile of a PackedWeight
// is streamed once from memory and serves every row while it is in registers. Variants by ISA:
// AVX512-BF16 (vdpbf16ps), AVX-512 and AVX2 (bf16 widened in registers), scalar; also the whole
// product on CPUs where oneDNN has no bf16 matmul. Called by the CPU backend under its lock;
// stateless and thread-safe (OpenMP over tiles, `threads` of them).
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "base/cpu_features.h"
#include "experts/cpu/cpu_packed_weight.h"

namespace moe::experts {

// y[r, j] = Σ_k x[r, k]·W[j, k] for r < rows, j < w.n(). x is bf16 when w is (with x[r, k] = 0
// for k in [w.k(), w.k_pad())), f32 otherwise; `ldx`, `ldy` in elements. `isa` may be any level
// the CPU supports: kAmx runs the AVX512-BF16 kernel (tiles do not pay at these sizes).
void SmallRowsProduct(base::CpuIsa isa, const PackedWeight& w, const void* x, int64_t ldx, int64_t rows, float* y,
                      int64_t ldy, int threads);
// The same for weights side by side along N (all of one dtype and K, e.g. the slices of an
// expert's w1|w3): weight i's columns land at y[r, c_i + j], c_i = Σ_{i' < i} ws[i'].n(), all in
// one parallel loop over their tiles.
void SmallRowsProduct(base::CpuIsa isa, absl::Span<const PackedWeight> ws, const void* x, int64_t ldx, int64_t rows,
                      float* y, int64_t ldy, int threads);

// dst[i] = F32ToBF16(src[i]) for i < count, bit for bit (round to nearest even, NaN quieted),
// 16 at a time where the CPU has AVX-512.
void RoundToBf16(base::CpuIsa isa, const float* src, uint16_t* dst, int64_t count);

}  // namespace moe::experts
