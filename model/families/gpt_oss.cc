// model/families/gpt_oss.cc
// gpt-oss: router logits = W·x + b (mlp.router.bias); top-k on the logits, softmax over the k
// (= the full softmax renormalised over the top-k); experts stacked transposed with gate and up
// interleaved (experts.gate_up_proj [E, H, 2I]: column 2j is gate j, 2j+1 up j), biases on both
// products, and the clamped activation g = min(g, limit), u = clamp(u, ±limit),
// (u + 1)·g·σ(alpha·g) (swiglu_alpha 1.702, swiglu_limit 7). The bf16 form is served; MXFP4
// (`*_blocks`/`*_scales`, quantization_config mxfp4) is refused by its quant_method.
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kGptOss = {
    .model_type = "gpt_oss",
    .also_accepts = {},
    .architecture = "GptOssForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.router.weight",
              .stacked_gate_up = "model.layers.{L}.mlp.experts.gate_up_proj",
              .stacked_down = "model.layers.{L}.mlp.experts.down_proj",
              .stacked_transposed = true,
              .gate_up_interleaved = true,
              .stacked_gate_up_bias = "model.layers.{L}.mlp.experts.gate_up_proj_bias",
              .stacked_down_bias = "model.layers.{L}.mlp.experts.down_proj_bias",
              .router_bias = "model.layers.{L}.mlp.router.bias"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_local_experts", "num_experts"}, {"num_experts_per_tok", "experts_per_token"}, {"intermediate_size"}));
      c.swiglu_alpha = 1.702f;
      c.swiglu_limit = 7.0f;
      RETURN_IF_ERROR(j.Float({"swiglu_alpha"}, &c.swiglu_alpha));
      RETURN_IF_ERROR(j.Float({"swiglu_limit"}, &c.swiglu_limit));
      c.norm_topk_prob = true;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_local_experts", "num_experts_per_tok", "intermediate_size");
      j["swiglu_alpha"] = c.swiglu_alpha;
      j["swiglu_limit"] = c.swiglu_limit;
    },
    .defaults = [](ModelConfig& c) {
      c.swiglu_alpha = 1.702f;
      c.swiglu_limit = 7.0f;
      c.norm_topk_prob = true;
    },
    .is_moe = EveryLayerIsMoe,
};

}  // namespace moe::model
