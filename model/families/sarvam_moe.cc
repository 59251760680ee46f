// model/families/sarvam_moe.cc
// Sarvam-30B (sarvam_moe; transformers runs it as GLM-4.5's MoE): DeepSeek-V3's block
// (ParseV3Renamed), the selection bias saved as `mlp.gate.expert_bias`.
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kSarvamMoe = {
    .model_type = "sarvam_moe",
    .also_accepts = {},
    .architecture = "SarvamMoEForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .gate_bias = "model.layers.{L}.mlp.gate.expert_bias",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) {
      return ParseV3Renamed(j, c, {"n_routed_experts", "num_experts"}, {"n_shared_experts", "num_shared_experts"}, {"routed_scaling_factor"});
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteV3Renamed(c, j, "n_routed_experts", "n_shared_experts", "routed_scaling_factor");
    },
    .defaults = V3RenamedDefaults,
    .is_moe = DeepseekLayerRule,
};

}  // namespace moe::model
