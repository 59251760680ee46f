// router/scoring.h
// The numeric building blocks of gating: a numerically stable softmax and a top-k selection
// with a deterministic tie-break (lower expert id first). Pure functions; thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace moe::router {

// Replaces `row` with softmax(row), computed in f32 after subtracting the maximum.
// INVALID_ARGUMENT if the row contains NaN or ±Inf.
absl::Status SoftmaxInPlace(absl::Span<float> row);

// Writes the indices of the k largest `scores` into `ids` and their values into `values`,
// largest first; equal scores are ordered by lower index first.
// REQUIRES: 1 <= ids.size() == values.size() <= scores.size(), no NaN in scores.
void TopK(absl::Span<const float> scores, absl::Span<int32_t> ids, absl::Span<float> values);

}  // namespace moe::router
