// router/degraded.cc
#include "router/degraded.h"

namespace moe::router {
namespace {

bool IsExcluded(absl::Span<const bool> excluded, int32_t expert) {
  return expert >= 0 && static_cast<size_t>(expert) < excluded.size() && excluded[expert];
}

}  // namespace

std::vector<std::vector<int>> ExcludedChoices(const Routing& routing, absl::Span<const bool> excluded) {
  std::vector<std::vector<int>> out(static_cast<size_t>(routing.num_tokens));
  for (int64_t t = 0; t < routing.num_tokens; ++t) {
    for (int32_t e : routing.ExpertsOf(t)) {
      if (IsExcluded(excluded, e)) out[t].push_back(e);
    }
  }
  return out;
}

void DropExperts(absl::Span<const bool> excluded, Routing& routing) {
  std::vector<int32_t> experts;
  std::vector<float> weights;
  std::vector<int64_t> offsets = {0};
  for (int64_t t = 0; t < routing.num_tokens; ++t) {
    for (int64_t p = routing.token_offsets[t]; p < routing.token_offsets[t + 1]; ++p) {
      if (IsExcluded(excluded, routing.experts[p])) continue;
      experts.push_back(routing.experts[p]);
      weights.push_back(routing.weights[p]);
    }
    offsets.push_back(static_cast<int64_t>(experts.size()));
  }
  routing.experts = std::move(experts);
  routing.weights = std::move(weights);
  routing.token_offsets = std::move(offsets);
}

}  // namespace moe::router
