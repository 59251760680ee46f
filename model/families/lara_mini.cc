// model/families/lara_mini.cc
// Lara-4-Mini (lara_mini; its attention, gated DeltaNet and full, is the caller's): Qwen3-Next's
// router taken in f32 — softmax, top-k, renormalised (no epsilon) when norm_topk_prob (default
// true) — over stacked experts (gate_up [E, 2I, H] gate rows first, down [E, H, I]; transformers
// keeps and saves them stacked), plus one shared expert of width shared_expert_intermediate_size
// added in full (no gate). Every layer is MoE.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kLaraMini = {
    .model_type = "lara_mini",
    .also_accepts = {},
    .architecture = "LaraMiniForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .shared = "model.layers.{L}.mlp.shared_expert.{P}.weight",
              .stacked_gate_up = "model.layers.{L}.mlp.experts.gate_up_proj",
              .stacked_down = "model.layers.{L}.mlp.experts.down_proj"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts"}, {"num_experts_per_tok"}, {"moe_intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"shared_expert_intermediate_size"}, false, 0, &c.shared_intermediate));
      c.norm_topk_prob = true;
      RETURN_IF_ERROR(j.Bool({"norm_topk_prob"}, &c.norm_topk_prob));
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_tok", "moe_intermediate_size");
      j["shared_expert_intermediate_size"] = c.shared_intermediate;
      j["norm_topk_prob"] = c.norm_topk_prob;
    },
    .defaults = [](ModelConfig& c) {
      c.shared_intermediate = c.moe_intermediate_size;
      c.norm_topk_prob = true;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
