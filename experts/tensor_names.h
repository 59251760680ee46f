// experts/tensor_names.h
// Tensor names of each family's checkpoint layout (routing.md), in one place so the reader, the
// generator and the tests agree. Pure functions; thread-safe.
#pragma once

#include <string>

#include "experts/model_config.h"

namespace moe::experts {

// The three projections of a SwiGLU MLP: gate (Mixtral's w1), up (w3), down (w2).
enum class Projection { kGate, kUp, kDown };

// Router weight [E, H]: "model.layers.N.block_sparse_moe.gate.weight" (Mixtral) or
// "model.layers.N.mlp.gate.weight".
std::string GateWeightName(const ModelConfig& config, int layer);
// DeepSeek-V3's selection bias [E] (f32): "model.layers.N.mlp.gate.e_score_correction_bias".
std::string GateBiasName(int layer);
// Routed expert projection: Mixtral "...experts.E.w1.weight", others "...experts.E.gate_proj.weight".
std::string ExpertWeightName(const ModelConfig& config, int layer, int expert, Projection projection);
// The always-on MLP of a layer: DeepSeek "mlp.shared_experts.*", Qwen2 "mlp.shared_expert.*",
// a dense layer "mlp.gate_proj.weight" etc.
std::string AlwaysOnWeightName(const ModelConfig& config, int layer, Projection projection);
// Qwen2's shared-expert gate [1, H]: "model.layers.N.mlp.shared_expert_gate.weight".
std::string SharedGateName(int layer);

}  // namespace moe::experts
