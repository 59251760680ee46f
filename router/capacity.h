// router/capacity.h
// Expert capacity for token-choice routing: at most C = ⌈capacity_factor · n · k / E⌉ pairs per
// expert per step, assigned rank by rank (every token's first choice, then second, ...) in token
// order. A pair over capacity is dropped (it contributes nothing; weights are not renormalised)
// or rerouted to the token's next-best expert with room (its weight follows that expert's score).
// Called by Gate. Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "router/routing.h"
#include "router/routing_spec.h"

namespace moe::router {

// Capacity per expert for `tokens` tokens under `spec` (capacity_factor > 0).
int64_t ExpertCapacity(const RoutingSpec& spec, int64_t tokens);

// Rewrites the routed pairs of `routing` (k per token, no always-on pairs yet) so no expert
// exceeds its capacity, counting drops and reroutes per expert. `selection` [n, E] orders the
// alternatives (-Inf = not allowed); `scores` [n, E] gives rerouted weights, times the token's
// `weight_factor` (its normalisation and scaling).
void ApplyCapacity(const RoutingSpec& spec, absl::Span<const float> selection, absl::Span<const float> scores,
                   absl::Span<const float> weight_factor, Routing& routing);

}  // namespace moe::router
