// model/gguf/gguf_writer.h
// Writes seeded random MoE models as GGUF files in llama.cpp's layout (architecture metadata,
// `blk.N.ffn_*` tensor names, experts stacked per layer), for the served architectures of
// gguf_model.h: what `moe-make-checkpoint --format=gguf` writes, so the demo, tests and docs
// share one path. The expert (and shared/dense MLP) weights are in a chosen ggml type, quantized
// by our quantizers (model/formats); gates and biases are F32, as llama.cpp's quantizer keeps them.
// A writer, not a general GGUF library: version 3, little-endian, 32-byte alignment. Pure
// function of its options; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "model/model_config.h"

namespace moe::model {

struct GgufGeneratorOptions {
  // qwen2_moe, qwen3_moe, mixtral, deepseek_v2, deepseek_v3 or glm4_moe (DefaultConfig's dims).
  ModelConfig config;
  // The MLP weights' type: f32, f16, bf16, q8_0, q4_0, q4_k or q6_k (rows must be whole blocks).
  std::string type = "q8_0";
  uint64_t seed = 0;
};

// The types `type` may name.
std::vector<std::string> GgufGeneratorTypes();

// Writes the model to `path`. Weights are N(0, 1/fan_in) before quantization. INVALID_ARGUMENT for
// a family without a GGUF architecture, an unknown type or dims that are not whole blocks of it;
// INTERNAL if writing fails.
absl::Status WriteRandomGguf(const std::string& path, const GgufGeneratorOptions& options);

}  // namespace moe::model
