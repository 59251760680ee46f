// model/families/granitemoe.cc
// IBM Granite MoE (granitemoe): top-k on the router logits, softmax over the k (= the full
// softmax renormalised over the top-k); experts stacked per layer as input_linear [E, 2I, H]
// (gate rows first) and output_linear [E, H, I]; every layer MoE. Its embedding, residual and
// logits multipliers are outside the MoE block: the caller's.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kGraniteMoe = {
    .model_type = "granitemoe",
    .also_accepts = {},
    .architecture = "GraniteMoeForCausalLM",
    .names = {.gate = "model.layers.{L}.block_sparse_moe.router.layer.weight",
              .stacked_gate_up = "model.layers.{L}.block_sparse_moe.input_linear.weight",
              .stacked_down = "model.layers.{L}.block_sparse_moe.output_linear.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_local_experts", "num_experts"}, {"num_experts_per_tok"}, {"intermediate_size"}));
      c.norm_topk_prob = true;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_local_experts", "num_experts_per_tok", "intermediate_size");
    },
    .defaults = [](ModelConfig& c) { c.norm_topk_prob = true; },
    .is_moe = EveryLayerIsMoe,
};

// Granite MoE with a shared MLP (granitemoeshared): granitemoe's block plus an ungated
// shared_mlp of shared_intermediate_size (fused input_linear [2I, H], gate rows first), which HF
// adds in the decoder layer and moe-serve serves as the layer's always-on MLP.
// GraniteMoeHybrid (granitemoehybrid) has the same MLP part and tensors in every layer (its Mamba
// layers replace attention only, which stays with the caller).
extern const FamilyDescriptor kGraniteMoeShared = {
    .model_type = "granitemoeshared",
    .also_accepts = {"granitemoehybrid"},
    .architecture = "GraniteMoeSharedForCausalLM",
    .names = {.gate = "model.layers.{L}.block_sparse_moe.router.layer.weight",
              .shared_fused_gate_up = "model.layers.{L}.shared_mlp.input_linear.weight",
              .shared_fused_down = "model.layers.{L}.shared_mlp.output_linear.weight",
              .stacked_gate_up = "model.layers.{L}.block_sparse_moe.input_linear.weight",
              .stacked_down = "model.layers.{L}.block_sparse_moe.output_linear.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_local_experts", "num_experts"}, {"num_experts_per_tok"},
                                     {"intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"shared_intermediate_size"}, false, 0, &c.shared_expert_intermediate_size));
      c.shared_intermediate = c.shared_expert_intermediate_size;
      c.norm_topk_prob = true;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_local_experts", "num_experts_per_tok", "intermediate_size");
      j["shared_intermediate_size"] = c.shared_expert_intermediate_size;
    },
    .defaults = [](ModelConfig& c) {
      c.shared_expert_intermediate_size = c.moe_intermediate_size;
      c.shared_intermediate = c.moe_intermediate_size;
      c.norm_topk_prob = true;
    },
    .is_moe = EveryLayerIsMoe,
};

// Granite with sliding-window attention (granitemoe_swa, 2026): granitemoeshared's MoE, but
// transformers has no conversion mapping for it, so its checkpoints hold the module tree's names:
// the router as `router.weight`, the experts as fused `experts.gate_up_proj` [E, 2I, H] (gate rows
// first) and `experts.down_proj` [E, H, I] without a `.weight`.
extern const FamilyDescriptor kGraniteMoeSwa = {
    .model_type = "granitemoe_swa",
    .also_accepts = {},
    .architecture = "GraniteMoeSWAForCausalLM",
    .names = {.gate = "model.layers.{L}.block_sparse_moe.router.weight",
              .shared_fused_gate_up = "model.layers.{L}.shared_mlp.input_linear.weight",
              .shared_fused_down = "model.layers.{L}.shared_mlp.output_linear.weight",
              .stacked_gate_up = "model.layers.{L}.block_sparse_moe.experts.gate_up_proj",
              .stacked_down = "model.layers.{L}.block_sparse_moe.experts.down_proj"},
    .parse = kGraniteMoeShared.parse,
    .write = kGraniteMoeShared.write,
    .defaults = kGraniteMoeShared.defaults,
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
