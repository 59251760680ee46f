// router/combine.h
// The weighted combine of expert outputs back into token order: out[t] = Σ wᵢ·Eᵢ(x_t). Used by
// MoeLayer and by the router service when the worker replies have joined. Pure functions.
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "router/dispatch_plan.h"

namespace moe::router {

// Adds row_weight(r)·rows[r - first_row] to out[row_token(r)] for every dispatch row r in
// [first_row, first_row + count). `rows` is [count, hidden]; `out` is [num_tokens, hidden].
void AccumulateRows(const DispatchPlan& plan, int64_t first_row, int64_t count,
                    const float* rows, int64_t hidden, absl::Span<float> out);

// out[t] = Σ row_weight(r)·expert_out[r] over the rows of token t (0 for a token with none),
// summed in the order AccumulateRows would; `expert_out` is [num_rows, hidden]. Writes every
// value of `out` ([num_tokens, hidden]) once.
void Combine(const DispatchPlan& plan, absl::Span<const float> expert_out, int64_t hidden,
             absl::Span<float> out);

// Zero (identity) experts: out[t] += routing.identity_weights[t]·x[t] (nothing when the routing
// has none). `x` and `out` are [num_tokens, hidden].
void AddIdentity(const Routing& routing, absl::Span<const float> x, int64_t hidden, absl::Span<float> out);

}  // namespace moe::router
