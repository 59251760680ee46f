// router/routing_spec.h
// How one MoE layer turns gate logits into (expert, weight) pairs. Derived from config.json;
// issue #4 grows it to every family (sigmoid scoring, groups, bias, scaling, shared experts).
// A plain value; thread-compatible.
#pragma once

#include <string>

#include "experts/model_config.h"

namespace moe::router {

struct RoutingSpec {
  enum class Scoring { kSoftmax };
  int num_experts = 0;
  int top_k = 0;
  Scoring scoring = Scoring::kSoftmax;
  bool norm_topk_prob = true;  // Mixtral always renormalises the top-k probabilities
  float routed_scaling_factor = 1.0f;

  // The spec the model family of `config` prescribes.
  static RoutingSpec FromConfig(const experts::ModelConfig& config);
  // "softmax top-2 of 8, renormalised".
  std::string DebugString() const;
};

}  // namespace moe::router
