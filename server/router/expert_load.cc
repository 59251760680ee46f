// server/router/expert_load.cc
#include "server/router/expert_load.h"

namespace moe::server {

ExpertLoad::ExpertLoad(const model::ModelConfig& config) : num_experts_(config.num_experts) {
  index_of_layer_.assign(config.num_layers, -1);
  for (int layer = 0; layer < config.num_layers; ++layer) {
    if (!config.IsMoeLayer(layer)) continue;
    index_of_layer_[layer] = static_cast<int>(moe_layers_.size());
    moe_layers_.push_back(layer);
  }
  const size_t n = moe_layers_.size() * static_cast<size_t>(num_experts_);
  counts_ = std::make_unique<std::atomic<int64_t>[]>(n);
  for (size_t i = 0; i < n; ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void ExpertLoad::Record(int layer, const router::Routing& routing) {
  if (layer < 0 || layer >= static_cast<int>(index_of_layer_.size()) || index_of_layer_[layer] < 0) return;
  std::atomic<int64_t>* row = counts_.get() + static_cast<size_t>(index_of_layer_[layer]) * num_experts_;
  for (int32_t e : routing.experts) {
    if (e >= 0 && e < num_experts_) row[e].fetch_add(1, std::memory_order_relaxed);
  }
}

std::vector<std::vector<double>> ExpertLoad::Take() {
  std::vector<std::vector<double>> load(moe_layers_.size(), std::vector<double>(num_experts_, 0.0));
  for (size_t l = 0; l < moe_layers_.size(); ++l) {
    for (int e = 0; e < num_experts_; ++e) {
      load[l][e] = static_cast<double>(counts_[l * num_experts_ + e].exchange(0, std::memory_order_relaxed));
    }
  }
  return load;
}

}  // namespace moe::server
