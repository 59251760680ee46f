// model/families/aria.cc
// Aria's text decoder (aria_text): the router takes top-k on the raw logits and a softmax over
// the k (= Mixtral's softmax, top-k, renormalised); experts stacked transposed as Aria's
// checkpoints store them (`mlp.experts.fc1.weight` [E, H, 2I], gate columns first, and
// `fc2.weight` [E, I, H]; transformers renames them to gate_up_proj/down_proj in memory and back
// when it saves); moe_num_shared_experts ungated shared experts fused into one MLP of that many ×
// intermediate_size. Every layer is MoE. Biased MLPs (mlp_bias) are refused.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kAriaText = {
    .model_type = "aria_text",
    .also_accepts = {},
    .architecture = "AriaTextForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.router.weight",
              .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
              .stacked_gate_up = "model.layers.{L}.mlp.experts.fc1.weight",
              .stacked_down = "model.layers.{L}.mlp.experts.fc2.weight",
              .stacked_transposed = true},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"moe_num_experts"}, {"moe_topk"}, {"intermediate_size"}));
      c.n_shared_experts = 2;
      RETURN_IF_ERROR(j.Int({"moe_num_shared_experts"}, false, 0, &c.n_shared_experts));
      RETURN_IF_ERROR(SetFusedSharedWidth(c));
      bool mlp_bias = false;
      RETURN_IF_ERROR(j.Bool({"mlp_bias"}, &mlp_bias));
      if (mlp_bias) {
        return absl::InvalidArgumentError("config.json: field 'mlp_bias' is true; biased shared experts are not served");
      }
      c.norm_topk_prob = true;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "moe_num_experts", "moe_topk", "intermediate_size");
      j["moe_num_shared_experts"] = c.n_shared_experts;
    },
    .defaults = [](ModelConfig& c) {
      c.n_shared_experts = 2;
      c.shared_intermediate = 2 * c.moe_intermediate_size;
      c.norm_topk_prob = true;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
