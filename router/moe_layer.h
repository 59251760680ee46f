// router/moe_layer.h
// One layer run in-process: gate → dispatch plan → experts (routed and always-on) on a local
// backend → combine. A dense layer is the same with only the always-on MLP. This is the
// numerical reference for everything networked. Immutable after construction;
// Forward is thread-safe (the backend serialises its own work).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "router/gate.h"
#include "router/routing.h"

namespace moe::router {

class MoeLayer {
 public:
  MoeLayer(int layer, Gate gate) : layer_(layer), gate_(std::move(gate)) {}

  int layer() const { return layer_; }
  const Gate& gate() const { return gate_; }

  // Runs `num_tokens` rows of `x` ([num_tokens, H] f32) through the layer with experts on
  // `backend`; returns [num_tokens, H] f32 and, if `routing` is not null, the routing used.
  // Errors of Gate::Route and of the backend (NOT_FOUND for an expert it does not host).
  absl::StatusOr<std::vector<float>> Forward(absl::Span<const float> x, int64_t num_tokens,
                                             experts::ExpertBackend& backend,
                                             Routing* routing = nullptr) const;
  // The same after gating: runs the experts of `routing` (from gate().Route) and combines.
  absl::StatusOr<std::vector<float>> Run(absl::Span<const float> x, int64_t num_tokens, const Routing& routing,
                                         experts::ExpertBackend& backend) const;

 private:
  int layer_;
  Gate gate_;
};

}  // namespace moe::router
