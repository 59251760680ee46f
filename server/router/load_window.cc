// server/router/load_window.cc
#include "server/router/load_window.h"

#include <algorithm>

namespace moe::server {

void LoadWindow::Expire(int64_t now_second) {
  const int64_t oldest = now_second - absl::ToInt64Seconds(window_) + 1;
  while (!buckets_.empty() && buckets_.front().second < oldest) buckets_.pop_front();
}

void LoadWindow::Add(absl::Time now, absl::Span<const int64_t> pairs, absl::Span<const double> score_sums,
                     int64_t tokens) {
  const int64_t second = absl::ToUnixSeconds(now);
  absl::MutexLock lock(&mu_);
  Expire(second);
  if (buckets_.empty() || buckets_.back().second != second) {
    buckets_.push_back({second, std::vector<int64_t>(num_experts_, 0), std::vector<double>(num_experts_, 0.0), 0});
  }
  Bucket& b = buckets_.back();
  for (int e = 0; e < num_experts_ && e < static_cast<int>(pairs.size()); ++e) b.pairs[e] += pairs[e];
  for (int e = 0; e < num_experts_ && e < static_cast<int>(score_sums.size()); ++e) b.score_sums[e] += score_sums[e];
  b.tokens += tokens;
}

LoadWindow::Stats LoadWindow::Compute(absl::Time now) {
  std::vector<int64_t> pairs(num_experts_, 0);
  std::vector<double> scores(num_experts_, 0.0);
  int64_t tokens = 0;
  {
    absl::MutexLock lock(&mu_);
    Expire(absl::ToUnixSeconds(now));
    for (const Bucket& b : buckets_) {
      for (int e = 0; e < num_experts_; ++e) {
        pairs[e] += b.pairs[e];
        scores[e] += b.score_sums[e];
      }
      tokens += b.tokens;
    }
  }
  Stats s;
  int64_t total = 0, busiest = 0;
  for (int64_t p : pairs) {
    total += p;
    busiest = std::max(busiest, p);
  }
  if (total == 0 || tokens == 0) return s;
  s.balancedness = double(total) / num_experts_ / double(busiest);
  for (int e = 0; e < num_experts_; ++e) {
    s.aux_loss += (double(pairs[e]) / double(total)) * (scores[e] / double(tokens));
  }
  s.aux_loss *= num_experts_;
  return s;
}

}  // namespace moe::server
