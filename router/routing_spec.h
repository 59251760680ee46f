// router/routing_spec.h
// How one layer turns gate logits into (expert, weight) pairs: a declarative description built
// from config.json (the family's own math, routing.md) and optionally overridden by router
// flags (policies from the MoE literature). Read by Gate; reported by GetModelInfo.
// A plain value; thread-compatible.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "model/model_config.h"

namespace moe::router {

struct RoutingSpec {
  enum class Scoring { kSoftmax, kSigmoid };
  enum class GroupScore { kNone, kMax, kTop2Sum };  // DeepSeek-V2 group_limited_greedy, V3 noaux_tc
  enum class Policy { kTokenChoice, kExpertChoice, kBalanced };
  enum class Overflow { kDrop, kReroute };

  bool moe = true;        // false: a dense layer (only the always-on MLP)
  int num_experts = 0;    // routed experts
  int top_k = 0;
  Scoring scoring = Scoring::kSoftmax;
  bool selection_bias = false;  // DeepSeek-V3 e_score_correction_bias, used for selection only
  int n_group = 1;
  int topk_group = 1;
  GroupScore group_score = GroupScore::kNone;
  bool norm_topk_prob = true;
  bool norm_needs_topk_above_one = false;  // DeepSeek: renormalise only when top_k > 1
  float norm_epsilon = 0.0f;               // DeepSeek adds 1e-20 to the denominator
  float norm_floor = 0.0f;                 // ERNIE: the denominator is at least moe_norm_min
  float norm_p = 1.0f;                     // DBRX: the denominator is the chosen weights' p-norm
  // LongCat-Flash: zero (identity) experts, ids [num_experts, num_experts + zero_experts) of the
  // gate; a token's weight on them multiplies its own input (Routing::identity_weights).
  int zero_experts = 0;
  float routed_scaling_factor = 1.0f;
  bool scale_only_without_norm = false;    // DeepSeek-V2 scales only when it does not renormalise
  bool weight_on_input = false;            // Llama 4: y = Σ E_i(w_i·x) (Routing::weight_on_input)
  // PhiMoE: SparseMixer top-2 on the raw logits (router/sparsemixer.h) with this ε instead of
  // top-k of the scores; `scoring` then only feeds the load statistics.
  bool logit_bias = false;  // gpt-oss: a bias [E] added to the router logits (GateWeights::logit_bias)
  bool sparsemixer = false;
  float sparsemixer_eps = 0.0f;
  // Always-on MLP (shared experts, or the MLP of a dense layer), expert id num_experts.
  bool always_on = false;
  bool shared_gate = false;  // Qwen2: the always-on output is scaled by sigmoid(w · x)

  Policy policy = Policy::kTokenChoice;
  float capacity_factor = 0.0f;  // token choice: 0 = unlimited; expert choice: 0 means 1
  Overflow overflow = Overflow::kDrop;
  float noise_std = 0.0f;  // noisy top-k (Shazeer et al. 2017): logits += noise_std · N(0, 1)
  uint64_t noise_seed = 0;

  // The family's own routing for `layer` of `config`.
  static RoutingSpec FromConfig(const model::ModelConfig& config, int layer);
  // "sigmoid + bias, top-2 of 4 groups (top-2 sum), top-8 of 256, renormalised, ×2.5, shared".
  std::string DebugString() const;
  absl::string_view ScoringName() const { return scoring == Scoring::kSoftmax ? "softmax" : "sigmoid"; }
  absl::string_view PolicyName() const;
};

// Router flags that override the family's routing for every MoE layer.
struct RoutingOverrides {
  std::optional<RoutingSpec::Policy> policy;
  std::optional<float> capacity_factor;
  std::optional<RoutingSpec::Overflow> overflow;
  std::optional<int> top_k;  // dense mode: top_k = num_experts
  bool dense = false;        // shorthand for top_k = num_experts
  std::optional<bool> norm_topk_prob;
  std::optional<float> noise_std;
  std::optional<uint64_t> noise_seed;

  // Applies the overrides to an MoE layer's spec. INVALID_ARGUMENT naming the flag when a value
  // is out of range for the layer (e.g. top_k > num_experts, negative capacity factor).
  absl::Status ApplyTo(RoutingSpec& spec) const;
};

// Parses policy / overflow flag values; INVALID_ARGUMENT naming the accepted values.
absl::StatusOr<RoutingSpec::Policy> ParsePolicy(absl::string_view name);
absl::StatusOr<RoutingSpec::Overflow> ParseOverflow(absl::string_view name);

}  // namespace moe::router
