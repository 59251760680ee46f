// router/moe_model.h
// The routing side of a whole model: the config and one MoeLayer (gate + spec) per layer — MoE
// layers and dense MLP layers alike — loaded from the checkpoint's gate tensors only (weights,
// selection bias, shared-expert gate). The router service and moe-client --check use it.
// Immutable after Create; thread-safe.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "model/checkpoint.h"
#include "model/model_config.h"
#include "router/moe_layer.h"
#include "router/routing_spec.h"

namespace moe::router {

class MoeModel {
 public:
  // Loads every layer's gate, with `overrides` applied to every MoE layer's spec. Errors of
  // Checkpoint::GetWithShape / Gate::Create naming the tensor, or of the overrides naming the flag.
  static absl::StatusOr<std::unique_ptr<MoeModel>> Create(const model::Checkpoint& checkpoint,
                                                          const RoutingOverrides& overrides = {});

  const model::ModelConfig& config() const { return config_; }
  int num_layers() const { return static_cast<int>(layers_.size()); }
  // NOT_FOUND naming the layer and the valid range when `layer` is outside the model.
  absl::StatusOr<const MoeLayer*> layer(int64_t layer) const;

 private:
  MoeModel() = default;
  model::ModelConfig config_;
  std::vector<MoeLayer> layers_;
};

}  // namespace moe::router
