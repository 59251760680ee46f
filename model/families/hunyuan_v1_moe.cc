// model/families/hunyuan_v1_moe.cc
// Hunyuan-A13B (hunyuan_v1_moe): softmax, top-k (moe_topk), always renormalised; an ungated
// shared MLP of intermediate_size beside the experts (also of intermediate_size); every layer MoE.
// Per-layer lists for num_experts / moe_topk are refused (one value for every layer is served).
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kHunyuanV1Moe = {
    .model_type = "hunyuan_v1_moe",
    .also_accepts = {},
    .architecture = "HunYuanMoEV1ForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.wg.weight",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .shared = "model.layers.{L}.mlp.shared_mlp.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_experts", "num_local_experts"}, {"moe_topk", "num_experts_per_tok"}, {"intermediate_size"}));
      c.intermediate_size = c.moe_intermediate_size;
      c.shared_intermediate = c.moe_intermediate_size;
      c.norm_topk_prob = true;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_experts", "moe_topk", "intermediate_size");
    },
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = c.moe_intermediate_size;
      c.shared_intermediate = c.moe_intermediate_size;
      c.norm_topk_prob = true;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
