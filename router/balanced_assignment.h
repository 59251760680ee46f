// router/balanced_assignment.h
// Balanced assignment (BASE layers, Lewis et al. 2021): every token gets exactly one expert,
// every expert gets n/E tokens (the first n mod E experts one more), and the total affinity
// Σ s(t, e(t)) is maximal. Solved exactly as a transportation problem by successive shortest
// augmenting paths (the row-by-row Hungarian method) on a graph compressed to the E experts: a
// new token enters at an expert and, if that expert is full, pushes one of its tokens along the
// cheapest chain of moves to an expert with room. O(n²·E + n·E³). Pure function; thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace moe::router {

// Per-expert capacities for `tokens` tokens over `experts` experts.
std::vector<int64_t> BalancedCapacities(int64_t tokens, int experts);

// The expert of each token. `affinity` is [tokens, experts]; -Inf entries are never chosen
// (REQUIRES: every token has enough finite entries for a feasible assignment).
std::vector<int32_t> BalancedAssignment(absl::Span<const float> affinity, int64_t tokens, int experts);

}  // namespace moe::router
