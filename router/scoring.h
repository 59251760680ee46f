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

// Replaces `row` with sigmoid(row) in f32. INVALID_ARGUMENT if it contains NaN or ±Inf.
absl::Status SigmoidInPlace(absl::Span<float> row);

// Group-limited selection (DeepSeek): splits `selection` into `n_group` equal groups, scores each
// group by its maximum (`top2_sum` false) or the sum of its two largest entries (true), keeps
// the `topk_group` best groups (ties: lower group first) and sets every other entry to -Inf.
// REQUIRES: n_group divides selection.size(); 1 <= topk_group <= n_group.
void MaskGroups(absl::Span<float> selection, int n_group, int topk_group, bool top2_sum);

}  // namespace moe::router
