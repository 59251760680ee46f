// model/families/olmoe.cc
// OLMoE: softmax, top-k, renormalised only when norm_topk_prob (default false); every layer MoE.
// FlexOlmo (flex_olmo) has the same MoE block, tensors and config fields; its decoder layer adds a
// post-feedforward RMSNorm after the block, which stays with the caller (docs/ROUTING.md).
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kOlmoe = {
    .model_type = "olmoe",
    .also_accepts = {"flex_olmo"},
    .architecture = "OlmoeForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight", .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts", "num_local_experts"}, {"num_experts_per_tok"}, {"intermediate_size"}));
      c.norm_topk_prob = false;
      return j.Bool({"norm_topk_prob"}, &c.norm_topk_prob);
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_tok", "intermediate_size");
      j["norm_topk_prob"] = c.norm_topk_prob;
    },
    .defaults = [](ModelConfig& c) { c.norm_topk_prob = false; },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
