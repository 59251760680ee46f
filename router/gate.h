// router/gate.h
// The gate of one MoE layer: logits = X·W_gᵀ (sgemm, f32), then scoring and top-k selection per
// the layer's RoutingSpec. Called by MoeLayer and by the router service for every Forward.
// Immutable after Create; Route is thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/tensor.h"
#include "router/routing.h"
#include "router/routing_spec.h"

namespace moe::router {

class Gate {
 public:
  // `weight` is [E, H] in any dtype (converted to f32 once). INVALID_ARGUMENT if its shape
  // disagrees with spec.num_experts or top_k is outside [1, E].
  static absl::StatusOr<Gate> Create(const experts::Tensor& weight, RoutingSpec spec);

  const RoutingSpec& spec() const { return spec_; }
  int hidden_size() const { return hidden_; }
  int num_experts() const { return spec_.num_experts; }

  // Routes `num_tokens` rows of `x` ([num_tokens, H] f32). INVALID_ARGUMENT if x has the wrong
  // size or a token's logits are not finite (NaN/Inf input), naming the token.
  absl::StatusOr<Routing> Route(absl::Span<const float> x, int64_t num_tokens) const;

 private:
  Gate(RoutingSpec spec, int hidden, std::vector<float> weight)
      : spec_(spec), hidden_(hidden), weight_(std::move(weight)) {}

  RoutingSpec spec_;
  int hidden_ = 0;
  std::vector<float> weight_;  // [E, H]
};

}  // namespace moe::router
