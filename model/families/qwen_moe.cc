// model/families/qwen_moe.cc
// Qwen2-MoE, Qwen3-MoE and Qwen3-Next: softmax, top-k, renormalised when norm_topk_prob; Qwen2-MoE
// and Qwen3-Next add a shared expert behind a sigmoid gate. MoE layers: every
// decoder_sparse_step-th, except mlp_only_layers (or as mlp_layer_types lists them: Mellum, read
// as qwen3_moe). transformers 5.x writes Qwen3-MoE's expert count
// as num_local_experts (its attribute_map), hub checkpoints as num_experts: both are read.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {
namespace {

const TensorNames kQwenNames = {.gate = "model.layers.{L}.mlp.gate.weight",
                                    .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
                                    .shared = "model.layers.{L}.mlp.shared_expert.{P}.weight",
                                    .shared_gate = "model.layers.{L}.mlp.shared_expert_gate.weight",
                                    .dense = "model.layers.{L}.mlp.{P}.weight"};

absl::Status ParseQwen(const ConfigFields& j, ModelConfig& c, bool shared, bool norm_default) {
  RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts", "num_local_experts"}, {"num_experts_per_tok"}, {"moe_intermediate_size"}));
  RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
  c.norm_topk_prob = norm_default;
  RETURN_IF_ERROR(j.Bool({"norm_topk_prob"}, &c.norm_topk_prob));
  RETURN_IF_ERROR(j.Int({"decoder_sparse_step"}, false, 1, &c.decoder_sparse_step));
  RETURN_IF_ERROR(j.IntList({"mlp_only_layers"}, &c.mlp_only_layers));
  RETURN_IF_ERROR(j.StringList({"mlp_layer_types"}, &c.mlp_layer_types));  // Mellum's per-layer list
  if (shared) {
    RETURN_IF_ERROR(j.Int({"shared_expert_intermediate_size"}, false, 0, &c.shared_expert_intermediate_size));
    c.shared_intermediate = c.shared_expert_intermediate_size;
    c.shared_gate = true;
  }
  return absl::OkStatus();
}

void WriteQwen(const ModelConfig& c, nlohmann::ordered_json& j, const char* experts_field) {
  WriteExpertDims(c, j, experts_field, "num_experts_per_tok", "moe_intermediate_size");
  j["intermediate_size"] = c.intermediate_size;
  j["norm_topk_prob"] = c.norm_topk_prob;
  j["decoder_sparse_step"] = c.decoder_sparse_step;
  j["mlp_only_layers"] = c.mlp_only_layers;
  if (c.shared_gate) j["shared_expert_intermediate_size"] = c.shared_expert_intermediate_size;
}

void QwenDefaults(ModelConfig& c, bool shared, bool norm) {
  c.intermediate_size = 2 * c.moe_intermediate_size;
  c.norm_topk_prob = norm;
  if (shared) {
    c.shared_expert_intermediate_size = 2 * c.moe_intermediate_size;
    c.shared_intermediate = c.shared_expert_intermediate_size;
    c.shared_gate = true;
  }
}

}  // namespace

extern const FamilyDescriptor kQwen2Moe = {
    .model_type = "qwen2_moe",
    .also_accepts = {},
    .architecture = "Qwen2MoeForCausalLM",
    .names = kQwenNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseQwen(j, c, /*shared=*/true, /*norm=*/false); },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteQwen(c, j, "num_experts"); },
    .defaults = [](ModelConfig& c) { QwenDefaults(c, /*shared=*/true, /*norm=*/false); },
    .is_moe = QwenLayerRule,
};

extern const FamilyDescriptor kQwen3Moe = {
    .model_type = "qwen3_moe",
    .also_accepts = {"mellum"},
    .architecture = "Qwen3MoeForCausalLM",
    .names = kQwenNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseQwen(j, c, /*shared=*/false, /*norm=*/false); },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteQwen(c, j, "num_local_experts"); },
    .defaults = [](ModelConfig& c) { QwenDefaults(c, /*shared=*/false, /*norm=*/true); },
    .is_moe = QwenLayerRule,
};

// Qwen3-Next's attention (gated DeltaNet + gated attention) is the caller's; its MoE block is
// Qwen2-MoE's, renormalised by default.
extern const FamilyDescriptor kQwen3Next = {
    .model_type = "qwen3_next",
    .also_accepts = {},
    .architecture = "Qwen3NextForCausalLM",
    .names = kQwenNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) { return ParseQwen(j, c, /*shared=*/true, /*norm=*/true); },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteQwen(c, j, "num_experts"); },
    .defaults = [](ModelConfig& c) { QwenDefaults(c, /*shared=*/true, /*norm=*/true); },
    .is_moe = QwenLayerRule,
};

// Qwen3.5-MoE's text model: Qwen3-Next's block, always renormalised.
extern const FamilyDescriptor kQwen35MoeText = {
    .model_type = "qwen3_5_moe_text",
    .also_accepts = {},
    .architecture = "Qwen3_5MoeForCausalLM",
    .names = kQwenNames,
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ParseQwen(j, c, /*shared=*/true, /*norm=*/true));
      c.norm_topk_prob = true;  // its router renormalises whatever norm_topk_prob says
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteQwen(c, j, "num_experts"); },
    .defaults = [](ModelConfig& c) { QwenDefaults(c, /*shared=*/true, /*norm=*/true); },
    .is_moe = QwenLayerRule,
};

// Qwen3-VL-MoE's text model (the decoder of model_type qwen3_vl_moe): Qwen3-MoE's router, always
// renormalised (its router has no norm_topk_prob), over stacked experts — gate_up [E, 2I, H]
// (gate rows first) and down [E, H, I] as save_pretrained writes them, or transposed as the hub
// ships them; told apart per tensor by shape, as transformers does.
extern const FamilyDescriptor kQwen3VlMoeText = {
    .model_type = "qwen3_vl_moe_text",
    .also_accepts = {},
    .architecture = "Qwen3VLMoeTextModel",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight",
              .stacked_gate_up = "model.layers.{L}.mlp.experts.gate_up_proj",
              .stacked_down = "model.layers.{L}.mlp.experts.down_proj",
              .stacked_layout_by_shape = true},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ParseQwen(j, c, /*shared=*/false, /*norm=*/true));
      c.norm_topk_prob = true;  // its router renormalises whatever a config says
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) { WriteQwen(c, j, "num_experts"); },
    .defaults = [](ModelConfig& c) { QwenDefaults(c, /*shared=*/false, /*norm=*/true); },
    .is_moe = QwenLayerRule,
};

}  // namespace moe::model
