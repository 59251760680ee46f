// server/router/load_window.h
// Per-expert load over a sliding time window (one-second buckets): pairs routed per expert, gate
// scores summed per expert and tokens seen, from which the router exports balancedness
// (mean/max pairs per expert; 1 = perfect) and the Switch auxiliary load-balance loss
// E·Σ fᵢ·Pᵢ (fᵢ: fraction of pairs routed to i, Pᵢ: mean gate score of i; 1 = perfect).
// Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"

namespace moe::server {

class LoadWindow {
 public:
  LoadWindow(int num_experts, absl::Duration window) : num_experts_(num_experts), window_(window) {}

  void Add(absl::Time now, absl::Span<const int64_t> pairs, absl::Span<const double> score_sums, int64_t tokens);

  struct Stats {
    double balancedness = 0;  // 0 when nothing was routed in the window
    double aux_loss = 0;
  };
  Stats Compute(absl::Time now);

 private:
  struct Bucket {
    int64_t second = 0;
    std::vector<int64_t> pairs;
    std::vector<double> score_sums;
    int64_t tokens = 0;
  };
  void Expire(int64_t now_second) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const int num_experts_;
  const absl::Duration window_;
  absl::Mutex mu_;
  std::deque<Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe::server
