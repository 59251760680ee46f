// tests/testing/quantized_data.h
// Seeded low-bit test weights in every format of model/formats, made the way each reaches a worker:
// q8_0, q4_0, q4_k, q6_k and int4 by their quantizers (--quantize), fp8_e4m3 and mxfp4 from the
// bytes their checkpoints hold (model/fp8.h's generators), int8 with a scale per output channel as
// compressed-tensors' int-quantized checkpoints hold it, and the formats only GGUF files bring
// (q5_k, iq4_xs, mxfp4_gguf) as random bytes with finite scales. Test-only; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "experts/expert_weights.h"
#include "model/quantized_matrix.h"

namespace moe::testing {

// The formats every quantized test runs.
std::vector<std::string> TestedWeightFormats();
// W [n, k] of N(0, 1/k) values in `format` (for fp8_e4m3 with 128 × 128 scale blocks; k must be a
// multiple of the format's block for the others). Fails the test (and returns an empty matrix) on error.
model::QuantizedMatrix RandomQuantizedMatrix(const std::string& format, int64_t n, int64_t k, uint64_t seed);
// A SwiGLU expert whose three weights are in `format`.
experts::ExpertWeights RandomQuantizedExpert(const std::string& format, experts::ExpertKey key, int hidden,
                                             int inter, uint64_t seed);
// The same expert with w1, w3 and w2 the dequantized f32 values (and q1, q3, q2 cleared): what a
// reference computes with.
experts::ExpertWeights Dequantized(const experts::ExpertWeights& w);
// W as f32 [n, k], row by row DequantizeRow.
std::vector<float> DequantizedValues(const model::QuantizedMatrix& w);

}  // namespace moe::testing
