// experts/tensor_names.cc
#include "experts/tensor_names.h"

#include "absl/strings/str_cat.h"

namespace moe::experts {
namespace {

const char* HfName(Projection p) {
  return p == Projection::kGate ? "gate_proj" : p == Projection::kUp ? "up_proj" : "down_proj";
}

}  // namespace

std::string GateWeightName(const ModelConfig& config, int layer) {
  if (config.family == Family::kMixtral) return absl::StrCat("model.layers.", layer, ".block_sparse_moe.gate.weight");
  return absl::StrCat("model.layers.", layer, ".mlp.gate.weight");
}

std::string GateBiasName(int layer) {
  return absl::StrCat("model.layers.", layer, ".mlp.gate.e_score_correction_bias");
}

std::string ExpertWeightName(const ModelConfig& config, int layer, int expert, Projection projection) {
  if (config.family == Family::kMixtral) {
    const char* w = projection == Projection::kGate ? "w1" : projection == Projection::kUp ? "w3" : "w2";
    return absl::StrCat("model.layers.", layer, ".block_sparse_moe.experts.", expert, ".", w, ".weight");
  }
  return absl::StrCat("model.layers.", layer, ".mlp.experts.", expert, ".", HfName(projection), ".weight");
}

std::string AlwaysOnWeightName(const ModelConfig& config, int layer, Projection projection) {
  if (!config.IsMoeLayer(layer)) return absl::StrCat("model.layers.", layer, ".mlp.", HfName(projection), ".weight");
  const char* block = config.family == Family::kQwen2Moe ? "shared_expert" : "shared_experts";
  return absl::StrCat("model.layers.", layer, ".mlp.", block, ".", HfName(projection), ".weight");
}

std::string SharedGateName(int layer) { return absl::StrCat("model.layers.", layer, ".mlp.shared_expert_gate.weight"); }

}  // namespace moe::experts
