// router/expert_placement.cc
#include "router/expert_placement.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"

namespace moe::router {

double PlacementImbalance(const std::vector<std::vector<double>>& load,
                          const std::vector<std::vector<std::vector<int>>>& replicas, int num_workers,
                          const std::vector<bool>& counted) {
  int denominator = num_workers;
  if (!counted.empty()) denominator = static_cast<int>(std::count(counted.begin(), counted.end(), true));
  double weighted = 0, total = 0;
  for (size_t l = 0; l < load.size() && l < replicas.size(); ++l) {
    std::vector<double> worker_load(num_workers, 0.0);
    double layer_total = 0;
    for (size_t e = 0; e < load[l].size() && e < replicas[l].size(); ++e) {
      if (replicas[l][e].empty()) continue;
      const double share = load[l][e] / static_cast<double>(replicas[l][e].size());
      for (int w : replicas[l][e]) worker_load[w] += share;
      layer_total += load[l][e];
    }
    if (layer_total <= 0 || denominator <= 0) continue;
    const double mean = layer_total / denominator;
    weighted += layer_total * (*std::max_element(worker_load.begin(), worker_load.end()) / mean);
    total += layer_total;
  }
  return total > 0 ? weighted / total : 1.0;
}

PlacementResult PlanPlacement(const PlacementProblem& p) {
  PlacementResult result;
  const int workers = p.num_workers;
  const auto usable = [&](int w) { return p.usable.empty() || p.usable[w]; };
  std::vector<int64_t> free_slots(workers, -1);
  for (int w = 0; w < workers; ++w) {
    if (!p.slots.empty()) free_slots[w] = p.slots[w];
  }
  int usable_workers = 0;
  for (int w = 0; w < workers; ++w) usable_workers += usable(w) ? 1 : 0;
  if (usable_workers == 0) {
    result.error = "no worker may be given experts";
    return result;
  }
  result.replicas.resize(p.load.size());
  for (size_t l = 0; l < p.load.size(); ++l) {
    const std::vector<double>& load = p.load[l];
    const int experts = static_cast<int>(load.size());
    // 1. Replica counts: the redundant slots go one by one to the most loaded per replica.
    std::vector<int> count(experts, 1);
    for (int r = 0; r < p.redundant; ++r) {
      int best = -1;
      for (int e = 0; e < experts; ++e) {
        if (count[e] >= usable_workers) continue;
        if (best < 0 || load[e] / count[e] > load[best] / count[best]) best = e;
      }
      if (best < 0 || load[best] <= 0) break;
      ++count[best];
    }
    // 2. Start from what is placed now: keep the replicas of usable workers, dropping those past
    // the new count from the most loaded workers.
    std::vector<std::vector<int>>& chosen = result.replicas[l];
    chosen.assign(experts, {});
    std::vector<double> worker_load(workers, 0.0);
    std::vector<int> worker_experts(workers, 0);  // of this layer: spreads unloaded experts too
    const auto share = [&](int e) { return load[e] / count[e]; };
    for (int e = 0; e < experts; ++e) {
      if (l >= p.current.size() || static_cast<size_t>(e) >= p.current[l].size()) continue;
      for (int w : p.current[l][e]) {
        if (w < 0 || w >= workers || !usable(w) || free_slots[w] == 0) continue;
        if (std::find(chosen[e].begin(), chosen[e].end(), w) != chosen[e].end()) continue;
        chosen[e].push_back(w);
        if (free_slots[w] > 0) --free_slots[w];
      }
    }
    for (int e = 0; e < experts; ++e) {
      while (static_cast<int>(chosen[e].size()) > count[e]) {
        // The replica on the worker with the most experts of this layer goes (loads come next).
        auto most = std::max_element(chosen[e].begin(), chosen[e].end(), [&](int a, int b) {
          return static_cast<int>(worker_experts[a]) < static_cast<int>(worker_experts[b]);
        });
        if (free_slots[*most] >= 0) ++free_slots[*most];
        chosen[e].erase(most);
      }
      for (int w : chosen[e]) ++worker_experts[w];
    }
    for (int e = 0; e < experts; ++e) {
      for (int w : chosen[e]) worker_load[w] += share(e);
    }
    // 3. The missing replicas, heaviest first (ties: lower expert first), each onto the least
    // loaded worker with a free slot that does not hold it yet.
    std::vector<int> order(experts);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return share(a) > share(b); });
    const auto least_loaded = [&](int e, int exclude) {
      int best = -1;
      for (int w = 0; w < workers; ++w) {
        if (w == exclude || !usable(w) || free_slots[w] == 0) continue;
        if (std::find(chosen[e].begin(), chosen[e].end(), w) != chosen[e].end()) continue;
        // Load first; an expert with no load goes where this layer has fewest experts.
        if (best < 0 || std::make_pair(worker_load[w], worker_experts[w]) <
                            std::make_pair(worker_load[best], worker_experts[best])) {
          best = w;
        }
      }
      return best;
    };
    for (int e : order) {
      while (static_cast<int>(chosen[e].size()) < count[e]) {
        const int w = least_loaded(e, -1);
        if (w < 0) {
          if (chosen[e].empty()) {
            result.replicas.clear();
            result.error = absl::StrCat("no worker has a free slot for expert ", e, " of layer index ", l);
            return result;
          }
          break;  // fewer replicas than planned: not enough workers with room
        }
        chosen[e].push_back(w);
        worker_load[w] += share(e);
        ++worker_experts[w];
        if (free_slots[w] > 0) --free_slots[w];
      }
    }
    // 4. Local search: move a replica off the most loaded worker while that lowers the larger of
    // the two loads involved (each move strictly lowers the sum of squared loads: it ends).
    for (int step = 0; step < 4 * experts * workers; ++step) {
      const int from = static_cast<int>(std::max_element(worker_load.begin(), worker_load.end()) - worker_load.begin());
      int best_e = -1, best_to = -1;
      double best_peak = worker_load[from];
      for (int e = 0; e < experts; ++e) {
        if (share(e) <= 0 || std::find(chosen[e].begin(), chosen[e].end(), from) == chosen[e].end()) continue;
        const int to = least_loaded(e, from);
        if (to < 0) continue;
        const double peak = std::max(worker_load[from] - share(e), worker_load[to] + share(e));
        if (peak < best_peak - 1e-9 * std::max(1.0, worker_load[from])) {
          best_peak = peak;
          best_e = e;
          best_to = to;
        }
      }
      if (best_e < 0) break;
      std::replace(chosen[best_e].begin(), chosen[best_e].end(), from, best_to);
      worker_load[from] -= share(best_e);
      worker_load[best_to] += share(best_e);
      --worker_experts[from];
      ++worker_experts[best_to];
      if (free_slots[from] >= 0) ++free_slots[from];
      if (free_slots[best_to] > 0) --free_slots[best_to];
    }
    for (std::vector<int>& w : chosen) std::sort(w.begin(), w.end());
  }
  for (size_t l = 0; l < result.replicas.size(); ++l) {
    for (size_t e = 0; e < result.replicas[l].size(); ++e) {
      const std::vector<int> none;
      const std::vector<int>& now =
          l < p.current.size() && e < p.current[l].size() ? p.current[l][e] : none;
      const std::vector<int>& next = result.replicas[l][e];
      for (int w : next) result.moves += std::find(now.begin(), now.end(), w) == now.end();
      for (int w : now) result.moves += std::find(next.begin(), next.end(), w) == next.end();
    }
  }
  result.imbalance_before = PlacementImbalance(p.load, p.current, workers, p.usable);
  result.imbalance_after = PlacementImbalance(p.load, result.replicas, workers, p.usable);
  return result;
}

}  // namespace moe::router
