// router/routing.cc
#include "router/routing.h"

namespace moe::router {
namespace {

template <typename T>
void AddInto(std::vector<T>& sum, const std::vector<T>& part) {
  if (sum.size() < part.size()) sum.resize(part.size(), T{0});
  for (size_t i = 0; i < part.size(); ++i) sum[i] += part[i];
}

}  // namespace

Routing Concatenate(absl::Span<const Routing* const> parts) {
  Routing all;
  all.token_offsets.push_back(0);
  for (const Routing* r : parts) {
    all.num_experts = r->num_experts;
    all.weight_on_input = r->weight_on_input;
    const int64_t base = all.token_offsets.back();
    for (int64_t t = 1; t <= r->num_tokens; ++t) all.token_offsets.push_back(base + r->token_offsets[t]);
    all.num_tokens += r->num_tokens;
    all.experts.insert(all.experts.end(), r->experts.begin(), r->experts.end());
    all.weights.insert(all.weights.end(), r->weights.begin(), r->weights.end());
    if (!r->identity_weights.empty() || !all.identity_weights.empty()) {
      all.identity_weights.resize(static_cast<size_t>(all.num_tokens - r->num_tokens), 0.0f);
      if (r->identity_weights.empty()) {
        all.identity_weights.resize(static_cast<size_t>(all.num_tokens), 0.0f);
      } else {
        all.identity_weights.insert(all.identity_weights.end(), r->identity_weights.begin(), r->identity_weights.end());
      }
    }
    AddInto(all.dropped, r->dropped);
    AddInto(all.rerouted, r->rerouted);
    AddInto(all.score_sums, r->score_sums);
  }
  return all;
}

Routing Slice(const Routing& routing, int64_t begin, int64_t end) {
  Routing part;
  part.num_tokens = end - begin;
  part.num_experts = routing.num_experts;
  part.weight_on_input = routing.weight_on_input;
  const int64_t first = routing.token_offsets[begin], last = routing.token_offsets[end];
  part.token_offsets.reserve(static_cast<size_t>(part.num_tokens + 1));
  for (int64_t t = begin; t <= end; ++t) part.token_offsets.push_back(routing.token_offsets[t] - first);
  part.experts.assign(routing.experts.begin() + first, routing.experts.begin() + last);
  part.weights.assign(routing.weights.begin() + first, routing.weights.begin() + last);
  if (!routing.identity_weights.empty()) {
    part.identity_weights.assign(routing.identity_weights.begin() + begin, routing.identity_weights.begin() + end);
  }
  return part;
}

}  // namespace moe::router
