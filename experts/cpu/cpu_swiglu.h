// experts/cpu/cpu_swiglu.h
// The SwiGLU activation between an expert's two products: act = silu(gate) ⊙ up, read from the
// output of the fused w1|w3 product (gate and up columns side by side) and written as bf16 (the
// activation's one rounding) or f32. Vectorised for AVX-512 and AVX2 with our own exp (Cephes' polynomial, ≤ 2 ulp), a
// scalar std::exp loop otherwise. Called by the CPU backend under its lock; stateless and
// thread-safe (OpenMP over rows when the work is large, `threads` of them).
#pragma once

#include <cstdint>

#include "base/cpu_features.h"
#include "model/dtype.h"

namespace moe::experts {

// For r < rows, i < cols: act[r·ld_act + i] = silu(g)·u with g = gate[r·ld_in + i] and
// u = up[r·ld_in + i]; `act` is uint16_t bf16 when `act_dtype` is BF16, float otherwise. Writes
// nothing else (the caller zeroes any padding columns): the CPU backend calls it once per slice
// of the w1|w3 product, each slice's silu⊙up landing in its own columns of `act`.
// Optional extras of SiluMulRows: per-column biases added to g and u first (gpt-oss), and
// gpt-oss's clamped activation when alpha > 0: g = min(g, limit), u = clamp(u, ±limit),
// act = (u + 1)·g·σ(alpha·g). Vectorised on AVX-512, a scalar loop otherwise.
struct GluParams {
  const float* gate_bias = nullptr;  // [cols]
  const float* up_bias = nullptr;    // [cols]
  float alpha = 0.0f;
  float limit = 0.0f;
};

void SiluMulRows(base::CpuIsa isa, const float* gate, const float* up, int64_t ld_in, int64_t rows, int64_t cols,
                 model::DType act_dtype, void* act, int64_t ld_act, int threads, const GluParams& glu = {});

}  // namespace moe::experts
