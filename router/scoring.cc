// router/scoring.cc
#include "router/scoring.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moe::router {

absl::Status SoftmaxInPlace(absl::Span<float> row) {
  float max_value = -INFINITY;
  for (float v : row) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("gate logits contain NaN or Inf");
    max_value = std::max(max_value, v);
  }
  float sum = 0.0f;
  for (float& v : row) {
    v = std::exp(v - max_value);
    sum += v;
  }
  const float inv = 1.0f / sum;  // sum >= 1: the maximum contributes exp(0)
  for (float& v : row) v *= inv;
  return absl::OkStatus();
}

void TopK(absl::Span<const float> scores, absl::Span<int32_t> ids, absl::Span<float> values) {
  const size_t k = ids.size();
  // Insertion into a sorted k-list: k is small (≤ 8 typically) and E modest (≤ 256).
  size_t filled = 0;
  for (size_t e = 0; e < scores.size(); ++e) {
    const float s = scores[e];
    if (filled == k && !(s > values[k - 1])) continue;  // ties keep the lower id already there
    size_t pos = filled < k ? filled++ : k - 1;
    while (pos > 0 && s > values[pos - 1]) {
      values[pos] = values[pos - 1];
      ids[pos] = ids[pos - 1];
      --pos;
    }
    values[pos] = s;
    ids[pos] = static_cast<int32_t>(e);
  }
}

absl::Status SigmoidInPlace(absl::Span<float> row) {
  for (float& v : row) {
    if (!std::isfinite(v)) return absl::InvalidArgumentError("gate logits contain NaN or Inf");
    v = 1.0f / (1.0f + std::exp(-v));
  }
  return absl::OkStatus();
}

void MaskGroups(absl::Span<float> selection, int n_group, int topk_group, bool top2_sum) {
  const size_t per_group = selection.size() / n_group;
  std::vector<float> group_scores(n_group);
  for (int g = 0; g < n_group; ++g) {
    absl::Span<const float> group = selection.subspan(g * per_group, per_group);
    float best = -INFINITY, second = -INFINITY;
    for (float v : group) {
      if (v > best) {
        second = best;
        best = v;
      } else if (v > second) {
        second = v;
      }
    }
    group_scores[g] = top2_sum ? best + second : best;
  }
  std::vector<int32_t> keep(topk_group);
  std::vector<float> kept_scores(topk_group);
  TopK(group_scores, absl::MakeSpan(keep), absl::MakeSpan(kept_scores));
  std::vector<bool> kept(n_group, false);
  for (int32_t g : keep) kept[g] = true;
  for (int g = 0; g < n_group; ++g) {
    if (kept[g]) continue;
    for (size_t i = 0; i < per_group; ++i) selection[g * per_group + i] = -INFINITY;
  }
}

}  // namespace moe::router
