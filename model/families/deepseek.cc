// model/families/deepseek.cc
// The DeepSeek router and the families that reuse it (routing.md):
//   deepseek_v2            softmax (or scoring_func), greedy or group_limited_greedy (groups by
//                          their max), renormalised when norm_topk_prob and top_k > 1, else
//                          scaled by routed_scaling_factor;
//   deepseek_v3 / kimi_k2  sigmoid + selection bias (e_score_correction_bias), noaux_tc groups
//                          by their top-2 sum, renormalised when norm_topk_prob and top_k > 1,
//                          always scaled; deepseek_v32 the same with mlp_layer_types;
//   glm4_moe, dots1        the V3 router as transformers writes it for them: groups by top-2
//                          sum always, renormalised whenever norm_topk_prob (dots1 defaults to
//                          false), always scaled; MoE from first_k_dense_replace on.
// All: n_shared_experts ungated shared experts fused into one MLP, names "mlp.shared_experts".
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {
namespace {

const TensorNames kDeepseekNames = {.gate = "model.layers.{L}.mlp.gate.weight",
                                        .gate_bias = "model.layers.{L}.mlp.gate.e_score_correction_bias",
                                        .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
                                        .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
                                        .dense = "model.layers.{L}.mlp.{P}.weight"};

absl::Status ParseCommon(const ConfigFields& j, ModelConfig& c, std::initializer_list<const char*> experts) {
  RETURN_IF_ERROR(ReadExpertDims(j, c, experts, {"num_experts_per_tok"}, {"moe_intermediate_size"}));
  RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
  RETURN_IF_ERROR(j.Int({"n_shared_experts"}, false, 0, &c.n_shared_experts));
  RETURN_IF_ERROR(j.Int({"first_k_dense_replace"}, false, 0, &c.first_k_dense_replace));
  RETURN_IF_ERROR(j.Int({"n_group"}, false, 1, &c.n_group));
  RETURN_IF_ERROR(j.Int({"topk_group"}, false, 1, &c.topk_group));
  RETURN_IF_ERROR(j.Float({"routed_scaling_factor"}, &c.routed_scaling_factor));
  RETURN_IF_ERROR(j.Bool({"norm_topk_prob"}, &c.norm_topk_prob));
  RETURN_IF_ERROR(SetFusedSharedWidth(c));
  return absl::OkStatus();
}

void WriteCommon(const ModelConfig& c, nlohmann::ordered_json& j, const char* experts_field) {
  WriteExpertDims(c, j, experts_field, "num_experts_per_tok", "moe_intermediate_size");
  j["intermediate_size"] = c.intermediate_size;
  j["n_shared_experts"] = c.n_shared_experts;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["routed_scaling_factor"] = c.routed_scaling_factor;
}

// DeepSeek's own code (V2 and V3): topk_method and scoring_func in config.json, moe_layer_freq.
absl::Status ParseDeepseek(const ConfigFields& j, ModelConfig& c, bool v3) {
  c.norm_topk_prob = false;
  RETURN_IF_ERROR(ParseCommon(j, c, {"n_routed_experts", v3 ? "num_local_experts" : "num_experts"}));
  RETURN_IF_ERROR(j.Int({"moe_layer_freq"}, false, 1, &c.moe_layer_freq));
  c.scoring_func = v3 ? "sigmoid" : "softmax";
  RETURN_IF_ERROR(j.String({"scoring_func"}, &c.scoring_func));
  c.topk_method = v3 ? "noaux_tc" : "greedy";
  RETURN_IF_ERROR(j.String({"topk_method"}, &c.topk_method));
  RETURN_IF_ERROR(j.StringList({"mlp_layer_types"}, &c.mlp_layer_types));
  c.norm_needs_topk_above_one = true;
  c.norm_epsilon = 1e-20f;
  c.scale_only_without_norm = !v3;
  c.selection_bias = c.topk_method == "noaux_tc";
  return absl::OkStatus();
}

void WriteDeepseek(const ModelConfig& c, nlohmann::ordered_json& j) {
  WriteCommon(c, j, "n_routed_experts");
  j["moe_layer_freq"] = c.moe_layer_freq;
  j["topk_method"] = c.topk_method;
  j["scoring_func"] = c.scoring_func;
  if (!c.mlp_layer_types.empty()) j["mlp_layer_types"] = c.mlp_layer_types;
}

void GroupDefaults(ModelConfig& c) {
  c.n_group = c.num_experts % 4 == 0 ? 4 : 1;
  c.topk_group = c.n_group > 1 ? 2 : 1;
}

void V3Defaults(ModelConfig& c) {
  c.intermediate_size = 2 * c.moe_intermediate_size;
  c.n_shared_experts = 1;
  c.shared_intermediate = c.moe_intermediate_size;
  c.first_k_dense_replace = 1;
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  GroupDefaults(c);
  c.norm_topk_prob = true;
  c.routed_scaling_factor = 2.5f;
  c.norm_needs_topk_above_one = true;
  c.norm_epsilon = 1e-20f;
  c.selection_bias = true;
}

// GLM-4.5/4.6 and dots.llm1: the V3 router without DeepSeek's config fields.
absl::Status ParseGlm(const ConfigFields& j, ModelConfig& c, bool norm_default, int first_dense_default) {
  c.norm_topk_prob = norm_default;
  c.first_k_dense_replace = first_dense_default;
  RETURN_IF_ERROR(ParseCommon(j, c, {"n_routed_experts", "num_local_experts"}));
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.selection_bias = true;
  c.norm_epsilon = 1e-20f;
  return absl::OkStatus();
}

void GlmDefaults(ModelConfig& c, bool norm) {
  V3Defaults(c);
  c.norm_topk_prob = norm;
  c.norm_needs_topk_above_one = false;
  c.routed_scaling_factor = 1.0f;
}

}  // namespace

absl::Status ParseV3Renamed(const ConfigFields& j, ModelConfig& c, ConfigFields::Names experts,
                            ConfigFields::Names shared, ConfigFields::Names scale) {
  // (Kimi-Linear's names: num_experts_per_token, num_expert_group, moe_renormalize.)
  RETURN_IF_ERROR(ReadExpertDims(j, c, experts, {"num_experts_per_tok", "num_experts_per_token"}, {"moe_intermediate_size"}));
  RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
  if (shared.size() > 0) RETURN_IF_ERROR(j.Int(shared, false, 0, &c.n_shared_experts));
  RETURN_IF_ERROR(j.Int({"first_k_dense_replace"}, false, 0, &c.first_k_dense_replace));
  RETURN_IF_ERROR(j.StringList({"mlp_layer_types"}, &c.mlp_layer_types));
  RETURN_IF_ERROR(j.Int({"n_group", "num_expert_group"}, false, 1, &c.n_group));
  RETURN_IF_ERROR(j.Int({"topk_group"}, false, 1, &c.topk_group));
  c.routed_scaling_factor = 1.0f;
  RETURN_IF_ERROR(j.Float(scale, &c.routed_scaling_factor));
  c.norm_topk_prob = true;
  RETURN_IF_ERROR(j.Bool({"norm_topk_prob", "moe_renormalize"}, &c.norm_topk_prob));
  RETURN_IF_ERROR(SetFusedSharedWidth(c));
  c.scoring_func = "sigmoid";
  c.topk_method = "noaux_tc";
  c.selection_bias = true;
  c.norm_epsilon = 1e-20f;
  return absl::OkStatus();
}

void WriteV3Renamed(const ModelConfig& c, nlohmann::ordered_json& j, const char* experts, const char* shared,
                    const char* scale) {
  WriteExpertDims(c, j, experts, "num_experts_per_tok", "moe_intermediate_size");
  j["intermediate_size"] = c.intermediate_size;
  if (shared != nullptr) j[shared] = c.n_shared_experts;
  j["first_k_dense_replace"] = c.first_k_dense_replace;
  if (!c.mlp_layer_types.empty()) j["mlp_layer_types"] = c.mlp_layer_types;
  j["n_group"] = c.n_group;
  j["topk_group"] = c.topk_group;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j[scale] = c.routed_scaling_factor;
}

void V3RenamedDefaults(ModelConfig& c) {
  GlmDefaults(c, /*norm=*/true);
  c.routed_scaling_factor = 2.5f;
}

extern const FamilyDescriptor kDeepseekV2 = {
    .model_type = "deepseek_v2",
    .also_accepts = {},
    .architecture = "DeepseekV2ForCausalLM",
    .names = kDeepseekNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseDeepseek(j, c, /*v3=*/false); },
    .write = WriteDeepseek,
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = 2 * c.moe_intermediate_size;
      c.n_shared_experts = 2;
      c.shared_intermediate = 2 * c.moe_intermediate_size;
      c.first_k_dense_replace = 1;
      GroupDefaults(c);
      c.topk_method = c.n_group > 1 ? "group_limited_greedy" : "greedy";
      c.norm_topk_prob = false;
      c.routed_scaling_factor = 16.0f;
      c.norm_needs_topk_above_one = true;
      c.norm_epsilon = 1e-20f;
      c.scale_only_without_norm = true;
    },
    .is_moe = DeepseekLayerRule,
};

// Kimi-K2 ships DeepSeek-V3's architecture under its own model_type, and so, for their MoE
// blocks, do the 2026 families whose configs and tensor names are V3's (attention aside:
// docs/ROUTING.md): Sarvam-105B (sarvam_mla), GLM-4.7-Flash (glm4_moe_lite), GLM-5 (glm_moe_dsa),
// MiMo-V2-Flash (mimo_v2_flash, no shared expert), A.X-K2 (axk2, n_group null = no groups) and
// Solar-Open (solar_open, every layer MoE).
extern const FamilyDescriptor kDeepseekV3 = {
    .model_type = "deepseek_v3",
    .also_accepts = {"kimi_k2", "sarvam_mla", "glm4_moe_lite", "glm_moe_dsa", "mimo_v2_flash", "axk2", "solar_open"},
    .architecture = "DeepseekV3ForCausalLM",
    .names = kDeepseekNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseDeepseek(j, c, /*v3=*/true); },
    .write = WriteDeepseek,
    .defaults = V3Defaults,
    .is_moe = DeepseekLayerRule,
};

// DeepSeek-V3.2: V3's MoE (its sparse attention is the caller's); mlp_layer_types says which
// layers are MoE.
extern const FamilyDescriptor kDeepseekV32 = {
    .model_type = "deepseek_v32",
    .also_accepts = {},
    .architecture = "DeepseekV32ForCausalLM",
    .names = kDeepseekNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseDeepseek(j, c, /*v3=*/true); },
    .write = WriteDeepseek,
    .defaults = V3Defaults,
    .is_moe = DeepseekLayerRule,
};

// (glm4v_moe_text: GLM-4.5V's text decoder, read through the glm4v_moe wrapper.)
extern const FamilyDescriptor kGlm4Moe = {
    .model_type = "glm4_moe",
    .also_accepts = {"glm4v_moe_text"},
    .architecture = "Glm4MoeForCausalLM",
    .names = kDeepseekNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseGlm(j, c, /*norm=*/true, /*first_dense=*/1); },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteCommon(c, j, "n_routed_experts"); },
    .defaults = [](ModelConfig& c) { GlmDefaults(c, /*norm=*/true); },
    .is_moe = DeepseekLayerRule,
};

extern const FamilyDescriptor kDots1 = {
    .model_type = "dots1",
    .also_accepts = {},
    .architecture = "Dots1ForCausalLM",
    .names = kDeepseekNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseGlm(j, c, /*norm=*/false, /*first_dense=*/0); },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteCommon(c, j, "n_routed_experts"); },
    .defaults = [](ModelConfig& c) { GlmDefaults(c, /*norm=*/false); },
    .is_moe = DeepseekLayerRule,
};

// Mistral Small 4 (mistral4): DeepSeek-V3's MoE block with a softmax router and no selection
// bias — groups by the top-2 sum of softmax scores (others masked to 0), top-k, renormalised
// (+1e-20) whenever norm_topk_prob, always × routed_scaling_factor; experts stacked as
// transformers keeps them (gate_up [E, 2I, H], down [E, H, I]); MoE from first_k_dense_replace
// (default 0). transformers takes its softmax in the model's dtype: equal to ours in f32, within
// bf16 rounding of it for a bf16 model (we take it in f32).
extern const FamilyDescriptor kMistral4 = {
    .model_type = "mistral4",
    .also_accepts = {},
    .architecture = "Mistral4ForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight",
              .stacked_gate_up = "model.layers.{L}.mlp.experts.gate_up_proj",
              .stacked_down = "model.layers.{L}.mlp.experts.down_proj"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      c.norm_topk_prob = true;
      c.routed_scaling_factor = 1.0f;
      RETURN_IF_ERROR(ParseCommon(j, c, {"n_routed_experts", "num_local_experts"}));
      c.scoring_func = "softmax";
      c.topk_method = "noaux_tc";  // groups by their top-2 sum
      c.selection_bias = false;
      c.norm_epsilon = 1e-20f;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteCommon(c, j, "n_routed_experts"); },
    .defaults = [](ModelConfig& c) {
      V3Defaults(c);
      c.first_k_dense_replace = 0;
      c.scoring_func = "softmax";
      c.selection_bias = false;
      c.norm_needs_topk_above_one = false;
      c.routed_scaling_factor = 1.5f;
    },
    .is_moe = DeepseekLayerRule,
};

}  // namespace moe::model
