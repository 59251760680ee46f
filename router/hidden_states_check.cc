// router/hidden_states_check.cc
#include "router/hidden_states_check.h"

#include "model/finite_values.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace moe::router {

absl::Status CheckHiddenStatesShape(const model::Tensor& hidden_states, int64_t hidden,
                                    int64_t max_tokens) {
  const auto& shape = hidden_states.shape();
  if (shape.size() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("hidden_states.shape is ",
                                                   model::ShapeString(shape),
                                                   "; expected rank 2: [tokens, ", hidden, "]"));
  }
  if (shape[0] < 1) {
    return absl::InvalidArgumentError(absl::StrCat("hidden_states.shape[0] is ", shape[0],
                                                   "; expected at least 1 token"));
  }
  if (shape[1] != hidden) {
    return absl::InvalidArgumentError(absl::StrCat("hidden_states.shape[1] is ", shape[1],
                                                   "; expected the hidden size ", hidden));
  }
  if (max_tokens > 0 && shape[0] > max_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat("hidden_states has ", shape[0],
                                                     " tokens; the limit is ", max_tokens));
  }
  return absl::OkStatus();
}

absl::Status CheckFinite(absl::Span<const float> values, int64_t hidden) {
  return model::CheckFiniteRows(values, hidden, "hidden_states", "token", absl::StatusCode::kInvalidArgument,
                                  "expected finite values");
}

}  // namespace moe::router
