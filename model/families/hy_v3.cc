// model/families/hy_v3.cc
// Hy3 (Tencent): f32 sigmoid + selection bias (`mlp.expert_bias`), top-k without groups, the
// chosen sigmoids always renormalised (+1e-20) × router_scaling_factor; num_shared_experts shared
// experts (`mlp.shared_mlp`) added ungated; dense layers by mlp_layer_types. DeepSeek-V3's block
// (ParseV3Renamed) under Hy's names.
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kHyV3 = {
    .model_type = "hy_v3",
    .also_accepts = {},
    .architecture = "HYV3ForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.router.gate.weight",
              .gate_bias = "model.layers.{L}.mlp.expert_bias",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .shared = "model.layers.{L}.mlp.shared_mlp.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) {
      return ParseV3Renamed(j, c, {"num_experts"}, {"num_shared_experts"}, {"router_scaling_factor"});
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteV3Renamed(c, j, "num_experts", "num_shared_experts", "router_scaling_factor");
    },
    .defaults = V3RenamedDefaults,
    .is_moe = DeepseekLayerRule,
};

}  // namespace moe::model
