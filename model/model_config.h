// model/model_config.h
// What moe-serve needs from a Hugging Face config.json, for every MoE family it serves. The
// families themselves are data (model/families/, one file each: model_types, field names and
// aliases, layer rules, tensor names, routing math); this is the common shape they fill in. Anything
// we cannot serve is refused naming the field. A plain value type; thread-compatible.
#pragma once

#include <array>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::model {

struct FamilyDescriptor;  // model/families/family.h

// Tensor name patterns of a family's checkpoint: "{L}" is the layer, "{E}" the expert, "{P}" the
// projection name. Empty: the family has no such tensor.
struct TensorNames {
  std::string gate;         // router weight [E, H]
  std::string gate_bias;    // selection-only bias [E] (f32)
  std::string expert;       // a routed expert's projection
  std::array<std::string, 3> expert_projections = {"gate_proj", "up_proj", "down_proj"};
  // The {P} of `shared` and `dense` (GGUF names them gate/up/down).
  std::array<std::string, 3> mlp_projections = {"gate_proj", "up_proj", "down_proj"};
  std::string shared;       // the shared expert(s) of an MoE layer
  // Or the shared MLP as one fused gate|up [2I, H] (gate rows first) and one down [H, I] weight
  // (Granite's shared_mlp.input_linear / output_linear).
  std::string shared_fused_gate_up;
  std::string shared_fused_down;
  std::string shared_gate;  // sigmoid gate of the shared expert [1, H]
  std::string dense;        // the MLP of a dense layer
  // Stacked experts instead of `expert`: one gate|up tensor [E, 2I, H] (gate rows first) and one
  // down tensor [E, H, I] per layer; transposed ([E, H, 2I] and [E, I, H]) when
  // `stacked_transposed`. A worker reads only its experts' slices.
  std::string stacked_gate_up;
  std::string stacked_down;
  bool stacked_transposed = false;
  // Either layout, told apart per tensor by its shape as transformers' Transpose(check_dims) does
  // (Qwen3-VL-MoE: the hub ships [E, H, 2I] / [E, I, H], save_pretrained writes [E, 2I, H] /
  // [E, H, I]; a shape that is both, a square gate_up, is read untransposed, as HF reads it).
  bool stacked_layout_by_shape = false;
  bool gate_up_interleaved = false;   // gate, up, gate, up, ... columns (gpt-oss) instead of halves
  std::string stacked_gate_up_bias;   // [E, 2I] in the gate|up order of stacked_gate_up
  std::string stacked_down_bias;      // [E, H]
  std::string router_bias;            // [E] added to the router logits (gpt-oss), unlike gate_bias
  // A routed expert's per-projection bias ({P} from expert_projections), where experts are
  // addressed one by one (GGUF gpt-oss: blk.{L}.ffn_{P}_exps.bias#{E}); [I] for gate/up, [H] down.
  std::string expert_bias;
  // DBRX: gate, up and down stacked flat, each [E·I, H] (expert e's rows [e·I, (e+1)·I)); down's
  // rows are the columns of the expert's [H, I] down weight (x·W2 rather than x·W2ᵀ).
  std::string flat_gate, flat_up, flat_down;
};

struct ModelConfig {
  const FamilyDescriptor* family = nullptr;  // never null in a parsed or default config
  std::string model_type = "mixtral";        // as config.json says it (may be an accepted alias)
  int hidden_size = 0;
  int num_layers = 0;
  int num_experts = 0;             // routed experts per MoE layer
  int top_k = 0;
  int moe_intermediate_size = 0;   // of a routed expert
  int intermediate_size = 0;       // of a dense MLP layer (0: the family has none)
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";

  // Gate (router/routing_spec.h turns these into a RoutingSpec).
  std::string scoring_func = "softmax";  // softmax | sigmoid
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
  // greedy | group_limited_greedy (groups scored by their max) | noaux_tc (by their top-2 sum)
  std::string topk_method = "greedy";
  int n_group = 1;
  int topk_group = 1;
  bool selection_bias = false;             // a bias added to the scores to choose, not to weigh
  bool norm_needs_topk_above_one = false;  // DeepSeek: renormalise only when top_k > 1
  float norm_epsilon = 0.0f;               // added to the renormalisation's denominator
  float norm_floor = 0.0f;                 // the denominator is at least this (ERNIE's moe_norm_min)
  float norm_p = 1.0f;                     // renormalise by the p-norm of the chosen (DBRX); 1 = their sum
  int zero_experts = 0;                    // LongCat-Flash: identity experts after the routed ones
  bool scale_only_without_norm = false;    // DeepSeek-V2: routed_scaling_factor only without renorm
  bool weight_on_input = false;            // Llama 4: y = Σ E_i(w_i·x), not Σ w_i·E_i(x)
  bool sparsemixer = false;                // PhiMoE: SparseMixer top-2 (router/sparsemixer.h)
  float swiglu_alpha = 0.0f;               // gpt-oss's clamped SwiGLU (ExpertActivation); 0 = SwiGLU
  float swiglu_limit = 0.0f;
  float sparsemixer_eps = 0.0f;            // its ε (router_jitter_noise)
  float capacity_factor = 0.0f;            // Switch: expert capacity factor (0 = unlimited)

  // Shared experts of an MoE layer: one always-on MLP of `shared_intermediate` (DeepSeek's
  // n_shared_experts fused; Qwen2's shared expert, behind a sigmoid gate when shared_gate).
  int shared_intermediate = 0;
  bool shared_gate = false;
  int n_shared_experts = 0;                // as config.json says (DeepSeek family)
  int shared_expert_intermediate_size = 0;  // as config.json says (Qwen family)

  // Fields of the families' layer rules (each family's is_moe reads its own).
  int first_k_dense_replace = 0;  // DeepSeek, GLM
  int moe_layer_freq = 1;         // DeepSeek
  int decoder_sparse_step = 1;    // Qwen
  std::vector<int> mlp_only_layers;  // Qwen
  std::vector<std::string> mlp_layer_types;  // DeepSeek-V3.2: "dense" | "sparse" per layer
  int expert_layer_period = 1;    // Jamba
  int expert_layer_offset = 0;    // Jamba
  std::vector<int> moe_layers;    // Llama 4 (from interleave_moe_layer_step when absent)
  int moe_layer_start = 0;        // ERNIE: MoE iff start <= l <= end and (l + 1) % interval == 0
  int moe_layer_end = -1;
  int moe_layer_interval = 1;

  // FP8 block-scaled weights (quantization_config quant_method "fp8", fmt "e4m3"): the block of
  // weight_block_size [n, k]; 0 = not quantized.
  int fp8_block_n = 0;
  int fp8_block_k = 0;
  bool mxfp4 = false;  // quant_method "mxfp4": stacked experts as `_blocks` + `_scales` (model/fp8.h)
  // 4-bit weights with a scale and zero point per group of 128 inputs (model/int4_checkpoint.h):
  // "awq" (AutoAWQ's GEMM layout), "gptq" (GPTQ's, zeros stored minus one) or "gptq_v2"; empty = none.
  std::string int4_method;
  // A compressed-tensors quantization_config as the checkpoint wrote it (model/compressed_tensors.h
  // reads its linear layers); empty = none.
  std::string compressed_tensors;

  TensorNames names;  // the family's

  bool IsMoeLayer(int layer) const;
  // Whether `layer` has an always-on MLP: the shared expert(s) of an MoE layer or the MLP of a
  // dense layer. It is addressed as expert id `num_experts` (kAlwaysOn below).
  bool HasAlwaysOn(int layer) const;
  int AlwaysOnIntermediate(int layer) const;
  // The shared expert is scaled by sigmoid(shared_expert_gate · x) (Qwen2-MoE, Qwen3-Next).
  bool HasSharedGate(int layer) const;
  int AlwaysOnId() const { return num_experts; }

  // Parses config.json text. INVALID_ARGUMENT naming the field when one is missing, of the wrong
  // type or out of range, or names something we do not serve (model_type, hidden_act,
  // scoring_func, topk_method, quantization_config).
  static absl::StatusOr<ModelConfig> Parse(absl::string_view json_text);
  // Reads and parses `path`; NOT_FOUND if it cannot be read.
  static absl::StatusOr<ModelConfig> FromFile(const std::string& path);
  // config.json text in the family's own Hugging Face field names.
  std::string ToJson() const;
  // Parameters of the MoE/MLP blocks (gates, experts, shared, dense), in total and per token.
  int64_t TotalParameters() const;
  int64_t ActiveParameters() const;
};

// The model_types served, canonical names first then accepted aliases ("mixtral", ...).
std::vector<std::string> ServedModelTypes();

// The family's defaults (routing, layout) for a config of the given dims, for generators/tests.
// INVALID_ARGUMENT for a model_type no family serves.
absl::StatusOr<ModelConfig> DefaultConfig(absl::string_view model_type, int hidden, int moe_intermediate,
                                          int experts, int top_k, int layers);

}  // namespace moe::model
