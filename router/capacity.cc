// router/capacity.cc
#include "router/capacity.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moe::router {

int64_t ExpertCapacity(const RoutingSpec& spec, int64_t tokens) {
  const double c = std::ceil(double(spec.capacity_factor) * double(tokens) * spec.top_k / spec.num_experts);
  return std::max<int64_t>(1, static_cast<int64_t>(c));
}

void ApplyCapacity(const RoutingSpec& spec, absl::Span<const float> selection, absl::Span<const float> scores,
                   absl::Span<const float> weight_factor, Routing& routing) {
  const int64_t n = routing.num_tokens;
  const int e = spec.num_experts;
  const int64_t capacity = ExpertCapacity(spec, n);
  std::vector<int64_t> load(e, 0);
  std::vector<bool> keep(routing.experts.size(), true);
  for (int rank = 0; rank < spec.top_k; ++rank) {
    for (int64_t t = 0; t < n; ++t) {
      const int64_t p = routing.token_offsets[t] + rank;
      if (p >= routing.token_offsets[t + 1]) continue;
      const int32_t expert = routing.experts[p];
      if (load[expert] < capacity) {
        ++load[expert];
        continue;
      }
      if (spec.overflow == RoutingSpec::Overflow::kReroute) {
        // The token's other experts, best selection score first (ties: lower id).
        const float* sel = selection.data() + t * e;
        std::vector<int32_t> order(e);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return sel[a] > sel[b]; });
        auto taken = routing.ExpertsOf(t);
        for (int32_t alt : order) {
          if (sel[alt] == -INFINITY) break;
          if (load[alt] >= capacity || std::find(taken.begin(), taken.end(), alt) != taken.end()) continue;
          ++load[alt];
          ++routing.rerouted[expert];
          routing.experts[p] = alt;
          routing.weights[p] = scores[t * e + alt] * weight_factor[t];
          break;
        }
        if (routing.experts[p] != expert) continue;
      }
      ++routing.dropped[expert];
      keep[p] = false;
    }
  }
  // Compact the pairs that remain, token by token.
  int64_t out = 0;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t begin = routing.token_offsets[t], end = routing.token_offsets[t + 1];
    routing.token_offsets[t] = out;
    for (int64_t p = begin; p < end; ++p) {
      if (!keep[p]) continue;
      routing.experts[out] = routing.experts[p];
      routing.weights[out] = routing.weights[p];
      ++out;
    }
  }
  routing.token_offsets[n] = out;
  routing.experts.resize(out);
  routing.weights.resize(out);
}

}  // namespace moe::router
