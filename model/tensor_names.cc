// model/tensor_names.cc
#include "model/tensor_names.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace moe::model {
namespace {

std::string Fill(const std::string& pattern, int layer, int expert = -1, absl::string_view projection = "") {
  if (pattern.empty()) return "";
  return absl::StrReplaceAll(pattern, {{"{L}", absl::StrCat(layer)},
                                       {"{E}", absl::StrCat(expert)},
                                       {"{P}", projection}});
}

}  // namespace

std::string GateWeightName(const ModelConfig& config, int layer) { return Fill(config.names.gate, layer); }

std::string GateBiasName(const ModelConfig& config, int layer) { return Fill(config.names.gate_bias, layer); }

std::string ExpertWeightName(const ModelConfig& config, int layer, int expert, Projection projection) {
  return Fill(config.names.expert, layer, expert, config.names.expert_projections[static_cast<int>(projection)]);
}

std::string ExpertBiasName(const ModelConfig& config, int layer, int expert, Projection projection) {
  return Fill(config.names.expert_bias, layer, expert, config.names.expert_projections[static_cast<int>(projection)]);
}

std::string StackedGateUpName(const ModelConfig& config, int layer) {
  return Fill(config.names.stacked_gate_up, layer);
}

std::string StackedDownName(const ModelConfig& config, int layer) { return Fill(config.names.stacked_down, layer); }

std::string StackedGateUpBiasName(const ModelConfig& config, int layer) {
  return Fill(config.names.stacked_gate_up_bias, layer);
}

std::string StackedDownBiasName(const ModelConfig& config, int layer) {
  return Fill(config.names.stacked_down_bias, layer);
}

std::string FlatExpertsName(const ModelConfig& config, int layer, Projection projection) {
  const TensorNames& n = config.names;
  return Fill(projection == Projection::kGate ? n.flat_gate : projection == Projection::kUp ? n.flat_up : n.flat_down,
              layer);
}

std::string RouterBiasName(const ModelConfig& config, int layer) { return Fill(config.names.router_bias, layer); }

std::string AlwaysOnWeightName(const ModelConfig& config, int layer, Projection projection) {
  return Fill(config.IsMoeLayer(layer) ? config.names.shared : config.names.dense, layer, -1,
              config.names.mlp_projections[static_cast<int>(projection)]);
}

std::string SharedFusedGateUpName(const ModelConfig& config, int layer) {
  return Fill(config.names.shared_fused_gate_up, layer);
}

std::string SharedFusedDownName(const ModelConfig& config, int layer) {
  return Fill(config.names.shared_fused_down, layer);
}

std::string SharedGateName(const ModelConfig& config, int layer) { return Fill(config.names.shared_gate, layer); }

}  // namespace moe::model
