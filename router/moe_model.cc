// router/moe_model.cc
#include "router/moe_model.h"

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "model/tensor_names.h"

namespace moe::router {

absl::StatusOr<std::unique_ptr<MoeModel>> MoeModel::Create(const model::Checkpoint& checkpoint,
                                                          const RoutingOverrides& overrides) {
  std::unique_ptr<MoeModel> model(new MoeModel());
  model->config_ = checkpoint.config();
  const model::ModelConfig& c = model->config_;
  for (int layer = 0; layer < c.num_layers; ++layer) {
    RoutingSpec spec = RoutingSpec::FromConfig(c, layer);
    RETURN_IF_ERROR(overrides.ApplyTo(spec));
    model::Tensor weight, bias, shared_gate;
    GateWeights weights;
    const int64_t scored = c.num_experts + c.zero_experts;  // the gate scores zero experts too
    if (spec.moe) {
      ASSIGN_OR_RETURN(weight, checkpoint.GetWithShape(model::GateWeightName(c, layer), {scored, c.hidden_size}));
      weights.weight = &weight;
    }
    if (spec.selection_bias) {
      // [E], or [1, E] as ERNIE stores it (one group of experts).
      const std::string name = model::GateBiasName(c, layer);
      ASSIGN_OR_RETURN(bias, checkpoint.Get(name));
      if (bias.shape() == std::vector<int64_t>{1, scored}) {
        bias = model::Tensor::Borrow(bias.dtype(), {scored}, bias.raw_data(), nullptr).Clone();
      }
      if (bias.shape() != std::vector<int64_t>{scored}) {
        return absl::InvalidArgumentError(absl::StrCat("tensor '", name, "' has shape ", model::ShapeString(bias.shape()),
                                                       ", expected [", scored, "] or [1, ", scored, "]"));
      }
      weights.bias = &bias;
    }
    model::Tensor logit_bias;
    if (spec.logit_bias) {
      ASSIGN_OR_RETURN(logit_bias, checkpoint.GetWithShape(model::RouterBiasName(c, layer), {scored}));
      weights.logit_bias = &logit_bias;
    }
    if (spec.shared_gate) {
      ASSIGN_OR_RETURN(shared_gate, checkpoint.GetWithShape(model::SharedGateName(c, layer), {1, c.hidden_size}));
      weights.shared_gate = &shared_gate;
    }
    absl::StatusOr<Gate> gate = Gate::Create(spec, c.hidden_size, weights);
    if (!gate.ok()) {
      return absl::Status(gate.status().code(), absl::StrCat("layer ", layer, ": ", gate.status().message()));
    }
    model->layers_.emplace_back(layer, *std::move(gate));
  }
  return model;
}

absl::StatusOr<const MoeLayer*> MoeModel::layer(int64_t layer) const {
  if (layer < 0 || layer >= num_layers()) {
    return absl::NotFoundError(absl::StrCat("layer ", layer, " not found: the model has ", num_layers(),
                                            " layers (0..", num_layers() - 1, ")"));
  }
  return &layers_[layer];
}

}  // namespace moe::router
