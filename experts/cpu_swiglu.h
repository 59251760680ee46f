// experts/cpu_swiglu.h
// The SwiGLU activation between an expert's two products: act = silu(gate) ⊙ up, read from the
// [rows, 2I] output of the fused w1|w3 product and written as bf16 (the activation's one rounding)
// or f32. Vectorised for AVX-512 and AVX2 with our own exp (Cephes' polynomial, ≤ 2 ulp), a
// scalar std::exp loop otherwise. Called by the CPU backend under its lock; stateless and
// thread-safe (OpenMP over rows when the work is large, `threads` of them).
#pragma once

#include <cstdint>

#include "experts/cpu_features.h"
#include "experts/dtype.h"

namespace moe::experts {

// For r < rows, i < inter: act[r·ld_act + i] = silu(g)·u with g = gate_up[r·2I + i] and
// u = gate_up[r·2I + I + i]; `act` is uint16_t bf16 when `act_dtype` is BF16, float otherwise.
// Columns [inter, ld_act) of each act row are set to zero.
void SiluMulRows(CpuIsa isa, const float* gate_up, int64_t rows, int64_t inter, DType act_dtype, void* act,
                 int64_t ld_act, int threads);

}  // namespace moe::experts
