// router/combine.cc
#include "router/combine.h"

#include <algorithm>

namespace moe::router {

void AccumulateRows(const DispatchPlan& plan, int64_t first_row, int64_t count,
                    const float* rows, int64_t hidden, absl::Span<float> out) {
  for (int64_t r = 0; r < count; ++r) {
    const float w = plan.row_weights()[first_row + r];
    float* dst = out.data() + static_cast<int64_t>(plan.row_tokens()[first_row + r]) * hidden;
    const float* src = rows + r * hidden;
    for (int64_t j = 0; j < hidden; ++j) dst[j] += w * src[j];
  }
}

void Combine(const DispatchPlan& plan, absl::Span<const float> expert_out, int64_t hidden,
             absl::Span<float> out) {
  // Token by token, each output row written once (no zero-fill pass, no read-modify-write of
  // `out` per expert); the same sums in the same order as AccumulateRows expert by expert.
  // Large batches (≥ 4 MiB of output) on every core: tokens are independent.
#pragma omp parallel for schedule(static) if (plan.num_tokens() * hidden >= (int64_t{1} << 20))
  for (int64_t t = 0; t < plan.num_tokens(); ++t) {
    float* __restrict dst = out.data() + t * hidden;
    const absl::Span<const int64_t> rows = plan.RowsOfToken(t);
    if (rows.empty()) {
      std::fill(dst, dst + hidden, 0.0f);
      continue;  // (an OpenMP loop body may continue)
    }
    const float w0 = plan.row_weights()[rows[0]];
    const float* __restrict src0 = expert_out.data() + rows[0] * hidden;
    for (int64_t j = 0; j < hidden; ++j) dst[j] = 0.0f + w0 * src0[j];
    for (size_t i = 1; i < rows.size(); ++i) {
      const float w = plan.row_weights()[rows[i]];
      const float* __restrict src = expert_out.data() + rows[i] * hidden;
      for (int64_t j = 0; j < hidden; ++j) dst[j] += w * src[j];
    }
  }
}

void AddIdentity(const Routing& routing, absl::Span<const float> x, int64_t hidden, absl::Span<float> out) {
  for (size_t t = 0; t < routing.identity_weights.size(); ++t) {
    const float w = routing.identity_weights[t];
    if (w == 0.0f) continue;
    for (int64_t j = 0; j < hidden; ++j) out[t * hidden + j] += w * x[t * hidden + j];
  }
}

}  // namespace moe::router
