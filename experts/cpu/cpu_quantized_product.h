// experts/cpu/cpu_quantized_product.h
// Products of f32 activations by weights resident in a low-bit format (model/quantized_matrix.h),
// for few rows (decode): each weight row is read once, dequantized exactly into an L1-resident
// buffer and dotted with every activation row while it is there, so the weights stream from
// memory once at their stored size. The dot kernels are chosen by ISA level from a table keyed by
// (format, level), where a format may later bring its own fused kernel (integer dot products);
// every format has the generic dequantize-and-dot entry. Many rows go through
// DequantizeRowsF32 and oneDNN's f32 GEMM instead (cpu_backend.cc). Numerics: f32 activations,
// f32 accumulation, weights exactly as dequantized. Stateless; thread-safe (OpenMP over output
// features, `threads` of them).
#pragma once

#include <cstdint>
#include <string>

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

// What QuantizedProduct runs for `format` at `isa`, for startup lines: e.g. "q8_0: dequantize + avx2 dot".
std::string QuantizedKernelName(const model::WeightFormat& format, base::CpuIsa isa);

}  // namespace moe::experts
