// model/checkpoint_generator.h
// Writes a seeded random checkpoint in the Hugging Face layout of any supported family (config.json
// plus one
// model.safetensors or N shards with model.safetensors.index.json): gates, DeepSeek's selection
// bias, routed experts, shared experts and dense layers, so tests, the demo and real checkpoints
// take the same loading path. Used by moe-make-checkpoint and test fixtures.
// Thread-compatible (no shared state).
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "model/dtype.h"
#include "model/model_config.h"

namespace moe::model {

struct GeneratorOptions {
  ModelConfig config;
  DType dtype = DType::kBF16;  // storage dtype of every weight
  int num_shards = 1;
  uint64_t seed = 0;
  // Every MLP weight (experts, shared, dense) as FP8 e4m3 with 128×128 block scales, as
  // DeepSeek-V3 ships them (config.json gets its quantization_config). Per-expert families only.
  bool fp8 = false;
  // Stacked experts (gpt_oss) as MXFP4 `_blocks` + `_scales`, as gpt-oss ships them.
  bool mxfp4 = false;
  // Expert 0's gate row of every MoE layer multiplied by this: its logit then varies `skew` times
  // as much as the others', so it wins far more often than 1/E of the tokens (skewed routing, for
  // placement tests and benchmarks; measured: Mixtral top-2 of 8 at 10, expert 0 in the top-2 of
  // about half the tokens of random inputs). 1 = an ordinary gate.
  float skew = 1.0f;
};

// Writes the checkpoint into `dir` (created if missing). Weights are N(0, 1/fan_in): the expert
// and gate outputs then keep the scale of their inputs, like a real initialisation.
// INVALID_ARGUMENT for an invalid config or shard count; INTERNAL if writing fails.
absl::Status WriteRandomCheckpoint(const std::string& dir, const GeneratorOptions& options);

}  // namespace moe::model
