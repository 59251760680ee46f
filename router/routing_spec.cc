// router/routing_spec.cc
#include "router/routing_spec.h"

#include "absl/strings/str_cat.h"

namespace moe::router {

RoutingSpec RoutingSpec::FromConfig(const experts::ModelConfig& config) {
  RoutingSpec spec;
  spec.num_experts = config.num_experts;
  spec.top_k = config.top_k;
  return spec;
}

std::string RoutingSpec::DebugString() const {
  return absl::StrCat("softmax top-", top_k, " of ", num_experts,
                      norm_topk_prob ? ", renormalised" : "",
                      routed_scaling_factor != 1.0f ? absl::StrCat(", scaled by ", routed_scaling_factor) : "");
}

}  // namespace moe::router
