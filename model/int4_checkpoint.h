// model/int4_checkpoint.h
// The 4-bit linear layers of AWQ and GPTQ checkpoints (`<module>.qweight`, `.qzeros`, `.scales`,
// GPTQ's `.g_idx`), unpacked into our group-wise int4 blocks (model/formats/int4.cc): row j of
// W [out, in] holds, per group of 128 inputs, its f16 scale, its zero point and its 128 codes, so
// the values are exactly (q − z)·s as the checkpoint defines them. Called by Checkpoint for configs
// whose quantization_config is awq or gptq. Pure functions; thread-safe.
//
// Layouts (as AutoAWQ's GEMM kernels and GPTQ's pack them; the tests pack by the same rules):
// - awq:  qweight int32 [in, out/8], qzeros int32 [in/128, out/8], scales f16 [in/128, out]; the
//         eight 4-bit fields of a word, from bit 0 up, hold output columns 0, 2, 4, 6, 1, 3, 5, 7.
// - gptq: qweight int32 [in/8, out] (field f of word r is input row 8r + f), qzeros int32
//         [in/128, out/8] (field f: output column 8c + f), stored as zero − 1 ("gptq"; "gptq_v2"
//         stores the zero itself), scales f16 [in/128, out], g_idx int32 [in] = i / 128 (act-order
//         permutations are refused).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "model/quantized_matrix.h"

namespace moe::model {

// One packed tensor as the checkpoint stores it: its safetensors dtype, shape and bytes.
struct PackedTensor {
  std::string dtype;
  std::vector<int64_t> shape;
  const uint8_t* bytes = nullptr;
};

// W [out, in] in int4 blocks from the tensors of `method` ("awq", "gptq" or "gptq_v2");
// `g_idx` may have null bytes (absent). INVALID_ARGUMENT naming `name` for a dtype or shape that
// does not match the layout, an in that is not a multiple of 128, or a g_idx that is not i / 128.
absl::StatusOr<QuantizedMatrix> UnpackInt4Linear(const std::string& method, const std::string& name,
                                                 int64_t out, int64_t in,
                                                 const PackedTensor& qweight,
                                                 const PackedTensor& qzeros,
                                                 const PackedTensor& scales,
                                                 const PackedTensor& g_idx);

}  // namespace moe::model
