// experts/expert_weights.cc
#include "experts/expert_weights.h"

#include "absl/strings/str_cat.h"
#include "experts/status_macros.h"
#include "experts/tensor_names.h"

namespace moe::experts {

absl::StatusOr<ExpertWeights> LoadExpertWeights(const Checkpoint& checkpoint, ExpertKey key) {
  const ModelConfig& c = checkpoint.config();
  if (key.layer < 0 || key.layer >= c.num_layers || key.expert < 0 ||
      key.expert >= c.num_experts) {
    return absl::NotFoundError(absl::StrCat("expert ", key.expert, " of layer ", key.layer,
                                            " is outside the model (", c.num_layers, " layers, ",
                                            c.num_experts, " experts)"));
  }
  const int64_t h = c.hidden_size;
  const int64_t i = c.intermediate_size;
  ExpertWeights w;
  w.key = key;
  ASSIGN_OR_RETURN(w.w1, checkpoint.GetWithShape(
                             ExpertWeightName(key.layer, key.expert, Projection::kW1), {i, h}));
  ASSIGN_OR_RETURN(w.w3, checkpoint.GetWithShape(
                             ExpertWeightName(key.layer, key.expert, Projection::kW3), {i, h}));
  ASSIGN_OR_RETURN(w.w2, checkpoint.GetWithShape(
                             ExpertWeightName(key.layer, key.expert, Projection::kW2), {h, i}));
  return w;
}

std::vector<ExpertKey> AllExperts(const ModelConfig& config) {
  return ExpertRange(config, 0, config.num_experts - 1);
}

std::vector<ExpertKey> ExpertRange(const ModelConfig& config, int first, int last) {
  std::vector<ExpertKey> keys;
  for (int layer = 0; layer < config.num_layers; ++layer) {
    for (int e = first; e <= last; ++e) keys.push_back({layer, e});
  }
  return keys;
}

}  // namespace moe::experts
