// router/expert_choice.h
// Expert-choice routing (Zhou et al. 2022): every expert takes the C tokens with the highest
// scores for it, C = min(n, ⌈capacity_factor · n · k / E⌉); a token may get 0..E experts; the
// combine weights are the scores (times the routed scaling factor). Perfect balance by
// construction. Called by Gate. Pure function; thread-safe.
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "router/routing.h"
#include "router/routing_spec.h"

namespace moe::router {

int64_t ExpertChoiceCapacity(const RoutingSpec& spec, int64_t tokens);

// `selection` [n, E] ranks tokens for each expert (-Inf = never); `scores` [n, E] are the weights.
Routing ExpertChoice(const RoutingSpec& spec, absl::Span<const float> selection, absl::Span<const float> scores,
                     int64_t tokens);

}  // namespace moe::router
