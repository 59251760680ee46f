// model/fp8.h (FP8 and MXFP4 weights)
// FP8 block-scaled weights as DeepSeek-V3/R1 and Kimi-K2 ship them (quantization_config
// {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]}): each weight [n, k]
// is F8_E4M3 (OCP e4m3fn: bias 7, no infinities, S.1111.111 = NaN) with a `<name>_scale_inv`
// [⌈n/bn⌉, ⌈k/bk⌉] of f32 that *multiplies* each bn×bk block (the name notwithstanding; edge
// blocks are ragged). Dequantized once at load, to bf16, by the checkpoint reader. Pure
// functions; thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "model/tensor.h"

namespace moe::model {

// The value of an e4m3fn code, exactly.
float E4m3ToF32(uint8_t code);

// The e4m3fn code nearest to `value` (ties to the even code), saturating at ±448; NaN → 0x7f.
uint8_t F32ToE4m3(float value);

// Quantizes W [n, k] (f32) as DeepSeek's checkpoints hold it: per block, scale = amax / 448 and
// code = e4m3(w / scale). Writes the codes into `codes` (n·k) and returns the F32 scales
// [⌈n/block_n⌉, ⌈k/block_k⌉] (the `weight_scale_inv` tensor). For generators and tests.
Tensor QuantizeFp8Blocks(const float* w, int64_t n, int64_t k, int block_n, int block_k, std::vector<uint8_t>* codes);

// W[i, j] = e4m3(q[i·k + j]) · scales[i / block_n, j / block_k], computed in f32 (exact: a 4-bit
// significand times an f32) and rounded once to `dtype` (BF16 or F32). `scales` is F32
// [⌈n/block_n⌉, ⌈k/block_k⌉]; INVALID_ARGUMENT (naming `name`) if its dtype or shape is not.
absl::StatusOr<Tensor> DequantizeFp8Blocks(const std::string& name, const uint8_t* q, int64_t n, int64_t k,
                                           const Tensor& scales, int block_n, int block_k, DType dtype);

// MXFP4 (OCP microscaling FP4) as gpt-oss ships its experts (quantization_config
// {"quant_method": "mxfp4"}): `<name>_blocks` U8 [E, N, K/32, 16], two e2m1 values a byte (low
// nibble first), and `<name>_scales` U8 [E, N, K/32], an e8m0 exponent (2^(s − 127)) per 32
// values. Rows are output features. Expert `index`'s [N, K] matrix, rounded to `dtype` (exact in
// bf16: a 2-bit significand times a power of two).
// Quantizes W [n, k] (f32, k a multiple of 32) as one expert of an MXFP4 stack: appends its
// blocks (n·k/2 bytes, low nibble first) and e8m0 scales (n·k/32, 2^(s−127) = the smallest power
// of two with amax / 2^s <= 6) to `blocks` and `scales`; values take the nearest e2m1 code.
void QuantizeMxfp4Expert(const float* w, int64_t n, int64_t k, std::vector<uint8_t>* blocks,
                         std::vector<uint8_t>* scales);

Tensor DequantizeMxfp4Expert(const uint8_t* blocks, const uint8_t* scales, int64_t index, int64_t n, int64_t k,
                             DType dtype);

}  // namespace moe::model
