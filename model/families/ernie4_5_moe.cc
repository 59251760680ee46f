// model/families/ernie4_5_moe.cc
// ERNIE 4.5 MoE (ernie4_5_moe): p = softmax(logits); top-k on p + e_score_correction_bias
// (moe_statics, [1, E]); weights p / max(Σp, moe_norm_min); moe_num_shared_experts ungated shared
// experts; layer l is MoE iff moe_layer_start_index <= l <= moe_layer_end_index (-1: the last)
// and (l + 1) % moe_layer_interval == 0, the others a dense MLP. Expert biases (use_bias) are
// refused.
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/families/family.h"

namespace moe::model {

extern const FamilyDescriptor kErnie45Moe = {
    .model_type = "ernie4_5_moe",
    .also_accepts = {},
    .architecture = "Ernie4_5_MoeForCausalLM",
    .names = {.gate = "model.layers.{L}.mlp.gate.weight",
              .gate_bias = "model.layers.{L}.mlp.moe_statics.e_score_correction_bias",
              .expert = "model.layers.{L}.mlp.experts.{E}.{P}.weight",
              .shared = "model.layers.{L}.mlp.shared_experts.{P}.weight",
              .dense = "model.layers.{L}.mlp.{P}.weight"},
    .parse = [](const ConfigFields& j, ModelConfig& c) -> absl::Status {
      RETURN_IF_ERROR(ReadExpertDims(j, c, {"moe_num_experts", "num_experts"}, {"moe_k", "num_experts_per_tok"}, {"moe_intermediate_size"}));
      RETURN_IF_ERROR(j.Int({"intermediate_size"}, false, 0, &c.intermediate_size));
      c.n_shared_experts = 2;
      RETURN_IF_ERROR(j.Int({"moe_num_shared_experts"}, false, 0, &c.n_shared_experts));
      RETURN_IF_ERROR(SetFusedSharedWidth(c));
      c.moe_layer_start = 1;
      RETURN_IF_ERROR(j.Int({"moe_layer_start_index"}, false, 0, &c.moe_layer_start));
      int end = -1;
      if (j.Has({"moe_layer_end_index"})) RETURN_IF_ERROR(j.Int({"moe_layer_end_index"}, false, -1, &end));
      c.moe_layer_end = end < 0 ? c.num_layers - 1 : end;
      RETURN_IF_ERROR(j.Int({"moe_layer_interval"}, false, 1, &c.moe_layer_interval));
      c.norm_floor = 1e-12f;
      RETURN_IF_ERROR(j.Float({"moe_norm_min"}, &c.norm_floor));
      bool bias = false;
      RETURN_IF_ERROR(j.Bool({"use_bias"}, &bias));
      if (bias) {
        return absl::InvalidArgumentError(
            "config.json: field 'use_bias' is true: experts with biases are not served (moe-serve's experts are "
            "bias-free SwiGLU)");
      }
      c.selection_bias = true;
      c.norm_topk_prob = true;
      return absl::OkStatus();
    },
    .write = [](const ModelConfig& c, nlohmann::ordered_json& j) {
      WriteExpertDims(c, j, "moe_num_experts", "moe_k", "moe_intermediate_size");
      j["intermediate_size"] = c.intermediate_size;
      j["moe_num_shared_experts"] = c.n_shared_experts;
      j["moe_layer_start_index"] = c.moe_layer_start;
      j["moe_layer_end_index"] = c.moe_layer_end;
      j["moe_layer_interval"] = c.moe_layer_interval;
      j["moe_norm_min"] = c.norm_floor;
    },
    .defaults = [](ModelConfig& c) {
      c.intermediate_size = 2 * c.moe_intermediate_size;
      c.n_shared_experts = 1;
      c.shared_intermediate = c.moe_intermediate_size;
      c.moe_layer_start = 1;
      c.moe_layer_end = c.num_layers - 1;
      c.norm_floor = 1e-12f;
      c.selection_bias = true;
      c.norm_topk_prob = true;
    },
    .is_moe = [](const ModelConfig& c, int layer) {
      return layer >= c.moe_layer_start && layer <= c.moe_layer_end && (layer + 1) % c.moe_layer_interval == 0;
    },
};

}  // namespace moe::model
