// model/families/flint.cc
// Flint (RecursiveSI): an f32 sigmoid router without a selection bias — top-k of σ(logits), the
// chosen σ renormalised (no epsilon) when norm_topk_prob (default true), no scaling — over experts
// saved one by one (transformers fuses them at load and splits them at save, as for Qwen2-MoE),
// plus one shared expert of width shared_expert_intermediate_size added in full (no gate, unlike
// Qwen2-MoE's). MoE layers as Qwen's: every decoder_sparse_step-th, except mlp_only_layers (dense,
// width intermediate_size).
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kFlint = {
    .model_type = "flint",
    .also_accepts = {},
    .architecture = "FlintForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .shared = "model.layers.{L}.mlp.shared_expert.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts"}, {"num_experts_per_tok"}, {"moe_intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
      RETURN_IF_ERROR(j.Int({"shared_expert_intermediate_size"}, false, 0, &c.shared_intermediate));
      c.norm_topk_prob = true;
      RETURN_IF_ERROR(j.Bool({"norm_topk_prob"}, &c.norm_topk_prob));
      RETURN_IF_ERROR(j.Int({"decoder_sparse_step"}, false, 1, &c.decoder_sparse_step));
      RETURN_IF_ERROR(j.IntList({"mlp_only_layers"}, &c.mlp_only_layers));
      c.scoring_func = "sigmoid";
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_tok", "moe_intermediate_size");
      j["intermediate_size"] = c.intermediate_size;
      j["shared_expert_intermediate_size"] = c.shared_intermediate;
      j["norm_topk_prob"] = c.norm_topk_prob;
      j["decoder_sparse_step"] = c.decoder_sparse_step;
      j["mlp_only_layers"] = c.mlp_only_layers;
    },
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = 2 * c.moe_intermediate_size;
      c.shared_intermediate = 2 * c.moe_intermediate_size;
      c.norm_topk_prob = true;
      c.scoring_func = "sigmoid";
    },
    .is_moe = QwenLayerRule,
};

}  // namespace moe::model
