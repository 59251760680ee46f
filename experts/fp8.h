// experts/fp8.h
// FP8 block-scaled weights as DeepSeek-V3/R1 and Kimi-K2 ship them (quantization_config
// {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}): each weight [n, k]
// is F8_E4M3 (OCP e4m3fn: bias 7, no infinities, S.1111.111 = NaN) with a `<name>_scale_inv`
// [⌈n/bn⌉, ⌈k/bk⌉] of f32 that *multiplies* each bn×bk block (the name notwithstanding; edge
// blocks are ragged). Dequantized once at load, to bf16, by the checkpoint reader. Pure
// functions; thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "experts/tensor.h"

namespace moe::experts {

// The value of an e4m3fn code, exactly.
float E4m3ToF32(uint8_t code);

// W[i, j] = e4m3(q[i·k + j]) · scales[i / block_n, j / block_k], computed in f32 (exact: a 4-bit
// significand times an f32) and rounded once to `dtype` (BF16 or F32). `scales` is F32
// [⌈n/block_n⌉, ⌈k/block_k⌉]; INVALID_ARGUMENT (naming `name`) if its dtype or shape is not.
absl::StatusOr<Tensor> DequantizeFp8Blocks(const std::string& name, const uint8_t* q, int64_t n, int64_t k,
                                           const Tensor& scales, int block_n, int block_k, DType dtype);

}  // namespace moe::experts
