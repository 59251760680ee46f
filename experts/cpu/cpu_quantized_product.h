// experts/cpu/cpu_quantized_product.h
// Products of f32 activations by weights resident in a low-bit format (model/quantized_matrix.h),
// for few rows (decode): each weight row is read once, dequantized exactly into an L1-resident
// buffer and dotted with every activation row while it is there, so the weights stream from
// memory once at their stored size. The kernels come from a table of formats (cpu_quantized_product.cc
// kFormats: each format's own kernels on f32, int8 (AVX2; AVX512-VNNI) and bf16 (AVX512-BF16)
// activations), chosen by the ISA level, and every format without its own kernel at a level has
// the generic dequantize-and-dot one. Many rows go through DequantizeRowsF32 and oneDNN's f32 GEMM
// instead (cpu_backend.cc). Numerics: f32 activations, f32 accumulation, weights exactly as
// dequantized (the int8 and bf16 products say their own). Stateless; thread-safe (OpenMP over
// output features, `threads` of them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/cpu_features.h"
#include "model/quantized_matrix.h"

namespace moe::experts {

// y[r, j] = Σ_c x[r, c]·W[j, c] for r < rows, j < w.n(); x f32 [rows, ldx], y f32 [rows, ldy].
// `isa` may be any level the CPU supports.
void QuantizedProduct(base::CpuIsa isa, const model::QuantizedMatrix& w, const float* x, int64_t ldx,
                      int64_t rows, float* y, int64_t ldy, int threads);

// out[(j − begin)·ld + c] = W[j, c] for j in [begin, begin + count), c < w.k(): rows of W
// dequantized exactly (the widened weight of a many-row product), `threads` threads.
void DequantizeRowsF32(const model::QuantizedMatrix& w, int64_t begin, int64_t count, float* out, int64_t ld,
                       int threads);

// Activation rows quantized for the int8 kernels: blocks of 32 values, each with d = amax / 127
// (f32) and codes q = round(x / d) in [−127, 127]. Grow-only; owned by a caller under its lock.
struct Int8Activations {
  std::vector<int8_t> q;  // [rows, k]
  std::vector<float> d;   // [rows, k / 32]
  std::vector<float> sum; // [rows, k / 32]: d·Σ q of each block (what a weight block's min multiplies)
  int64_t k = 0;
};

// Quantizes the rows x [rows, ldx] of k values (k a multiple of 32) into `out`.
void QuantizeActivationsInt8(const float* x, int64_t ldx, int64_t rows, int64_t k, Int8Activations* out);

// Whether `format` has an int8 kernel at `isa` (every block format from AVX2 up: q8_0, q4_0, the
// K-quants, iq4_xs, mxfp4 in both orders, int4; not the one-byte fp8_e4m3 and int8).
bool HasInt8Kernel(const model::WeightFormat& format, base::CpuIsa isa);

// y[r, j] = Σ_c x̂[r, c]·W[j, c], x̂ the values of the quantized activations: integer products
// summed exactly per block, scaled in f32. REQUIRES: HasInt8Kernel(w.format(), isa), x.k == w.k().
void QuantizedProductInt8(base::CpuIsa isa, const model::QuantizedMatrix& w, const Int8Activations& x, int64_t rows,
                          float* y, int64_t ldy, int threads);

// Activation rows rounded to bf16 for the bf16 kernels (round to nearest even). Grow-only; owned by
// a caller under its lock.
struct Bf16Activations {
  std::vector<uint16_t> x;  // [rows, k]
  int64_t k = 0;
};

// Rounds the rows x [rows, ldx] of k values into `out` (vectorised at `isa`, the same bits at every level).
void ConvertActivationsBf16(base::CpuIsa isa, const float* x, int64_t ldx, int64_t rows, int64_t k,
                            Bf16Activations* out);

// Whether `format` has a bf16-activation kernel at `isa` (every block format from avx512_bf16 up,
// as HasInt8Kernel's from avx2: cpu_bf16_dot_avx512_bf16.h).
bool HasBf16Kernel(const model::WeightFormat& format, base::CpuIsa isa);

// y[r, j] = Σ_c bf16(W[j, c])·x[r, c], x the bf16 activations: each weight row decoded once and
// rounded to bf16, products summed in f32. REQUIRES: HasBf16Kernel(w.format(), isa), x.k == w.k().
void QuantizedProductBf16(base::CpuIsa isa, const model::QuantizedMatrix& w, const Bf16Activations& x, int64_t rows,
                          float* y, int64_t ldy, int threads);

// Which activations a quantized product takes.
enum class QuantizedActivations { kF32, kInt8, kBf16 };

// What QuantizedProduct (or QuantizedProductInt8, QuantizedProductBf16) runs for `format` at `isa`,
// for startup lines: e.g. "q8_0: avx2 (blocks decoded in registers)"; a format without a kernel for
// the activations asked for names the f32 one it falls back to.
std::string QuantizedKernelName(const model::WeightFormat& format, base::CpuIsa isa,
                                QuantizedActivations activations = QuantizedActivations::kF32);

}  // namespace moe::experts
