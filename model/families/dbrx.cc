// model/families/dbrx.cc
// DBRX (dbrx): softmax over the router logits (ffn.router.layer), top-k, the chosen weights
// divided by their p-norm, p = ffn_config.moe_normalize_expert_weights (1 when absent: their
// sum; null: not renormalised); experts stacked flat per layer as ffn.experts.mlp.w1 / v1 / w2,
// each [E·I, H] (w2's rows are the down weight's columns: y = act·w2), SiLU. The MoE fields
// live in the nested ffn_config (moe_num_experts, moe_top_k, ffn_hidden_size, ffn_act_fn); the
// model's are d_model and n_layers (read as hidden_size and num_hidden_layers). Every layer is
// MoE. Its LayerNorms and attention (with clip_qkv) are the caller's.
#include <string>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kDbrx = {
    .model_type = "dbrx",
    .also_accepts = {},
    .architecture = "DbrxForCausalLM",
    .names = {.gate = "transformer.blocks.{L}.ffn.router.layer.weight",
              .flat_gate = "transformer.blocks.{L}.ffn.experts.mlp.w1",
              .flat_up = "transformer.blocks.{L}.ffn.experts.mlp.v1",
              .flat_down = "transformer.blocks.{L}.ffn.experts.mlp.w2"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      const nlohmann::json* ffn = j.Object("ffn_config");
      if (ffn == nullptr) return absl::InvalidArgumentError("config.json: dbrx needs the object 'ffn_config'");
      const ConfigFields f(*ffn);
      RETURN_IF_ERROR(f.Int({"moe_num_experts"}, true, 1, &c.num_experts));
      c.top_k = 1;  // DbrxFFNConfig's default
      RETURN_IF_ERROR(f.Int({"moe_top_k"}, false, 1, &c.top_k));
      RETURN_IF_ERROR(f.Int({"ffn_hidden_size"}, true, 1, &c.moe_intermediate_size));
      if (const nlohmann::json* act = f.Object("ffn_act_fn"); act != nullptr) {
        RETURN_IF_ERROR(ConfigFields(*act).String({"name"}, &c.hidden_act));
      }
      c.norm_topk_prob = !f.IsNull("moe_normalize_expert_weights");
      RETURN_IF_ERROR(f.Float({"moe_normalize_expert_weights"}, &c.norm_p));
      if (c.norm_topk_prob && c.norm_p <= 0.0f) {
        return absl::InvalidArgumentError(absl::StrCat("config.json: ffn_config.moe_normalize_expert_weights is ",
                                                       c.norm_p, "; expected a p > 0 for the p-norm"));
      }
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      j["d_model"] = c.hidden_size;
      j["n_layers"] = c.num_layers;
      j["ffn_config"] = {{"moe_num_experts", c.num_experts},
                         {"moe_top_k", c.top_k},
                         {"ffn_hidden_size", c.moe_intermediate_size},
                         {"ffn_act_fn", {{"name", c.hidden_act}}},
                         {"moe_normalize_expert_weights", c.norm_topk_prob ? nlohmann::ordered_json(c.norm_p)
                                                                           : nlohmann::ordered_json(nullptr)}};
    },
    .defaults = [](ModelConfig& c) {
      c.norm_topk_prob = true;
      c.norm_p = 1.0f;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
