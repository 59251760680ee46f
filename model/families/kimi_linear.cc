// model/families/kimi_linear.cc
// Kimi-Linear (Moonshot): DeepSeek-V3's MoE block (ParseV3Renamed) under Kimi's field names
// (num_experts, num_experts_per_token, num_shared_experts, num_expert_group, moe_renormalize) and
// Mixtral's tensor names under `block_sparse_moe` (experts w1/w3/w2, the gate with its
// e_score_correction_bias, shared_experts.*_proj; a dense layer's MLP is `block_sparse_moe.*_proj`
// too); dense layers by mlp_layer_types. Its KDA linear
// attention is the caller's.
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kKimiLinear = {
    .model_type = "kimi_linear",
    .also_accepts = {},
    .architecture = "KimiLinearForCausalLM",
    .names = {.gate = "model.layers.{L}.block_sparse_moe.gate.weight",
              .gate_bias = "model.layers.{L}.block_sparse_moe.gate.e_score_correction_bias",
              .expert = "model.layers.{L}.block_sparse_moe.experts.{E}.{P}.weight",
              .expert_projections = {"w1", "w3", "w2"},
              .shared = "model.layers.{L}.block_sparse_moe.shared_experts.{P}.weight",
              .dense = "model.layers.{L}.block_sparse_moe.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) {
      return ParseV3Renamed(j, c, {"num_experts"}, {"num_shared_experts"}, {"routed_scaling_factor"});
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteV3Renamed(c, j, "num_experts", "num_shared_experts", "routed_scaling_factor");
    },
    .defaults = V3RenamedDefaults,
    .is_moe = DeepseekLayerRule,
};

}  // namespace moe::model
