// model/families/phimoe.cc
// Phi-3.5-MoE (phimoe): SparseMixer top-2 on the router logits with ε = router_jitter_noise
// (router/sparsemixer.h), no renormalisation; Mixtral's tensor names; every layer MoE.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kPhimoe = {
    .model_type = "phimoe",
    .also_accepts = {},
    .architecture = "PhimoeForCausalLM",
    .names = {.gate = "model.layers.{L}.block_sparse_moe.gate.weight",
              .expert = "model.layers.{L}.block_sparse_moe.experts.{E}.{P}.weight",
              .expert_projections = {"w1", "w3", "w2"}},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_local_experts", "num_experts"}, {"num_experts_per_tok"}, {"intermediate_size"}));
      if (c.top_k != 2) {
        return absl::InvalidArgumentError(
            "config.json: field 'num_experts_per_tok' must be 2 for phimoe (SparseMixer routing is top-2)");
      }
      c.sparsemixer = true;
      c.sparsemixer_eps = 0.01f;
      RETURN_IF_ERROR(j.Float({"router_jitter_noise"}, &c.sparsemixer_eps));
      c.norm_topk_prob = false;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_local_experts", "num_experts_per_tok", "intermediate_size");
      j["router_jitter_noise"] = c.sparsemixer_eps;
    },
    .defaults = [](ModelConfig& c) {
      c.top_k = 2;
      c.sparsemixer = true;
      c.sparsemixer_eps = 0.01f;
      c.norm_topk_prob = false;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
