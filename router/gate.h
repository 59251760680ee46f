// router/gate.h
// The gate of one layer: logits = X·W_gᵀ (sgemm, f32), then scoring, selection bias, group
// masking and the routing policy of the layer's RoutingSpec, then the always-on pair (shared
// experts / dense MLP, expert id E, weight 1 or Qwen2's sigmoid shared gate). Called by MoeLayer
// and by the router service for every Forward. Immutable after Create; Route is thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/tensor.h"
#include "router/routing.h"
#include "router/routing_spec.h"

namespace moe::router {

struct GateWeights {
  // E counts the zero (identity) experts too, when the spec has them.
  const model::Tensor* weight = nullptr;       // [E, H]; null for a dense layer
  const model::Tensor* bias = nullptr;         // [E] selection bias, when spec.selection_bias
  const model::Tensor* shared_gate = nullptr;  // [1, H], when spec.shared_gate
  const model::Tensor* logit_bias = nullptr;   // [E], when spec.logit_bias
};

class Gate {
 public:
  // Copies the weights to f32. INVALID_ARGUMENT naming the tensor if a shape disagrees with the
  // spec or a tensor the spec needs is missing; for a bad top_k or group setting.
  static absl::StatusOr<Gate> Create(const RoutingSpec& spec, int hidden, const GateWeights& weights);

  const RoutingSpec& spec() const { return spec_; }
  int hidden_size() const { return hidden_; }
  int num_experts() const { return spec_.num_experts; }
  // Slots of the dispatch plan: routed experts plus the always-on one.
  int num_slots() const { return spec_.num_experts + 1; }

  // Routes `num_tokens` rows of `x` ([num_tokens, H] f32). INVALID_ARGUMENT if x has the wrong
  // size or a token's logits are not finite (NaN/Inf input), naming the token.
  absl::StatusOr<Routing> Route(absl::Span<const float> x, int64_t num_tokens) const;
  // The same with the experts marked in `excluded` ([E]) out of reach: their logits are pushed to
  // -1e30 before the softmax/sigmoid (so a softmax renormalises over the others) and they are
  // never selected — each token gets its next-best experts (degraded mode, "reroute").
  // FAILED_PRECONDITION if fewer than top_k experts remain or the policy is not token choice
  // (expert choice, balanced assignment and SparseMixer have no "next best" to fall back on).
  absl::StatusOr<Routing> RouteExcluding(absl::Span<const float> x, int64_t num_tokens,
                                         absl::Span<const bool> excluded) const;

  // The routing scores [n, E] of the routed experts (softmax or sigmoid of the logits over every
  // expert the gate scores, zero experts included; before bias and masks), exposed
  // for load statistics (aux loss). Same errors as Route.
  absl::StatusOr<std::vector<float>> Scores(absl::Span<const float> x, int64_t num_tokens) const;

 private:
  Gate(RoutingSpec spec, int hidden) : spec_(spec), hidden_(hidden) {}
  // Route, with `excluded` experts out of reach (empty: none).
  absl::StatusOr<Routing> RouteImpl(absl::Span<const float> x, int64_t n, absl::Span<const bool> excluded) const;
  // Fills `scores` and `selection` ([n, E]) and returns OK, or the error of a bad token.
  absl::Status Score(absl::Span<const float> x, int64_t n, std::vector<float>& scores,
                     std::vector<float>& selection, absl::Span<const bool> excluded = {}) const;
  Routing TokenChoice(absl::Span<const float> scores, absl::Span<const float> selection, int64_t n) const;
  Routing SparseMixer(absl::Span<const float> logits, int64_t n) const;
  Routing Balanced(absl::Span<const float> scores, absl::Span<const float> selection, int64_t n) const;
  // Normalisation and scaling of a token's chosen scores: the factor they are multiplied by.
  float WeightFactor(absl::Span<const float> chosen_scores) const;
  void AddAlwaysOn(absl::Span<const float> x, Routing& routing) const;
  // Moves a token's zero-expert pairs into routing.identity_weights (their summed weight).
  void SplitZeroExperts(Routing& routing) const;
  // Experts the gate scores: the routed ones, then the zero (identity) ones.
  int scored() const { return spec_.num_experts + spec_.zero_experts; }

  RoutingSpec spec_;
  int hidden_ = 0;
  std::vector<float> weight_;       // [E + zero experts, H]
  std::vector<float> bias_;         // [E] or empty
  std::vector<float> logit_bias_;  // [E] or empty
  std::vector<float> shared_gate_;  // [H] or empty
};

}  // namespace moe::router
