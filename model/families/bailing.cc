// model/families/bailing.cc
// inclusionAI's Ling (Bailing) MoE families.
//
// bailing_moe — Ling 1.x (BailingMoeForCausalLM) and Ling 2.0 (BailingMoeV2ForCausalLM), served
// from their remote-code math (transformers has no module for them; tested against the NumPy
// golden, tests/golden/golden_parity_test.py): scores = score_function of the logits (softmax,
// Ling 1.x's default, or sigmoid); with moe_router_enable_expert_bias the selection adds
// gate.expert_bias; with n_group > 1 groups are scored by their top-2 sum and topk_group kept;
// top-k; the chosen unbiased scores renormalised (+1e-20) when norm_topk_prob, then ×
// routed_scaling_factor (the remote code scales the combined output; the same by linearity);
// num_shared_experts ungated shared experts; layers below first_k_dense_replace dense.
//
// bailing_hybrid — Ling 2.5's hybrid (transformers' BailingHybrid): DeepSeek-V3's router as GLM
// writes it — sigmoid scores, selection by score + gate.expert_bias, groups scored by their top-2
// sum (num_expert_group, topk_group), the chosen unbiased scores renormalised (+1e-20) whenever
// moe_renormalize, then × routed_scaling_factor — with ungated shared experts
// (num_shared_experts × moe_intermediate_size) and a dense MLP in the layers mlp_layer_types calls
// "dense" (else those below first_k_dense_replace). Its config.json uses Ling's own names, which
// HF's attribute_map maps the DeepSeek names onto; both are read. Its KDA / MLA attention is the
// caller's.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {
namespace {

// Both Ling families name their tensors alike (the selection bias is gate.expert_bias on disk).
const TensorNames kLingNames = {.gate = "model.layers.{L}.mlp.gate.weight",
                                .gate_bias = "model.layers.{L}.mlp.gate.expert_bias",
                                .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
                                .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
                                .dense = "model.layers.{L}.mlp.{P}.weight"};

}  // namespace

extern const FamilyDescriptor kBailingMoe = {
    .model_type = "bailing_moe",
    .also_accepts = {"bailing_moe_v2"},
    .architecture = "BailingMoeV2ForCausalLM",
    .names = kLingNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts", "num_local_experts"},
                                     {"num_experts_per_tok", "num_experts_per_token"}, {"moe_intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
      RETURN_IF_ERROR(j.Int({"num_shared_experts", "n_shared_experts"}, false, 0, &c.n_shared_experts));
      RETURN_IF_ERROR(j.Int({"first_k_dense_replace"}, false, 0, &c.first_k_dense_replace));
      RETURN_IF_ERROR(j.Int({"n_group", "num_expert_group"}, false, 1, &c.n_group));
      RETURN_IF_ERROR(j.Int({"topk_group"}, false, 1, &c.topk_group));
      RETURN_IF_ERROR(j.Float({"routed_scaling_factor"}, &c.routed_scaling_factor));
      c.norm_topk_prob = true;
      RETURN_IF_ERROR(j.Bool({"norm_topk_prob", "moe_renormalize"}, &c.norm_topk_prob));
      c.scoring_func = "softmax";
      RETURN_IF_ERROR(j.String({"score_function", "scoring_func"}, &c.scoring_func));
      RETURN_IF_ERROR(j.Bool({"moe_router_enable_expert_bias"}, &c.selection_bias));
      c.topk_method = c.n_group > 1 ? "noaux_tc" : "greedy";  // groups by their top-2 sum
      RETURN_IF_ERROR(SetFusedSharedWidth(c));
      c.norm_epsilon = 1e-20f;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_tok", "moe_intermediate_size");
      j["intermediate_size"] = c.intermediate_size;
      j["num_shared_experts"] = c.n_shared_experts;
      j["first_k_dense_replace"] = c.first_k_dense_replace;
      j["n_group"] = c.n_group;
      j["topk_group"] = c.topk_group;
      j["routed_scaling_factor"] = c.routed_scaling_factor;
      j["norm_topk_prob"] = c.norm_topk_prob;
      j["score_function"] = c.scoring_func;
      j["moe_router_enable_expert_bias"] = c.selection_bias;
    },
    .defaults = [](ModelConfig& c) {  // Ling 2.0's router
      c.intermediate_size = 2 * c.moe_intermediate_size;
      c.n_shared_experts = 1;
      c.shared_intermediate = c.moe_intermediate_size;
      c.first_k_dense_replace = 1;
      c.n_group = c.num_experts % 4 == 0 ? 4 : 1;
      c.topk_group = c.n_group > 1 ? 2 : 1;
      c.topk_method = c.n_group > 1 ? "noaux_tc" : "greedy";
      c.scoring_func = "sigmoid";
      c.selection_bias = true;
      c.norm_topk_prob = true;
      c.norm_epsilon = 1e-20f;
      c.routed_scaling_factor = 2.5f;
    },
    .is_moe = DeepseekLayerRule,
};

extern const FamilyDescriptor kBailingHybrid = {
    .model_type = "bailing_hybrid",
    .also_accepts = {},
    .architecture = "BailingHybridForCausalLM",
    .names = kLingNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts", "num_local_experts"},
                                     {"num_experts_per_token", "num_experts_per_tok"}, {"moe_intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
      c.n_shared_experts = 1;
      c.n_group = 8;
      c.topk_group = 4;
      c.routed_scaling_factor = 2.5f;
      c.norm_topk_prob = true;
      c.first_k_dense_replace = 2;  // BailingHybridConfig's defaults
      RETURN_IF_ERROR(j.Int({"num_shared_experts", "n_shared_experts"}, false, 0, &c.n_shared_experts));
      RETURN_IF_ERROR(j.Int({"num_expert_group", "n_group"}, false, 1, &c.n_group));
      RETURN_IF_ERROR(j.Int({"topk_group"}, false, 1, &c.topk_group));
      RETURN_IF_ERROR(j.Float({"routed_scaling_factor"}, &c.routed_scaling_factor));
      RETURN_IF_ERROR(j.Bool({"moe_renormalize", "norm_topk_prob"}, &c.norm_topk_prob));
      RETURN_IF_ERROR(j.Int({"first_k_dense_replace"}, false, 0, &c.first_k_dense_replace));
      RETURN_IF_ERROR(j.StringList({"mlp_layer_types"}, &c.mlp_layer_types));
      RETURN_IF_ERROR(SetFusedSharedWidth(c));
      c.scoring_func = "sigmoid";
      c.topk_method = "noaux_tc";
      c.selection_bias = true;
      c.norm_epsilon = 1e-20f;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_token", "moe_intermediate_size");
      j["intermediate_size"] = c.intermediate_size;
      j["num_shared_experts"] = c.n_shared_experts;
      j["num_expert_group"] = c.n_group;
      j["topk_group"] = c.topk_group;
      j["routed_scaling_factor"] = c.routed_scaling_factor;
      j["moe_renormalize"] = c.norm_topk_prob;
      j["first_k_dense_replace"] = c.first_k_dense_replace;
      if (!c.mlp_layer_types.empty()) j["mlp_layer_types"] = c.mlp_layer_types;
    },
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = 2 * c.moe_intermediate_size;
      c.n_shared_experts = 1;
      c.shared_intermediate = c.moe_intermediate_size;
      c.first_k_dense_replace = 1;
      c.n_group = c.num_experts % 4 == 0 ? 4 : 1;
      c.topk_group = c.n_group > 1 ? 2 : 1;
      c.scoring_func = "sigmoid";
      c.topk_method = "noaux_tc";
      c.selection_bias = true;
      c.norm_topk_prob = true;
      c.norm_epsilon = 1e-20f;
      c.routed_scaling_factor = 2.5f;
    },
    .is_moe = DeepseekLayerRule,
};

}  // namespace moe::model
