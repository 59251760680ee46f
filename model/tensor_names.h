// model/tensor_names.h
// Tensor names of a layer of a checkpoint, from its family's patterns (ModelConfig::names,
// model/families/), in one place so the reader, the generator and the tests agree. Pure
// functions; thread-safe.
#pragma once

#include <string>

#include "model/model_config.h"

namespace moe::model {

// The three projections of a SwiGLU MLP: gate (Mixtral's w1), up (w3), down (w2).
enum class Projection { kGate, kUp, kDown };

// Router weight [E, H], e.g. "model.layers.N.block_sparse_moe.gate.weight" (Mixtral).
std::string GateWeightName(const ModelConfig& config, int layer);
// The selection-only bias [E] (f32), e.g. DeepSeek-V3's "model.layers.N.mlp.gate.e_score_correction_bias";
// empty if the family has none.
std::string GateBiasName(const ModelConfig& config, int layer);
// Routed expert projection: Mixtral "...experts.E.w1.weight", most others "...experts.E.gate_proj.weight".
std::string ExpertWeightName(const ModelConfig& config, int layer, int expert, Projection projection);
// Stacked experts (TensorNames::stacked_*): the layer's [E, 2I, H] gate|up and [E, H, I] down
// tensors (or their transposes); empty for per-expert families.
// A routed expert's projection bias (TensorNames::expert_bias), or "" when the family has none.
std::string ExpertBiasName(const ModelConfig& config, int layer, int expert, Projection projection);
std::string StackedGateUpName(const ModelConfig& config, int layer);
std::string StackedDownName(const ModelConfig& config, int layer);
std::string StackedGateUpBiasName(const ModelConfig& config, int layer);
std::string StackedDownBiasName(const ModelConfig& config, int layer);
// DBRX's flat stacks (TensorNames::flat_*): the layer's [E·I, H] gate, up or down tensor; empty
// for other families.
std::string FlatExpertsName(const ModelConfig& config, int layer, Projection projection);
// The bias added to the router logits (gpt-oss's "mlp.router.bias"); empty if none.
std::string RouterBiasName(const ModelConfig& config, int layer);
// The always-on MLP of a layer: the shared expert(s) of an MoE layer (DeepSeek
// "mlp.shared_experts.*", Qwen2 "mlp.shared_expert.*"), or a dense layer's MLP ("mlp.gate_proj.weight").
std::string AlwaysOnWeightName(const ModelConfig& config, int layer, Projection projection);
// The fused shared MLP of an MoE layer (TensorNames::shared_fused_*); empty if the family has none.
std::string SharedFusedGateUpName(const ModelConfig& config, int layer);
std::string SharedFusedDownName(const ModelConfig& config, int layer);
// The shared expert's sigmoid gate [1, H]: "model.layers.N.mlp.shared_expert_gate.weight".
std::string SharedGateName(const ModelConfig& config, int layer);

}  // namespace moe::model
