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
  std::fill(out.begin(), out.end(), 0.0f);
  AccumulateRows(plan, 0, plan.num_rows(), expert_out.data(), hidden, out);
}

}  // namespace moe::router
