// router/hidden_states_check.h
// Validation of a Forward's hidden states before any work: rank 2, [tokens > 0, hidden],
// a dtype we accept, no NaN/Inf. Shared by the in-process path and the router service so both
// refuse the same inputs with the same messages. Pure functions; thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "model/tensor.h"

namespace moe::router {

// INVALID_ARGUMENT naming `hidden_states` and the expected value when the shape is not
// [n, hidden] with 1 <= n; RESOURCE_EXHAUSTED when n > max_tokens (if max_tokens > 0).
absl::Status CheckHiddenStatesShape(const model::Tensor& hidden_states, int64_t hidden,
                                    int64_t max_tokens);
// INVALID_ARGUMENT naming the first token and column holding NaN or ±Inf.
absl::Status CheckFinite(absl::Span<const float> values, int64_t hidden);

}  // namespace moe::router
