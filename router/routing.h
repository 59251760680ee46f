// router/routing.h
// The result of gating one batch: for each token the experts it goes to and their combine
// weights, stored token-major (CSR), so policies that give a token a variable number of experts
// (capacity drops, expert choice) fit the same type. Expert id num_experts is the layer's
// always-on MLP (shared experts or a dense layer), when it has one. Also what the policy did:
// pairs dropped or rerouted per expert, and the gate scores summed per expert (for the auxiliary
// load-balance statistic). Built by Gate; read by DispatchPlan, metrics and callers
// who ask for the routing; concatenated by the router's batcher. A plain value; thread-compatible.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace moe::router {

struct Routing {
  int64_t num_tokens = 0;
  int num_experts = 0;                 // routed experts; id num_experts = always-on
  std::vector<int64_t> token_offsets;  // [num_tokens + 1]; token t owns [offsets[t], offsets[t+1])
  std::vector<int32_t> experts;        // expert id of each pair
  std::vector<float> weights;          // combine weight of each pair
  // Llama 4: a routed pair's weight scales the expert's input instead, y = Σ E_i(w_i·x); its
  // output is then added with weight 1 (DispatchPlan applies it). Always-on pairs are not scaled.
  bool weight_on_input = false;
  // LongCat-Flash's zero (identity) experts: per token the summed weight of the zero experts it
  // chose, which are not pairs; Combine adds identity_weights[t]·x_t. Empty when the layer has none.
  std::vector<float> identity_weights;
  std::vector<int64_t> dropped;        // per routed expert: pairs refused for lack of capacity
  std::vector<int64_t> rerouted;       // per routed expert: pairs moved elsewhere for lack of capacity
  std::vector<double> score_sums;      // per routed expert: Σ over tokens of its gate score (load stats)

  int64_t num_pairs() const { return static_cast<int64_t>(experts.size()); }
  absl::Span<const int32_t> ExpertsOf(int64_t token) const {
    return absl::MakeConstSpan(experts).subspan(token_offsets[token],
                                                token_offsets[token + 1] - token_offsets[token]);
  }
  absl::Span<const float> WeightsOf(int64_t token) const {
    return absl::MakeConstSpan(weights).subspan(token_offsets[token],
                                                token_offsets[token + 1] - token_offsets[token]);
  }
};

// The routings of several batches of one layer as one: tokens renumbered in order, per-expert
// statistics summed. All parts must have the same num_experts.
Routing Concatenate(absl::Span<const Routing* const> parts);

// Tokens [begin, end) of `routing` as a routing of their own (renumbered from 0): their pairs,
// weights and identity weights. The per-expert statistics (dropped, rerouted, score sums) belong
// to the whole gating and are left empty. Used to cut one dispatch into micro-batches.
// Requires 0 <= begin <= end <= routing.num_tokens.
Routing Slice(const Routing& routing, int64_t begin, int64_t end);

}  // namespace moe::router
