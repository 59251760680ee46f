// model/families/jamba.cc
// Jamba's MoE layers (its Mamba and attention mixers are the caller's): softmax, top-k, the
// chosen probabilities not renormalised; layer l is MoE when l % expert_layer_period ==
// expert_layer_offset, the others have a dense MLP (both of intermediate_size), all under
// "feed_forward".
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kJamba = {
    .model_type = "jamba",
    .also_accepts = {},
    .architecture = "JambaForCausalLM",
    .names = {.gate = "model.layers.{L}.feed_forward.router.weight",
              .expert = "model.layers.{L}.feed_forward.experts.{E}.{P}.weight",
              .dense = "model.layers.{L}.feed_forward.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts", "num_local_experts"}, {"num_experts_per_tok"}, {"intermediate_size"}));
      c.intermediate_size = c.moe_intermediate_size;
      c.expert_layer_period = 2;
      c.expert_layer_offset = 1;
      RETURN_IF_ERROR(j.Int({"expert_layer_period"}, false, 1, &c.expert_layer_period));
      RETURN_IF_ERROR(j.Int({"expert_layer_offset"}, false, 0, &c.expert_layer_offset));
      c.norm_topk_prob = false;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "num_experts_per_tok", "intermediate_size");
      j["expert_layer_period"] = c.expert_layer_period;
      j["expert_layer_offset"] = c.expert_layer_offset;
    },
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = c.moe_intermediate_size;
      c.expert_layer_period = 2;
      c.expert_layer_offset = 1;
      c.norm_topk_prob = false;
    },
    .is_moe = [](const ModelConfig& c, int layer) { return layer % c.expert_layer_period == c.expert_layer_offset; },
};

}  // namespace moe::model
