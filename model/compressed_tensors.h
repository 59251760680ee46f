// model/compressed_tensors.h
// Checkpoints written by compressed-tensors (vLLM's llm-compressor; quantization_config
// quant_method "compressed-tensors"), their linear layers kept resident as stored:
// - pack-quantized int4 (W4A16): `<module>.weight_packed` I32 [out, in/8] (value i of a row in bits
//   4i..4i+3 of word i/8, stored as code + 8), `.weight_scale` [out, in/128] (group) or [out, 1]
//   (channel), `.weight_zero_point` I32 [⌈out/8⌉, groups] packed the same way along the outputs
//   (asymmetric only), `.weight_shape` [2] → our int4 blocks (model/formats/int4.cc), values exactly
//   (q − z)·s with z = 8 when symmetric;
// - float-quantized FP8 (W8A8-FP8, FP8_DYNAMIC, FP8_BLOCK): `.weight` F8_E4M3 and `.weight_scale`
//   per tensor, channel, group or block → fp8_e4m3 rows under a scale grid;
// - int-quantized int8 (W8A8-INT8, symmetric): `.weight` I8 and `.weight_scale` → int8 rows under
//   a scale grid (model/formats/int8.cc).
// Activation quantization in the scheme (input_activations) is not applied: activations stay f32
// or bf16, as for every weight-only format here (docs/ROUTING.md says why). Modules the config
// ignores keep their plain `.weight`. Called by ModelConfig::Parse (the config) and Checkpoint
// (the tensors). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/int4_checkpoint.h"
#include "model/model_config.h"
#include "model/quantized_matrix.h"
#include "nlohmann/json.hpp"

namespace moe::model {

// Checks a compressed-tensors quantization_config `q` and records it in `c`
// (c.compressed_tensors). INVALID_ARGUMENT naming what is not served: another format (nvfp4,
// mxfp4, sparse, marlin-24), a transform (rotations), int weights of other than 4 (packed) or 8
// bits, float weights of other than 8, int4 groups other than 128, dynamic weights, asymmetric
// int8 or fp8, activation-ordered groups (actorder "group").
absl::Status ParseCompressedTensorsConfig(const nlohmann::json& q, ModelConfig& c);

// A tensor of the checkpoint by name: its dtype, shape and bytes, or bytes == nullptr when absent
// and not `required` (NOT_FOUND when required).
using RawTensorFn = std::function<absl::StatusOr<PackedTensor>(const std::string& name, bool required)>;

// The linear `<base>.weight` [out, in] as stored, or nullopt when the module is not quantized
// (a plain float `.weight`). INVALID_ARGUMENT naming the tensor for a dtype or shape that does not
// match, an int4 input width that is not a multiple of 128, a scale that f16 cannot hold exactly
// (int4 blocks keep f16 scales), a zero point on int8/fp8 weights, or a `weight_g_idx`
// (activation order).
absl::StatusOr<std::optional<QuantizedMatrix>> LoadCompressedLinear(const std::string& base, int64_t out,
                                                                   int64_t in, const RawTensorFn& raw);

}  // namespace moe::model
