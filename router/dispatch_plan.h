// router/dispatch_plan.h
// A DispatchPlan groups the (token, expert) pairs of one layer step by expert, so that each
// expert (and each worker) receives one contiguous block of rows: a stable counting sort of the
// pairs by expert. Built from a Routing; read by the dispatcher and by Combine. Immutable once
// built; safe to share across threads.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "router/routing.h"

namespace moe::router {

class DispatchPlan {
 public:
  // INVALID_ARGUMENT if an expert id is outside [0, num_experts) or offsets are inconsistent.
  static absl::StatusOr<DispatchPlan> Build(const Routing& routing, int num_experts);

  int num_experts() const { return static_cast<int>(expert_offsets_.size()) - 1; }
  int64_t num_tokens() const { return num_tokens_; }
  // Total rows (= routed pairs) in dispatch order.
  int64_t num_rows() const { return static_cast<int64_t>(row_tokens_.size()); }
  // Rows [ExpertBegin(e), ExpertEnd(e)) go to expert e, in token order.
  int64_t ExpertBegin(int expert) const { return expert_offsets_[expert]; }
  int64_t ExpertEnd(int expert) const { return expert_offsets_[expert + 1]; }
  int64_t RowsOf(int expert) const { return ExpertEnd(expert) - ExpertBegin(expert); }
  // The token each row comes from, and the weight its expert output is combined with.
  absl::Span<const int32_t> row_tokens() const { return row_tokens_; }
  absl::Span<const float> row_weights() const { return row_weights_; }
  // Routing::weight_on_input: the factor each row's input is scaled by (its pair's weight; 1 for
  // always-on rows), while row_weights() are then 1. Empty otherwise.
  absl::Span<const float> row_input_scales() const { return row_input_scales_; }
  // The dispatch rows of token t, ascending (so in expert order): what Combine sums for it.
  absl::Span<const int64_t> RowsOfToken(int64_t token) const {
    return absl::MakeConstSpan(token_rows_).subspan(token_offsets_[token],
                                                     token_offsets_[token + 1] - token_offsets_[token]);
  }

  // Copies the input row of every dispatch row [first_row, first_row + count) from `x`
  // ([num_tokens, hidden] f32) into `rows` ([count, hidden]), scaled by row_input_scales() when
  // there are any.
  void Gather(absl::Span<const float> x, int64_t hidden, int64_t first_row, int64_t count,
              float* rows) const;

 private:
  int64_t num_tokens_ = 0;
  std::vector<int64_t> expert_offsets_;  // [E + 1]
  std::vector<int32_t> row_tokens_;
  std::vector<float> row_weights_;
  std::vector<float> row_input_scales_;
  std::vector<int64_t> token_offsets_;  // [num_tokens + 1], as the Routing's
  std::vector<int64_t> token_rows_;     // [num_rows], token-major
};

}  // namespace moe::router
