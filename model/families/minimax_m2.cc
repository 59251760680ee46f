// model/families/minimax_m2.cc
// MiniMax-M2: sigmoid of the router logits (f32), top-k on sigmoid + e_score_correction_bias,
// weights the chosen sigmoids renormalised (no epsilon); every layer MoE, Mixtral's names.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kMinimaxM2 = {
    .model_type = "minimax_m2",
    .also_accepts = {},
    .architecture = "MiniMaxM2ForCausalLM",
    .names = {.gate = "model.layers.{L}.block_sparse_moe.gate.weight",
              .gate_bias = "model.layers.{L}.block_sparse_moe.e_score_correction_bias",
              .expert = "model.layers.{L}.block_sparse_moe.experts.{E}.{P}.weight",
              .expert_projections = {"w1", "w3", "w2"}},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_local_experts", "num_experts"}, {"num_experts_per_tok"}, {"intermediate_size"}));
      c.scoring_func = "sigmoid";
      RETURN_IF_ERROR(j.String({"scoring_func"}, &c.scoring_func));
      c.selection_bias = true;
      c.norm_topk_prob = true;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_local_experts", "num_experts_per_tok", "intermediate_size");
      j["scoring_func"] = c.scoring_func;
    },
    .defaults = [](ModelConfig& c) {
      c.scoring_func = "sigmoid";
      c.selection_bias = true;
      c.norm_topk_prob = true;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
