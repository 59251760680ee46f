// model/families/mixtral.cc
// Mixtral (and Switch-style top-1 layers, our own "switch_moe"): softmax over the router logits,
// top-k, renormalised (Mixtral always; Switch keeps p_max and has a capacity). MiniMax-Text-01
// ("minimax") has Mixtral's MoE block and names; its decoder's mlp_alpha_factor·x +
// mlp_beta_factor·MoE(x) is the caller's.
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kMixtral = {
    .model_type = "mixtral",
    .also_accepts = {"minimax"},
    .architecture = "MixtralForCausalLM",
    .names = {.gate = "model.layers.{L}.block_sparse_moe.gate.weight",
              .expert = "model.layers.{L}.block_sparse_moe.experts.{E}.{P}.weight",
              .expert_projections = {"w1", "w3", "w2"}},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_local_experts", "num_experts"}, {"num_experts_per_tok"}, {"intermediate_size"}));
      c.norm_topk_prob = true;  // Mixtral always renormalises
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_local_experts", "num_experts_per_tok", "intermediate_size");
    },
    .defaults = [](ModelConfig& c) { c.norm_topk_prob = true; },
    .is_moe = EveryLayerIsMoe,
};

extern const FamilyDescriptor kSwitchMoe = {
    .model_type = "switch_moe",
    .also_accepts = {},
    .architecture = "SwitchMoeForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight", .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(j.Int({"num_experts", "num_local_experts"}, true, 1, &c.num_experts));
      RETURN_IF_ERROR(j.Int({"intermediate_size"}, true, 1, &c.moe_intermediate_size));
      c.top_k = 1;
      c.norm_topk_prob = false;  // y = p_max · E(x)
      c.capacity_factor = 1.0f;
      return j.Float({"capacity_factor"}, &c.capacity_factor);
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_tok", "intermediate_size");
      j["capacity_factor"] = c.capacity_factor;
    },
    .defaults = [](ModelConfig& c) {
      c.top_k = 1;
      c.norm_topk_prob = false;
      c.capacity_factor = 1.25f;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
