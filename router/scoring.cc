// router/scoring.cc
#include "router/scoring.h"

#include <algorithm>
#include <cmath>

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

}  // namespace moe::router
