// model/formats/weight_format.h
// A low-bit weight format as data: how many values a block holds, its bytes, and the exact
// dequantization (and, where we write the format, quantization) of one block. One file per format
// (q8_0.cc, q4_0.cc, q4_k.cc, q5_k.cc, q6_k.cc, iq4_xs.cc, mxfp4.cc, mxfp4_gguf.cc, int4.cc,
// fp8_e4m3.cc, int8.cc), listed by format_registry.cc, so that the matrix
// (model/quantized_matrix.h), the loaders and the CPU kernels take any format without a branch per
// format. Descriptors are immutable globals; every function is pure and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace moe::model {

struct WeightFormat {
  const char* name;  // as --quantize and GetWorkerInfo.resident_dtype say it, e.g. "q8_0"
  int block;         // values per block, along a row (the input dimension)
  int block_bytes;   // bytes per block
  // A format of whole bytes a value (fp8, int8): rows of any length, scale grids of any width, and
  // `dequantize` takes spans of any count. Otherwise k must be a multiple of `block`.
  bool ragged;
  // out[i] = the value of element i of `block`, exactly, for i < count (count = block, except in
  // ragged formats); `scale` multiplies every value (a 2-D scale grid's entry; 1 where the format
  // carries its own scales).
  void (*dequantize)(const uint8_t* block, int count, float scale, float* out);
  // Writes values[0..block) as one block: llama.cpp's reference quantizer for q8_0 and q4_0 (the
  // same bytes), our least-squares fits for q4_k and q6_k (k_quants.h), min/max for int4. nullptr
  // for formats we only read.
  void (*quantize)(const float* values, uint8_t* block);
  // One-byte formats (fp8_e4m3, int8): the value of each of the 256 codes, scale 1, so that a
  // kernel decodes a code by a table lookup. nullptr for the block formats.
  const float* (*code_values)() = nullptr;
};

// The format named `name`, or nullptr.
const WeightFormat* FindWeightFormat(absl::string_view name);
// Every format's name, in the registry's order.
std::vector<std::string> WeightFormatNames();
// The names of the formats that have a quantizer (what --quantize takes).
std::vector<std::string> QuantizableFormatNames();

// The descriptors, defined one per file.
extern const WeightFormat kQ8_0;     // llama.cpp Q8_0: f16 d, int8 q[32]; x = d·q
extern const WeightFormat kQ4_0;     // llama.cpp Q4_0: f16 d, 16 bytes; x = d·(q − 8)
extern const WeightFormat kMxfp4;    // OCP MXFP4 as gpt-oss's checkpoints order it
extern const WeightFormat kFp8E4m3;  // e4m3fn codes; the scale comes from a 2-D grid
extern const WeightFormat kQ4_K;     // llama.cpp Q4_K: 256 a super-block, 6-bit scales and mins per 32
extern const WeightFormat kQ5_K;     // llama.cpp Q5_K: Q4_K with a fifth bit per value
extern const WeightFormat kQ6_K;     // llama.cpp Q6_K: 6-bit codes, an int8 scale per 16
extern const WeightFormat kIq4Xs;    // llama.cpp IQ4_XS: non-linear 4-bit codes, 6-bit scales per 32
extern const WeightFormat kMxfp4Gguf;  // MXFP4 in GGUF's nibble order
extern const WeightFormat kInt4;     // group-wise int4, scale and zero point per 128 (AWQ/GPTQ)
extern const WeightFormat kInt8;     // int8 codes; the scale comes from a 2-D grid (per channel)

}  // namespace moe::model
