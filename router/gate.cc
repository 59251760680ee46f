// router/gate.cc
#include "router/gate.h"

#include <cblas.h>

#include <algorithm>
#include <limits>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "router/balanced_assignment.h"
#include "router/capacity.h"
#include "router/expert_choice.h"
#include "router/scoring.h"
#include "router/sparsemixer.h"

namespace moe::router {
namespace {

absl::StatusOr<std::vector<float>> ToF32(const model::Tensor* t, std::vector<int64_t> shape, const char* what) {
  if (t == nullptr) return absl::InvalidArgumentError(absl::StrCat("the ", what, " is missing"));
  if (t->shape() != shape) {
    return absl::InvalidArgumentError(absl::StrCat("the ", what, " has shape ", model::ShapeString(t->shape()),
                                                   ", expected ", model::ShapeString(shape)));
  }
  std::vector<float> out(static_cast<size_t>(t->num_elements()));
  model::ConvertToF32(t->dtype(), t->raw_data(), out.data(), out.size());
  return out;
}

Routing EmptyRouting(int64_t n, int e) {
  Routing r;
  r.num_tokens = n;
  r.num_experts = e;
  r.token_offsets.assign(n + 1, 0);
  r.dropped.assign(e, 0);
  r.rerouted.assign(e, 0);
  return r;
}

}  // namespace

absl::StatusOr<Gate> Gate::Create(const RoutingSpec& spec, int hidden, const GateWeights& weights) {
  Gate gate(spec, hidden);
  if (hidden <= 0) return absl::InvalidArgumentError("hidden size must be positive");
  if (spec.moe) {
    const int e = spec.num_experts + spec.zero_experts;  // the gate scores the zero experts too
    if (spec.num_experts < 1) return absl::InvalidArgumentError("an MoE layer needs at least one expert");
    if (spec.zero_experts < 0) return absl::InvalidArgumentError("zero_experts must not be negative");
    if (spec.top_k < 1 || spec.top_k > e) {
      return absl::InvalidArgumentError(absl::StrCat("top_k is ", spec.top_k, ", must be in [1, ", e, "]"));
    }
    if (spec.zero_experts > 0 && (spec.policy != RoutingSpec::Policy::kTokenChoice || spec.sparsemixer ||
                                  spec.capacity_factor > 0 || spec.group_score != RoutingSpec::GroupScore::kNone ||
                                  spec.weight_on_input)) {
      return absl::InvalidArgumentError(
          "zero (identity) experts are served with token-choice top-k routing only (no expert choice, balanced "
          "assignment, capacity, groups, sparsemixer or weight on the input)");
    }
    if (spec.sparsemixer && (spec.top_k != 2 || e < 2)) {
      return absl::InvalidArgumentError(absl::StrCat("sparsemixer routing is top-2 of at least 2 experts; top_k is ",
                                                     spec.top_k, " of ", e));
    }
    if (spec.group_score != RoutingSpec::GroupScore::kNone &&
        (spec.n_group < 1 || e % spec.n_group != 0 || spec.topk_group < 1 || spec.topk_group > spec.n_group)) {
      return absl::InvalidArgumentError(absl::StrCat("groups: n_group ", spec.n_group, ", topk_group ", spec.topk_group,
                                                     " do not fit ", e, " experts"));
    }
    ASSIGN_OR_RETURN(gate.weight_, ToF32(weights.weight, {e, hidden}, "gate weight"));
    if (spec.selection_bias) {
      ASSIGN_OR_RETURN(gate.bias_, ToF32(weights.bias, {e}, "selection bias (e_score_correction_bias)"));
    }
    if (spec.logit_bias) {
      ASSIGN_OR_RETURN(gate.logit_bias_, ToF32(weights.logit_bias, {e}, "router bias"));
    }
  }
  if (spec.shared_gate) {
    ASSIGN_OR_RETURN(gate.shared_gate_, ToF32(weights.shared_gate, {1, hidden}, "shared expert gate"));
  }
  return gate;
}

absl::Status Gate::Score(absl::Span<const float> x, int64_t n, std::vector<float>& scores,
                         std::vector<float>& selection, absl::Span<const bool> excluded) const {
  const int64_t e = scored();
  if (n < 0 || x.size() != static_cast<size_t>(n * hidden_)) {
    return absl::InvalidArgumentError(absl::StrCat("gate input has ", x.size(), " values, expected ", n, " tokens × ", hidden_));
  }
  scores.assign(static_cast<size_t>(n * e), 0.0f);
  if (n > 0) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, e, hidden_, 1.0f, x.data(), hidden_, weight_.data(),
                hidden_, 0.0f, scores.data(), e);
  }
  selection.resize(scores.size());
  for (int64_t t = 0; t < n; ++t) {
    absl::Span<float> row = absl::MakeSpan(scores).subspan(t * e, e);
    for (int64_t i = 0; i < static_cast<int64_t>(logit_bias_.size()); ++i) row[i] += logit_bias_[i];
    if (spec_.noise_std > 0) {  // reproducible per (seed, token)
      std::mt19937_64 rng(spec_.noise_seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(t));
      std::normal_distribution<float> normal;
      for (float& v : row) v += spec_.noise_std * normal(rng);
    }
    for (size_t i = 0; i < excluded.size(); ++i) {
      if (excluded[i]) row[i] = -1e30f;  // exp and sigmoid give exactly 0
    }
    absl::Span<float> sel = absl::MakeSpan(selection).subspan(t * e, e);
    if (spec_.sparsemixer) std::copy(row.begin(), row.end(), sel.begin());  // it selects on the raw logits
    const absl::Status s = spec_.scoring == RoutingSpec::Scoring::kSoftmax ? SoftmaxInPlace(row) : SigmoidInPlace(row);
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("hidden_states: token ", t, " gives non-finite gate logits (NaN or Inf in input)"));
    }
    if (spec_.sparsemixer) continue;
    for (int64_t i = 0; i < e; ++i) sel[i] = row[i] + (bias_.empty() ? 0.0f : bias_[i]);
    if (spec_.group_score != RoutingSpec::GroupScore::kNone) {
      MaskGroups(sel, spec_.n_group, spec_.topk_group, spec_.group_score == RoutingSpec::GroupScore::kTop2Sum);
    }
    for (size_t i = 0; i < excluded.size(); ++i) {
      if (excluded[i]) sel[i] = -std::numeric_limits<float>::infinity();  // below any masked group
    }
  }
  return absl::OkStatus();
}

float Gate::WeightFactor(absl::Span<const float> chosen) const {
  const bool normalise = spec_.norm_topk_prob && (!spec_.norm_needs_topk_above_one || spec_.top_k > 1);
  float factor = 1.0f;
  if (normalise) {
    float sum = 0.0f;
    if (spec_.norm_p == 1.0f) {
      for (float v : chosen) sum += v;
    } else {  // DBRX: (Σ |v|^p)^(1/p), as torch.norm(p=p)
      for (float v : chosen) sum += std::pow(std::abs(v), spec_.norm_p);
      sum = std::pow(sum, 1.0f / spec_.norm_p);
    }
    factor = 1.0f / std::max(sum + spec_.norm_epsilon, spec_.norm_floor);
  }
  if (!normalise || !spec_.scale_only_without_norm) factor *= spec_.routed_scaling_factor;
  return factor;
}

Routing Gate::TokenChoice(absl::Span<const float> scores, absl::Span<const float> selection, int64_t n) const {
  const int e = scored(), k = spec_.top_k;
  Routing r = EmptyRouting(n, spec_.num_experts);
  r.experts.resize(n * k);
  r.weights.resize(n * k);
  std::vector<float> factor(n);
  std::vector<float> chosen(k), ignored(k);
  for (int64_t t = 0; t < n; ++t) {
    absl::Span<int32_t> ids = absl::MakeSpan(r.experts).subspan(t * k, k);
    TopK(selection.subspan(t * e, e), ids, absl::MakeSpan(ignored));
    for (int j = 0; j < k; ++j) chosen[j] = scores[t * e + ids[j]];  // weights from unbiased scores
    factor[t] = WeightFactor(chosen);
    for (int j = 0; j < k; ++j) r.weights[t * k + j] = chosen[j] * factor[t];
    r.token_offsets[t + 1] = (t + 1) * k;
  }
  if (spec_.capacity_factor > 0) ApplyCapacity(spec_, selection, scores, factor, r);
  if (spec_.zero_experts > 0) SplitZeroExperts(r);
  return r;
}

void Gate::SplitZeroExperts(Routing& r) const {
  const int e = spec_.num_experts;
  r.identity_weights.assign(static_cast<size_t>(r.num_tokens), 0.0f);
  int64_t kept = 0;
  for (int64_t t = 0; t < r.num_tokens; ++t) {
    const int64_t begin = r.token_offsets[t], end = r.token_offsets[t + 1];
    r.token_offsets[t] = kept;
    for (int64_t p = begin; p < end; ++p) {
      if (r.experts[p] >= e) {
        r.identity_weights[t] += r.weights[p];
        continue;
      }
      r.experts[kept] = r.experts[p];
      r.weights[kept] = r.weights[p];
      ++kept;
    }
  }
  r.token_offsets[r.num_tokens] = kept;
  r.experts.resize(kept);
  r.weights.resize(kept);
}

Routing Gate::SparseMixer(absl::Span<const float> logits, int64_t n) const {
  const int e = spec_.num_experts;
  Routing r = EmptyRouting(n, e);
  r.experts.resize(n * 2);
  r.weights.resize(n * 2);
  for (int64_t t = 0; t < n; ++t) {
    SparseMixerTop2(logits.subspan(t * e, e), spec_.sparsemixer_eps, &r.experts[t * 2], &r.weights[t * 2]);
    r.token_offsets[t + 1] = (t + 1) * 2;
  }
  return r;
}

Routing Gate::Balanced(absl::Span<const float> scores, absl::Span<const float> selection, int64_t n) const {
  const int e = spec_.num_experts;
  Routing r = EmptyRouting(n, e);
  const std::vector<int32_t> assigned = BalancedAssignment(selection, n, e);
  for (int64_t t = 0; t < n; ++t) {
    const float s = scores[t * e + assigned[t]];
    r.experts.push_back(assigned[t]);
    r.weights.push_back(s * WeightFactor(absl::MakeConstSpan(&s, 1)));
    r.token_offsets[t + 1] = t + 1;
  }
  return r;
}

void Gate::AddAlwaysOn(absl::Span<const float> x, Routing& r) const {
  const int64_t n = r.num_tokens;
  std::vector<int32_t> experts;
  std::vector<float> weights;
  std::vector<int64_t> offsets = {0};
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t p = r.token_offsets[t]; p < r.token_offsets[t + 1]; ++p) {
      experts.push_back(r.experts[p]);
      weights.push_back(r.weights[p]);
    }
    float w = 1.0f;
    if (!shared_gate_.empty()) {
      const float z = cblas_sdot(hidden_, x.data() + t * hidden_, 1, shared_gate_.data(), 1);
      w = 1.0f / (1.0f + std::exp(-z));
    }
    experts.push_back(spec_.num_experts);
    weights.push_back(w);
    offsets.push_back(static_cast<int64_t>(experts.size()));
  }
  r.experts = std::move(experts);
  r.weights = std::move(weights);
  r.token_offsets = std::move(offsets);
}

absl::StatusOr<Routing> Gate::Route(absl::Span<const float> x, int64_t n) const { return RouteImpl(x, n, {}); }

absl::StatusOr<Routing> Gate::RouteImpl(absl::Span<const float> x, int64_t n, absl::Span<const bool> excluded) const {
  if (n < 0 || x.size() != static_cast<size_t>(n * hidden_)) {
    return absl::InvalidArgumentError(absl::StrCat("gate input has ", x.size(), " values, expected ", n, " tokens × ", hidden_));
  }
  Routing r = EmptyRouting(n, spec_.num_experts);
  if (spec_.moe) {
    std::vector<float> scores, selection;
    RETURN_IF_ERROR(Score(x, n, scores, selection, excluded));
    switch (spec_.policy) {
      case RoutingSpec::Policy::kTokenChoice:
        r = spec_.sparsemixer ? SparseMixer(selection, n) : TokenChoice(scores, selection, n);
        break;
      case RoutingSpec::Policy::kExpertChoice:
        r = ExpertChoice(spec_, selection, scores, n);
        break;
      case RoutingSpec::Policy::kBalanced:
        r = Balanced(scores, selection, n);
        break;
    }
    r.score_sums.assign(spec_.num_experts, 0.0);
    for (int64_t t = 0; t < n; ++t) {
      for (int e = 0; e < spec_.num_experts; ++e) r.score_sums[e] += scores[t * scored() + e];
    }
  }
  if (spec_.always_on) AddAlwaysOn(x, r);
  r.weight_on_input = spec_.weight_on_input;
  return r;
}

absl::StatusOr<Routing> Gate::RouteExcluding(absl::Span<const float> x, int64_t n,
                                             absl::Span<const bool> excluded) const {
  if (excluded.size() != static_cast<size_t>(spec_.num_experts)) {
    return absl::InvalidArgumentError(absl::StrCat("excluded has ", excluded.size(), " entries, expected ",
                                                   spec_.num_experts));
  }
  if (!spec_.moe || spec_.policy != RoutingSpec::Policy::kTokenChoice || spec_.sparsemixer) {
    return absl::FailedPreconditionError(absl::StrCat("rerouting needs token-choice top-k routing; this layer uses ",
                                                      spec_.sparsemixer ? "sparsemixer" : spec_.PolicyName()));
  }
  const int64_t live = std::count(excluded.begin(), excluded.end(), false) + spec_.zero_experts;
  if (live < spec_.top_k) {
    return absl::FailedPreconditionError(absl::StrCat("only ", live, " experts are available; each token needs ",
                                                      spec_.top_k));
  }
  return RouteImpl(x, n, excluded);
}

absl::StatusOr<std::vector<float>> Gate::Scores(absl::Span<const float> x, int64_t n) const {
  std::vector<float> scores, selection;
  if (!spec_.moe) return scores;
  RETURN_IF_ERROR(Score(x, n, scores, selection));
  if (spec_.zero_experts > 0) {  // the routed experts' columns only
    std::vector<float> routed(static_cast<size_t>(n * spec_.num_experts));
    for (int64_t t = 0; t < n; ++t) {
      std::copy_n(scores.begin() + t * scored(), spec_.num_experts, routed.begin() + t * spec_.num_experts);
    }
    return routed;
  }
  return scores;
}

}  // namespace moe::router
