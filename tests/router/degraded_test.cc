// tests/router/degraded_test.cc
// Degraded mode's pieces: Gate::RouteExcluding (hand-computed softmax renormalised over the live
// experts; sigmoid with a selection bias never picks an excluded expert; refusals), and
// ExcludedChoices / DropExperts on a routing built by hand.
#include "router/degraded.h"

#include <cmath>

#include "absl/container/fixed_array.h"
#include "gtest/gtest.h"
#include "router/gate.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

using ::moe::testing::StatusIs;

RoutingSpec Spec(int e, int k) {
  RoutingSpec s;
  s.num_experts = e;
  s.top_k = k;
  return s;
}

TEST(RouteExcludingTest, TheNextBestLiveExpertsTakeOverRenormalised) {
  // H = 2, E = 3: logits of x = (1, 2) are (1, 2, 0.5); expert 1 (the best) is excluded.
  const model::Tensor weight = model::Tensor::FromF32({1.0f, 0.0f, 0.0f, 1.0f, 0.5f, 0.0f}, {3, 2});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(Spec(3, 2), 2, {.weight = &weight}));
  const absl::FixedArray<bool> excluded = {false, true, false};
  ASSERT_OK_AND_ASSIGN(Routing r, gate.RouteExcluding(std::vector<float>{1.0f, 2.0f}, 1, excluded));
  ASSERT_EQ(r.num_pairs(), 2);
  EXPECT_EQ(r.ExpertsOf(0)[0], 0);
  EXPECT_EQ(r.ExpertsOf(0)[1], 2);
  const double p0 = std::exp(1.0), p2 = std::exp(0.5);
  EXPECT_NEAR(r.WeightsOf(0)[0], p0 / (p0 + p2), 1e-6);
  EXPECT_NEAR(r.WeightsOf(0)[1], p2 / (p0 + p2), 1e-6);
}

TEST(RouteExcludingTest, WithoutRenormalisationTheSoftmaxIsOverLiveExperts) {
  RoutingSpec spec = Spec(4, 3);
  spec.norm_topk_prob = false;
  const model::Tensor weight = model::Tensor::FromF32(testing::RandomVector(4 * 3, 3), {4, 3});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 3, {.weight = &weight}));
  const absl::FixedArray<bool> excluded = {false, false, true, false};
  ASSERT_OK_AND_ASSIGN(Routing r, gate.RouteExcluding(testing::RandomVector(3, 4), 1, excluded));
  double sum = 0;
  for (int j = 0; j < 3; ++j) {
    EXPECT_NE(r.ExpertsOf(0)[j], 2);
    sum += r.WeightsOf(0)[j];
  }
  EXPECT_NEAR(sum, 1.0, 1e-6);  // the 3 live experts carry all of the probability
}

TEST(RouteExcludingTest, ABiasedSigmoidGateNeverPicksAnExcludedExpert) {
  RoutingSpec spec = Spec(8, 2);
  spec.scoring = RoutingSpec::Scoring::kSigmoid;
  spec.selection_bias = true;
  const int h = 16, n = 40;
  const model::Tensor weight = model::Tensor::FromF32(testing::RandomVector(8 * h, 5), {8, h});
  std::vector<float> b(8, 0.0f);
  b[3] = 100.0f;  // would win every token
  const model::Tensor bias = model::Tensor::FromF32(b, {8});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, h, {.weight = &weight, .bias = &bias}));
  absl::FixedArray<bool> excluded(8, false);
  excluded[3] = true;
  ASSERT_OK_AND_ASSIGN(Routing r, gate.RouteExcluding(testing::RandomVector(n * h, 6), n, excluded));
  for (int t = 0; t < n; ++t) {
    for (int e : r.ExpertsOf(t)) EXPECT_NE(e, 3) << "token " << t;
  }
}

TEST(RouteExcludingTest, RefusesWhatItCannotReroute) {
  const model::Tensor weight = model::Tensor::FromF32(testing::RandomVector(4 * 2, 7), {4, 2});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(Spec(4, 2), 2, {.weight = &weight}));
  const absl::FixedArray<bool> three_down = {true, true, true, false};
  EXPECT_THAT(gate.RouteExcluding(std::vector<float>{1.0f, 2.0f}, 1, three_down),
              StatusIs(absl::StatusCode::kFailedPrecondition, "only 1 experts are available"));
  RoutingSpec choice = Spec(4, 2);
  choice.policy = RoutingSpec::Policy::kExpertChoice;
  ASSERT_OK_AND_ASSIGN(Gate by_expert, Gate::Create(choice, 2, {.weight = &weight}));
  const absl::FixedArray<bool> one_down = {true, false, false, false};
  EXPECT_THAT(by_expert.RouteExcluding(std::vector<float>{1.0f, 2.0f}, 1, one_down),
              StatusIs(absl::StatusCode::kFailedPrecondition, "token-choice"));
}

// Two tokens: (experts 1, 3) and (0, 1), plus an always-on pair (id 4) on the second.
Routing HandRouting() {
  Routing r;
  r.num_tokens = 2;
  r.num_experts = 4;
  r.token_offsets = {0, 2, 5};
  r.experts = {1, 3, 0, 1, 4};
  r.weights = {0.6f, 0.4f, 0.7f, 0.3f, 1.0f};
  return r;
}

TEST(DegradedTest, ExcludedChoicesListsWhatEachTokenLost) {
  const absl::FixedArray<bool> down = {false, true, false, false};
  const std::vector<std::vector<int>> lost = ExcludedChoices(HandRouting(), down);
  EXPECT_EQ(lost, (std::vector<std::vector<int>>{{1}, {1}}));
  const absl::FixedArray<bool> none(4, false);
  EXPECT_EQ(ExcludedChoices(HandRouting(), none), (std::vector<std::vector<int>>{{}, {}}));
}

TEST(DegradedTest, DropExpertsRemovesOnlyTheirPairs) {
  Routing r = HandRouting();
  const absl::FixedArray<bool> down = {false, true, false, false};
  DropExperts(down, r);
  EXPECT_EQ(r.experts, (std::vector<int32_t>{3, 0, 4}));
  EXPECT_EQ(r.weights, (std::vector<float>{0.4f, 0.7f, 1.0f}));  // not renormalised
  EXPECT_EQ(r.token_offsets, (std::vector<int64_t>{0, 1, 3}));
}

}  // namespace
}  // namespace moe::router
