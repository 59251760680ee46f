// model/families/beam.cc
// Beam (Reflection): DeepSeek-V3's router with groups (ParseV3Renamed), no shared expert; it
// multiplies the combined output by routed_scaling_factor rather than the weights (the same
// product) and computes SwiGLU in f32, as our kernels do; dense layers by mlp_layer_types.
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kBeam = {
    .model_type = "beam",
    .also_accepts = {},
    .architecture = "BeamForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .gate_bias = "model.layers.{L}.mlp.gate.e_score_correction_bias",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) {
      return ParseV3Renamed(j, c, {"num_experts"}, {}, {"routed_scaling_factor"});
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteV3Renamed(c, j, "num_experts", nullptr, "routed_scaling_factor");
    },
    .defaults = [](ModelConfig& c) {
      V3RenamedDefaults(c);
      c.n_shared_experts = 0;
      c.shared_intermediate = 0;
    },
    .is_moe = DeepseekLayerRule,
};

}  // namespace moe::model
