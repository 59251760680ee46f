// router/routing_spec.cc
#include "router/routing_spec.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace moe::router {

RoutingSpec RoutingSpec::FromConfig(const model::ModelConfig& c, int layer) {
  RoutingSpec s;
  s.moe = c.IsMoeLayer(layer);
  s.num_experts = c.num_experts;
  s.top_k = c.top_k;
  s.always_on = c.HasAlwaysOn(layer);
  s.shared_gate = c.HasSharedGate(layer);
  if (!s.moe) return s;  // a dense layer has no gate
  s.norm_topk_prob = c.norm_topk_prob;
  s.routed_scaling_factor = c.routed_scaling_factor;
  s.scoring = c.scoring_func == "sigmoid" ? Scoring::kSigmoid : Scoring::kSoftmax;
  s.selection_bias = c.selection_bias;
  s.norm_needs_topk_above_one = c.norm_needs_topk_above_one;
  s.norm_epsilon = c.norm_epsilon;
  s.norm_floor = c.norm_floor;
  s.norm_p = c.norm_p;
  s.zero_experts = c.zero_experts;
  s.scale_only_without_norm = c.scale_only_without_norm;
  s.weight_on_input = c.weight_on_input;
  s.sparsemixer = c.sparsemixer;
  s.logit_bias = !c.names.router_bias.empty();
  s.sparsemixer_eps = c.sparsemixer_eps;
  if (c.topk_method == "group_limited_greedy" || c.topk_method == "noaux_tc") {
    s.n_group = c.n_group;
    s.topk_group = c.topk_group;
    s.group_score = c.topk_method == "noaux_tc" ? GroupScore::kTop2Sum : GroupScore::kMax;
  }
  s.capacity_factor = c.capacity_factor;
  return s;
}

absl::string_view RoutingSpec::PolicyName() const {
  switch (policy) {
    case Policy::kTokenChoice: return "token_choice";
    case Policy::kExpertChoice: return "expert_choice";
    case Policy::kBalanced: return "balanced";
  }
  return "?";
}

std::string RoutingSpec::DebugString() const {
  if (!moe) return "dense MLP";
  std::vector<std::string> parts;
  parts.push_back(absl::StrCat(ScoringName(), selection_bias ? " + selection bias" : ""));
  if (group_score != GroupScore::kNone) {
    parts.push_back(absl::StrCat("top-", topk_group, " of ", n_group, " groups (",
                                 group_score == GroupScore::kMax ? "max" : "top-2 sum", ")"));
  }
  switch (policy) {
    case Policy::kTokenChoice:
      parts.push_back(zero_experts > 0
                          ? absl::StrCat("top-", top_k, " of ", num_experts, " + ", zero_experts, " zero (identity) experts")
                          : absl::StrCat("top-", top_k, " of ", num_experts));
      break;
    case Policy::kExpertChoice:
      parts.push_back(absl::StrCat("expert choice over ", num_experts));
      break;
    case Policy::kBalanced:
      parts.push_back(absl::StrCat("balanced assignment over ", num_experts));
      break;
  }
  if (sparsemixer) parts.push_back(absl::StrCat("sparsemixer eps ", sparsemixer_eps));
  if (norm_topk_prob) {
    parts.push_back(norm_p == 1.0f ? std::string("renormalised") : absl::StrCat("renormalised by the ", norm_p, "-norm"));
  }
  if (weight_on_input) parts.push_back("weight on the input");
  if (routed_scaling_factor != 1.0f) parts.push_back(absl::StrCat("x", routed_scaling_factor));
  if (capacity_factor > 0) {
    parts.push_back(absl::StrCat("capacity factor ", capacity_factor, ", overflow ",
                                 overflow == Overflow::kDrop ? "drop" : "reroute"));
  }
  if (noise_std > 0) parts.push_back(absl::StrCat("noise ", noise_std, " seed ", noise_seed));
  if (always_on) parts.push_back(shared_gate ? "shared expert (sigmoid gate)" : "shared experts");
  return absl::StrJoin(parts, ", ");
}

absl::Status RoutingOverrides::ApplyTo(RoutingSpec& spec) const {
  if (!spec.moe) return absl::OkStatus();
  if (policy) spec.policy = *policy;
  if (capacity_factor) {
    if (*capacity_factor < 0) {
      return absl::InvalidArgumentError(absl::StrCat("--capacity_factor must be >= 0, got ", *capacity_factor));
    }
    spec.capacity_factor = *capacity_factor;
  }
  if (overflow) spec.overflow = *overflow;
  if (norm_topk_prob) spec.norm_topk_prob = *norm_topk_prob;
  if (dense) spec.top_k = spec.num_experts;
  if (top_k) {
    if (*top_k < 1 || *top_k > spec.num_experts) {
      return absl::InvalidArgumentError(absl::StrCat("--top_k must be in [1, ", spec.num_experts, "], got ", *top_k));
    }
    spec.top_k = *top_k;
  }
  if (spec.group_score != RoutingSpec::GroupScore::kNone &&
      spec.top_k > spec.topk_group * (spec.num_experts / spec.n_group)) {
    return absl::InvalidArgumentError(absl::StrCat("--top_k ", spec.top_k, " exceeds the ",
                                                   spec.topk_group * (spec.num_experts / spec.n_group),
                                                   " experts of the kept groups"));
  }
  if (noise_std) {
    if (*noise_std < 0) return absl::InvalidArgumentError("--noise_std must be >= 0");
    spec.noise_std = *noise_std;
  }
  if (noise_seed) spec.noise_seed = *noise_seed;
  return absl::OkStatus();
}

absl::StatusOr<RoutingSpec::Policy> ParsePolicy(absl::string_view name) {
  if (name == "token_choice") return RoutingSpec::Policy::kTokenChoice;
  if (name == "expert_choice") return RoutingSpec::Policy::kExpertChoice;
  if (name == "balanced") return RoutingSpec::Policy::kBalanced;
  return absl::InvalidArgumentError(absl::StrCat("--routing_policy is '", name, "'; expected token_choice, expert_choice or balanced"));
}

absl::StatusOr<RoutingSpec::Overflow> ParseOverflow(absl::string_view name) {
  if (name == "drop") return RoutingSpec::Overflow::kDrop;
  if (name == "reroute") return RoutingSpec::Overflow::kReroute;
  return absl::InvalidArgumentError(absl::StrCat("--overflow is '", name, "'; expected drop or reroute"));
}

}  // namespace moe::router
