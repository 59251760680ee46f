// router/sparsemixer.cc
#include "router/sparsemixer.h"

#include <cmath>
#include <limits>

namespace moe::router {
namespace {

constexpr float kMinusInf = -std::numeric_limits<float>::infinity();

// The softmax at `chosen` over logits[j] for j not excluded and not masked against `threshold`
// (the maximum the mask is relative to); NaN comparisons (0/0) leave a logit unmasked, as in torch.
float MaskedSoftmaxAt(absl::Span<const float> logits, float threshold, int excluded, int chosen, float eps) {
  float top = kMinusInf;
  const auto kept = [&](int j) {
    if (j == excluded) return false;
    const float factor = std::max(std::fabs(logits[j]), threshold);
    return !((threshold - logits[j]) / factor > 2.0f * eps);
  };
  for (int j = 0; j < static_cast<int>(logits.size()); ++j) {
    if (kept(j)) top = std::max(top, logits[j]);
  }
  float sum = 0.0f;
  for (int j = 0; j < static_cast<int>(logits.size()); ++j) {
    if (kept(j)) sum += std::exp(logits[j] - top);
  }
  return std::exp(logits[chosen] - top) / sum;
}

int ArgMax(absl::Span<const float> logits, int excluded) {
  int best = -1;
  for (int j = 0; j < static_cast<int>(logits.size()); ++j) {
    if (j != excluded && (best < 0 || logits[j] > logits[best])) best = j;  // first of ties, as torch.max
  }
  return best;
}

}  // namespace

void SparseMixerTop2(absl::Span<const float> logits, float eps, int32_t experts[2], float weights[2]) {
  const int first = ArgMax(logits, -1);
  weights[0] = MaskedSoftmaxAt(logits, logits[first], -1, first, eps);
  const int second = ArgMax(logits, first);
  weights[1] = MaskedSoftmaxAt(logits, logits[second], first, second, eps);
  experts[0] = first;
  experts[1] = second;
}

}  // namespace moe::router
