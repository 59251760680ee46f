// experts/model_config.h
// What moe-serve needs from a Hugging Face config.json, for every MoE family it serves: Mixtral,
// Qwen2-MoE, Qwen3-MoE, OLMoE, DeepSeek-V2, DeepSeek-V3 and Switch-style top-1 layers. Each
// family's own field names and defaults are read here (routing.md); anything we cannot serve is
// refused naming the field. A plain value type; thread-compatible.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::experts {

enum class Family { kMixtral, kQwen2Moe, kQwen3Moe, kOlmoe, kDeepseekV2, kDeepseekV3, kSwitch };

// "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v2", "deepseek_v3", "switch_moe".
absl::string_view FamilyModelType(Family family);
absl::StatusOr<Family> ParseFamily(absl::string_view model_type);

struct ModelConfig {
  Family family = Family::kMixtral;
  std::string model_type = "mixtral";
  int hidden_size = 0;
  int num_layers = 0;
  int num_experts = 0;             // routed experts per MoE layer
  int top_k = 0;
  int moe_intermediate_size = 0;   // of a routed expert
  int intermediate_size = 0;       // of a dense MLP layer (0: the family has none)
  std::string hidden_act = "silu";
  std::string torch_dtype = "bfloat16";

  // Gate.
  std::string scoring_func = "softmax";  // softmax | sigmoid
  bool norm_topk_prob = true;
  float routed_scaling_factor = 1.0f;
  std::string topk_method = "greedy";    // greedy | group_limited_greedy | noaux_tc
  int n_group = 1;
  int topk_group = 1;

  // Shared experts: DeepSeek's n_shared_experts (one fused MLP, weight 1) or Qwen2's single
  // shared expert behind a sigmoid gate.
  int n_shared_experts = 0;
  int shared_expert_intermediate_size = 0;

  // Which layers are MoE.
  int first_k_dense_replace = 0;  // DeepSeek
  int moe_layer_freq = 1;         // DeepSeek
  int decoder_sparse_step = 1;    // Qwen
  std::vector<int> mlp_only_layers;  // Qwen

  float capacity_factor = 0.0f;  // Switch: expert capacity factor (0 = unlimited)

  bool IsMoeLayer(int layer) const;
  // Whether `layer` has an always-on MLP: the shared expert(s) of an MoE layer or the MLP of a
  // dense layer. It is addressed as expert id `num_experts` (kAlwaysOn below).
  bool HasAlwaysOn(int layer) const;
  int AlwaysOnIntermediate(int layer) const;
  // Qwen2's shared expert is scaled by sigmoid(shared_expert_gate · x).
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

// The family's defaults (routing, layout) for a config of the given dims, for generators/tests.
ModelConfig DefaultConfig(Family family, int hidden, int moe_intermediate, int experts, int top_k,
                          int layers);

}  // namespace moe::experts
