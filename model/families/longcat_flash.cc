// model/families/longcat_flash.cc
// Meituan's LongCat-Flash (longcat_flash): the router (mlp.router.classifier) scores the
// n_routed_experts routed experts and zero_expert_num zero experts together, softmax in f32 over
// all of them; selection by score + router.e_score_correction_bias; the chosen unbiased scores ×
// routed_scaling_factor, not renormalised. A zero expert is the identity: its weight multiplies
// the token's own input (RoutingSpec::zero_experts, Routing::identity_weights), computed on the
// router without a worker. Per-expert tensors (mlp.experts.E.*_proj; the checkpoint also holds
// gate/up rows for the zero experts, which are not read). `num_layers` counts the decoder layers,
// each with one MoE block (transformers' num_hidden_layers is twice that: the attention
// sublayers). Each layer's two dense MLPs (mlps.0, mlps.1) run in series with its attention
// sublayers and its MoE is a shortcut beside them: those, and the attention, are the caller's.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kLongcatFlash = {
    .model_type = "longcat_flash",
    .also_accepts = {},
    .architecture = "LongcatFlashForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.router.classifier.weight",
              .gate_bias = "model.layers.{L}.mlp.router.e_score_correction_bias",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(j.Int({"num_layers"}, false, 1, &c.num_layers));
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"n_routed_experts", "num_local_experts"},
                                     {"moe_topk", "num_experts_per_tok"},
                                     {"expert_ffn_hidden_size", "moe_intermediate_size"}));
      c.zero_experts = 256;  // LongcatFlashConfig's default
      RETURN_IF_ERROR(j.Int({"zero_expert_num"}, false, 0, &c.zero_experts));
      c.routed_scaling_factor = 6.0f;
      RETURN_IF_ERROR(j.Float({"routed_scaling_factor"}, &c.routed_scaling_factor));
      bool router_bias = false;
      RETURN_IF_ERROR(j.Bool({"router_bias"}, &router_bias));
      if (router_bias) c.names.router_bias = "model.layers.{L}.mlp.router.classifier.bias";
      c.scoring_func = "softmax";
      c.selection_bias = true;
      c.norm_topk_prob = false;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "n_routed_experts", "moe_topk", "expert_ffn_hidden_size");
      j["num_layers"] = c.num_layers;
      j["zero_expert_num"] = c.zero_experts;
      j["routed_scaling_factor"] = c.routed_scaling_factor;
      j["router_bias"] = !c.names.router_bias.empty();
    },
    .defaults = [](ModelConfig& c) {
      c.zero_experts = c.num_experts / 2;
      c.routed_scaling_factor = 1.5f;
      c.scoring_func = "softmax";
      c.selection_bias = true;
      c.norm_topk_prob = false;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
