// model/families/exaone_moe.cc
// K-EXAONE (LG): DeepSeek-V3's MoE block (ParseV3Renamed) under the names num_experts,
// num_shared_experts; its selection bias sits on the block (`mlp.e_score_correction_bias`).
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kExaoneMoe = {
    .model_type = "exaone_moe",
    .also_accepts = {},
    .architecture = "ExaoneMoeForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .gate_bias = "model.layers.{L}.mlp.e_score_correction_bias",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight"},
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
