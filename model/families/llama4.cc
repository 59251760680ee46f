// model/families/llama4.cc
// Llama 4's text model (llama4_text): top-k on the raw router logits, s = σ(logit) of the chosen,
// not renormalised, and s weighs the expert's *input*: y = shared(x) + Σ E_i(s_i·x). Experts
// stacked and transposed per layer (experts.gate_up_proj [E, H, 2I], gate columns first;
// experts.down_proj [E, I, H]); an ungated shared expert of intermediate_size; MoE layers are
// `moe_layers` (else every interleave_moe_layer_step-th), the others a dense MLP of
// intermediate_size_mlp. The multimodal "llama4" config (text_config nested) is not read.
#include <algorithm>

#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kLlama4Text = {
    .model_type = "llama4_text",
    .also_accepts = {},
    .architecture = "Llama4ForCausalLM",
    .names = {.gate = "model.layers.{L}.feed_forward.router.weight",
              .shared = "model.layers.{L}.feed_forward.shared_expert.{P}.weight",
              .dense = "model.layers.{L}.feed_forward.{P}.weight",
              .stacked_gate_up = "model.layers.{L}.feed_forward.experts.gate_up_proj",
              .stacked_down = "model.layers.{L}.feed_forward.experts.down_proj",
              .stacked_transposed = true},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"num_local_experts", "num_experts"}, {"num_experts_per_tok"}, {"intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"intermediate_size_mlp"}, false, 0, &c.intermediate_size));
      int step = 1;
      RETURN_IF_ERROR(j.Int({"interleave_moe_layer_step"}, false, 1, &step));
      RETURN_IF_ERROR(j.IntList({"moe_layers"}, &c.moe_layers));
      if (c.moe_layers.empty()) {
        for (int l = step - 1; l < c.num_layers; l += step) c.moe_layers.push_back(l);
      }
      c.scoring_func = "sigmoid";
      c.norm_topk_prob = false;
      c.weight_on_input = true;
      c.shared_intermediate = c.moe_intermediate_size;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "num_local_experts", "num_experts_per_tok", "intermediate_size");
      j["intermediate_size_mlp"] = c.intermediate_size;
      j["moe_layers"] = c.moe_layers;
    },
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = 2 * c.moe_intermediate_size;
      for (int l = 1; l < c.num_layers; l += 2) c.moe_layers.push_back(l);  // interleave step 2
      c.scoring_func = "sigmoid";
      c.norm_topk_prob = false;
      c.weight_on_input = true;
      c.shared_intermediate = c.moe_intermediate_size;
    },
    .is_moe = [](const ModelConfig& c, int layer) {
      return std::find(c.moe_layers.begin(), c.moe_layers.end(), layer) != c.moe_layers.end();
    },
};

}  // namespace moe::model
