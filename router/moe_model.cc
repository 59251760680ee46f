// router/moe_model.cc
#include "router/moe_model.h"

#include "absl/strings/str_cat.h"
#include "experts/status_macros.h"
#include "experts/tensor_names.h"

namespace moe::router {

absl::StatusOr<std::unique_ptr<MoeModel>> MoeModel::Create(const experts::Checkpoint& checkpoint) {
  std::unique_ptr<MoeModel> model(new MoeModel());
  model->config_ = checkpoint.config();
  const experts::ModelConfig& c = model->config_;
  const RoutingSpec spec = RoutingSpec::FromConfig(c);
  for (int layer = 0; layer < c.num_layers; ++layer) {
    ASSIGN_OR_RETURN(experts::Tensor weight,
                     checkpoint.GetWithShape(experts::GateWeightName(layer),
                                             {c.num_experts, c.hidden_size}));
    ASSIGN_OR_RETURN(Gate gate, Gate::Create(weight, spec));
    model->layers_.emplace_back(layer, std::move(gate));
  }
  return model;
}

absl::StatusOr<const MoeLayer*> MoeModel::layer(int64_t layer) const {
  if (layer < 0 || layer >= num_layers()) {
    return absl::NotFoundError(absl::StrCat("layer ", layer, " not found: the model has ",
                                            num_layers(), " MoE layers (0..", num_layers() - 1, ")"));
  }
  return &layers_[layer];
}

}  // namespace moe::router
