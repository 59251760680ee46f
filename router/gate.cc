// router/gate.cc
#include "router/gate.h"

#include <cblas.h>

#include "absl/strings/str_cat.h"
#include "router/scoring.h"

namespace moe::router {

absl::StatusOr<Gate> Gate::Create(const experts::Tensor& weight, RoutingSpec spec) {
  if (weight.rank() != 2 || weight.dim(0) != spec.num_experts || weight.dim(1) <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("gate weight has shape ",
                                                   experts::ShapeString(weight.shape()),
                                                   ", expected [", spec.num_experts, ", hidden]"));
  }
  if (spec.top_k < 1 || spec.top_k > spec.num_experts) {
    return absl::InvalidArgumentError(
        absl::StrCat("top_k is ", spec.top_k, ", must be in [1, ", spec.num_experts, "]"));
  }
  std::vector<float> w(static_cast<size_t>(weight.num_elements()));
  experts::ConvertToF32(weight.dtype(), weight.raw_data(), w.data(), w.size());
  return Gate(spec, static_cast<int>(weight.dim(1)), std::move(w));
}

absl::StatusOr<Routing> Gate::Route(absl::Span<const float> x, int64_t num_tokens) const {
  const int64_t e = spec_.num_experts;
  const int k = spec_.top_k;
  if (num_tokens < 0 || x.size() != static_cast<size_t>(num_tokens * hidden_)) {
    return absl::InvalidArgumentError(absl::StrCat("gate input has ", x.size(), " values, expected ",
                                                   num_tokens, " tokens × ", hidden_));
  }
  std::vector<float> scores(static_cast<size_t>(num_tokens * e));
  if (num_tokens > 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, num_tokens, e, hidden_, 1.0f, x.data(),
                hidden_, weight_.data(), hidden_, 0.0f, scores.data(), e);
  }
  Routing routing;
  routing.num_tokens = num_tokens;
  routing.token_offsets.resize(num_tokens + 1);
  routing.experts.resize(num_tokens * k);
  routing.weights.resize(num_tokens * k);
  for (int64_t t = 0; t < num_tokens; ++t) {
    absl::Span<float> row = absl::MakeSpan(scores).subspan(t * e, e);
    if (absl::Status s = SoftmaxInPlace(row); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("hidden_states: token ", t, " gives non-finite gate logits (NaN or Inf in input)"));
    }
    absl::Span<int32_t> ids = absl::MakeSpan(routing.experts).subspan(t * k, k);
    absl::Span<float> w = absl::MakeSpan(routing.weights).subspan(t * k, k);
    TopK(row, ids, w);
    float scale = spec_.routed_scaling_factor;
    if (spec_.norm_topk_prob) {
      float sum = 0.0f;
      for (float v : w) sum += v;
      scale /= sum;
    }
    for (float& v : w) v *= scale;
    routing.token_offsets[t] = t * k;
  }
  routing.token_offsets[num_tokens] = num_tokens * k;
  return routing;
}

}  // namespace moe::router
