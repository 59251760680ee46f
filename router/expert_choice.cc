// router/expert_choice.cc
#include "router/expert_choice.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace moe::router {

int64_t ExpertChoiceCapacity(const RoutingSpec& spec, int64_t tokens) {
  const double factor = spec.capacity_factor > 0 ? spec.capacity_factor : 1.0;
  const int64_t c = static_cast<int64_t>(std::ceil(factor * double(tokens) * spec.top_k / spec.num_experts));
  return std::clamp<int64_t>(c, 1, tokens);
}

Routing ExpertChoice(const RoutingSpec& spec, absl::Span<const float> selection, absl::Span<const float> scores,
                     int64_t tokens) {
  const int e = spec.num_experts;
  const int64_t capacity = ExpertChoiceCapacity(spec, tokens);
  std::vector<std::vector<std::pair<int32_t, float>>> per_token(tokens);
  std::vector<int64_t> order(tokens);
  for (int x = 0; x < e; ++x) {
    std::iota(order.begin(), order.end(), 0);
    // The top-C tokens for expert x, ties to the lower token.
    std::partial_sort(order.begin(), order.begin() + capacity, order.end(), [&](int64_t a, int64_t b) {
      const float sa = selection[a * e + x], sb = selection[b * e + x];
      return sa > sb || (sa == sb && a < b);
    });
    for (int64_t i = 0; i < capacity; ++i) {
      const int64_t t = order[i];
      if (selection[t * e + x] == -INFINITY) continue;
      per_token[t].push_back({x, scores[t * e + x] * spec.routed_scaling_factor});
    }
  }
  Routing r;
  r.num_tokens = tokens;
  r.num_experts = e;
  r.dropped.assign(e, 0);
  r.rerouted.assign(e, 0);
  r.token_offsets.push_back(0);
  for (auto& pairs : per_token) {
    std::stable_sort(pairs.begin(), pairs.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    for (const auto& [x, w] : pairs) {
      r.experts.push_back(x);
      r.weights.push_back(w);
    }
    r.token_offsets.push_back(static_cast<int64_t>(r.experts.size()));
  }
  return r;
}

}  // namespace moe::router
