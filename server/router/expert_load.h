// server/router/expert_load.h
// Token-expert pairs routed per (MoE layer, routed expert) since the last Take: the load the
// placement controller plans from. Record is lock-free (relaxed atomic adds, one per expert a
// routing touches); Take swaps the counts to zero. Owned by the router's main; fed by
// MoeServiceImpl after gating. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "model/model_config.h"
#include "router/routing.h"

namespace moe::server {

class ExpertLoad {
 public:
  explicit ExpertLoad(const model::ModelConfig& config);

  void Record(int layer, const router::Routing& routing);
  // Per MoE layer (ascending: moe_layers()), per routed expert: pairs since the last Take.
  std::vector<std::vector<double>> Take();
  const std::vector<int>& moe_layers() const { return moe_layers_; }

 private:
  int num_experts_;
  std::vector<int> moe_layers_;
  std::vector<int> index_of_layer_;  // [layer] → index into counts_, −1 for dense layers
  std::unique_ptr<std::atomic<int64_t>[]> counts_;  // [moe layer index × num_experts]
};

}  // namespace moe::server
