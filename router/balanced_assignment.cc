// router/balanced_assignment.cc
#include "router/balanced_assignment.h"

#include <cmath>
#include <limits>

namespace moe::router {

std::vector<int64_t> BalancedCapacities(int64_t tokens, int experts) {
  std::vector<int64_t> cap(experts, tokens / experts);
  for (int64_t e = 0; e < tokens % experts; ++e) ++cap[e];
  return cap;
}

std::vector<int32_t> BalancedAssignment(absl::Span<const float> affinity, int64_t tokens, int experts) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const int e = experts;
  auto cost = [&](int64_t t, int x) {  // minimise -affinity; -Inf affinity is forbidden
    const float a = affinity[t * e + x];
    return a == -INFINITY ? kInf : -double(a);
  };
  const std::vector<int64_t> capacity = BalancedCapacities(tokens, e);
  std::vector<int32_t> assigned(tokens, -1);
  std::vector<int64_t> load(e, 0);
  std::vector<double> move(e * e);     // cheapest cost of moving a token from expert a to b
  std::vector<int64_t> mover(e * e);   // ... and which token
  std::vector<double> dist(e);
  std::vector<int> pred(e);            // previous expert on the path, -1 = the new token
  for (int64_t t = 0; t < tokens; ++t) {
    std::fill(move.begin(), move.end(), kInf);
    for (int64_t u = 0; u < t; ++u) {
      const int from = assigned[u];
      for (int to = 0; to < e; ++to) {
        if (to == from) continue;
        const double c = cost(u, to) - cost(u, from);
        if (c < move[from * e + to]) {
          move[from * e + to] = c;
          mover[from * e + to] = u;
        }
      }
    }
    // Bellman-Ford from the new token over the expert graph (≤ E rounds: paths are simple).
    for (int x = 0; x < e; ++x) {
      dist[x] = cost(t, x);
      pred[x] = -1;
    }
    for (int round = 0; round < e; ++round) {
      bool changed = false;
      for (int a = 0; a < e; ++a) {
        if (dist[a] == kInf || load[a] < capacity[a]) continue;  // only a full expert pushes on
        for (int b = 0; b < e; ++b) {
          if (move[a * e + b] == kInf) continue;
          const double d = dist[a] + move[a * e + b];
          if (d < dist[b] - 1e-12) {
            dist[b] = d;
            pred[b] = a;
            changed = true;
          }
        }
      }
      if (!changed) break;
    }
    int end = -1;
    for (int x = 0; x < e; ++x) {
      if (load[x] < capacity[x] && dist[x] < kInf && (end < 0 || dist[x] < dist[end])) end = x;
    }
    if (end < 0) break;  // infeasible input (violates REQUIRES)
    // Walk the path back: each hop moves one token from pred[b] to b; the new token enters first.
    ++load[end];
    int b = end;
    for (int hops = 0; pred[b] >= 0 && hops <= e; ++hops) {
      const int a = pred[b];
      assigned[mover[a * e + b]] = b;
      b = a;
    }
    assigned[t] = b;
  }
  return assigned;
}

}  // namespace moe::router
