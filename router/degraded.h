// router/degraded.h
// Degraded mode (--on_expert_unavailable=reroute|drop): what to do with tokens routed to experts
// that no live worker hosts. Reroute is Gate::RouteExcluding; drop removes those experts'
// pairs from a routing (their contribution is lost, the other experts keep their weights). Both
// report, per token, the unavailable experts it had chosen, for the response and the metrics.
// Called by the router service before dispatch; pure functions.
#pragma once

#include <vector>

#include "absl/types/span.h"
#include "router/routing.h"

namespace moe::router {

// Per token, the routed experts of `routing` marked in `excluded` ([E]); empty lists for tokens
// that chose none of them.
std::vector<std::vector<int>> ExcludedChoices(const Routing& routing, absl::Span<const bool> excluded);

// Removes the pairs of `excluded` experts from `routing` (always-on pairs stay).
void DropExperts(absl::Span<const bool> excluded, Routing& routing);

}  // namespace moe::router
