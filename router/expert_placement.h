// router/expert_placement.h
// Placement of experts on workers from measured load — the idea of DeepSeek's EPLB (expert-
// parallel load balancer), written for independent worker processes: per MoE layer, the hottest
// experts get the redundant replicas (one at a time, to whichever expert has the most load per
// replica); the placement starts from the current one (replicas past an expert's new count
// dropped); the missing replicas are packed, heaviest first, onto the worker with the least load
// of that layer (each expert's load split evenly over its replicas, as the router's
// fewest-calls-in-flight pick spreads it) among those with a free slot not holding it yet; then
// replicas move off the most loaded worker while that lowers the peak. Starting from what is
// placed means a balanced placement is kept and a plan moves few experts; from nothing it is
// greedy longest-first packing. Every expert keeps at least one replica. Layers are balanced one
// by one (each layer's dispatch waits for its slowest worker); memory slots count over all layers.
// Used by the router's placement controller and moe-placement. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe::router {

struct PlacementProblem {
  int num_workers = 0;
  // Per MoE layer (any order), per expert: its load (tokens routed in a window; any scale).
  std::vector<std::vector<double>> load;
  // Per layer, per expert: the workers hosting it now (empty lists for a plan from nothing).
  std::vector<std::vector<std::vector<int>>> current;
  // Per worker: the most experts (over all layers) it may host; -1 = no limit. Empty: no limits.
  std::vector<int64_t> slots;
  // Per worker: whether it may be given experts (up, live placement on). Empty: all.
  std::vector<bool> usable;
  // Extra replicas per layer, beyond one per expert.
  int redundant = 0;
};

struct PlacementResult {
  // Per layer, per expert: the workers to host it, ascending.
  std::vector<std::vector<std::vector<int>>> replicas;
  // Predicted imbalance (max ÷ mean worker load, the layers weighted by their load; 1 = even)
  // of the current placement and of this one.
  double imbalance_before = 0, imbalance_after = 0;
  int64_t moves = 0;  // replicas added plus replicas removed
  std::string error;  // non-empty when no placement fits (too few slots): then nothing else is set
};

PlacementResult PlanPlacement(const PlacementProblem& problem);

// The predicted imbalance of `replicas` under `load` (as PlacementResult says); 1 when nothing is
// loaded. The mean is over the workers `counted` marks (empty: all of them; a worker going away
// is not counted), including those that host nothing of a layer.
double PlacementImbalance(const std::vector<std::vector<double>>& load,
                          const std::vector<std::vector<std::vector<int>>>& replicas, int num_workers,
                          const std::vector<bool>& counted = {});

}  // namespace moe::router
