// model/families/afmoe.cc
// AFMoE (Arcee): σ of the router logits, top-k on σ + expert_bias, the chosen σ renormalised
// (+1e-20) and × route_scale; num_shared_experts ungated shared experts; layers below
// num_dense_layers are dense. The decoder's post-MLP norm is the caller's.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kAfmoe = {
    .model_type = "afmoe",
    .also_accepts = {},
    .architecture = "AfmoeForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.router.gate.weight",
              .gate_bias = "model.layers.{L}.mlp.expert_bias",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts", "num_local_experts"}, {"num_experts_per_tok"}, {"moe_intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
      c.n_shared_experts = 0;
      RETURN_IF_ERROR(j.Int({"num_shared_experts"}, false, 0, &c.n_shared_experts));
      RETURN_IF_ERROR(SetFusedSharedWidth(c));
      c.first_k_dense_replace = 1;
      RETURN_IF_ERROR(j.Int({"num_dense_layers"}, false, 0, &c.first_k_dense_replace));
      RETURN_IF_ERROR(j.Float({"route_scale"}, &c.routed_scaling_factor));
      c.scoring_func = "sigmoid";
      c.selection_bias = true;
      c.norm_topk_prob = true;
      c.norm_epsilon = 1e-20f;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_tok", "moe_intermediate_size");
      j["intermediate_size"] = c.intermediate_size;
      j["num_shared_experts"] = c.n_shared_experts;
      j["num_dense_layers"] = c.first_k_dense_replace;
      j["route_scale"] = c.routed_scaling_factor;
    },
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = 2 * c.moe_intermediate_size;
      c.n_shared_experts = 1;
      c.shared_intermediate = c.moe_intermediate_size;
      c.first_k_dense_replace = 1;
      c.routed_scaling_factor = 1.5f;
      c.scoring_func = "sigmoid";
      c.selection_bias = true;
      c.norm_topk_prob = true;
      c.norm_epsilon = 1e-20f;
    },
    .is_moe = DeepseekLayerRule,  // first_k_dense_replace = num_dense_layers, moe_layer_freq 1
};

}  // namespace moe::model
