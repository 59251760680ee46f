// tests/router/gate_test.cc
#include "router/gate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "gtest/gtest.h"
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

TEST(GateTest, MatchesHandComputedMixtralRouting) {
  // H = 2, E = 3: logits of x = (1, 2) are W·x = (1, 2, 0.5).
  const std::vector<float> w = {1.0f, 0.0f, 0.0f, 1.0f, 0.5f, 0.0f};
  const model::Tensor weight = model::Tensor::FromF32(w, {3, 2});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(Spec(3, 2), 2, {.weight = &weight}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(std::vector<float>{1.0f, 2.0f}, 1));
  ASSERT_EQ(r.num_pairs(), 2);
  EXPECT_EQ(r.ExpertsOf(0)[0], 1);
  EXPECT_EQ(r.ExpertsOf(0)[1], 0);
  // Renormalised over the top 2: softmax restricted to {2, 1}.
  const double p1 = std::exp(2.0), p0 = std::exp(1.0);
  EXPECT_NEAR(r.WeightsOf(0)[0], p1 / (p0 + p1), 1e-6);
  EXPECT_NEAR(r.WeightsOf(0)[1], p0 / (p0 + p1), 1e-6);
}

TEST(GateTest, WeightsSumToOneAndFollowScores) {
  const int h = 24, e = 8, k = 2, n = 50;
  const model::Tensor weight = model::Tensor::FromF32(testing::RandomVector(e * h, 1), {e, h});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(Spec(e, k), h, {.weight = &weight}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(testing::RandomVector(n * h, 2), n));
  EXPECT_EQ(r.num_tokens, n);
  for (int t = 0; t < n; ++t) {
    auto w = r.WeightsOf(t);
    EXPECT_NEAR(w[0] + w[1], 1.0f, 1e-6);
    EXPECT_GE(w[0], w[1]);
    EXPECT_NE(r.ExpertsOf(t)[0], r.ExpertsOf(t)[1]);
  }
}

TEST(GateTest, WithoutRenormalisationWeightsAreProbabilities) {
  RoutingSpec spec = Spec(4, 4);
  spec.norm_topk_prob = false;
  const model::Tensor weight = model::Tensor::FromF32(testing::RandomVector(4 * 3, 3), {4, 3});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 3, {.weight = &weight}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(testing::RandomVector(3, 4), 1));
  auto w = r.WeightsOf(0);
  EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0f), 1.0f, 1e-6);  // k = E: all of softmax
}

TEST(GateTest, BadInputs) {
  model::Tensor w = model::Tensor::FromF32(testing::RandomVector(8, 5), {4, 2});
  EXPECT_THAT(Gate::Create(Spec(5, 2), 2, {.weight = &w}),
              StatusIs(absl::StatusCode::kInvalidArgument, "gate weight has shape [4, 2], expected [5, 2]"));
  EXPECT_THAT(Gate::Create(Spec(4, 2), 2, {}), StatusIs(absl::StatusCode::kInvalidArgument, "gate weight is missing"));
  EXPECT_THAT(Gate::Create(Spec(4, 0), 2, {.weight = &w}), StatusIs(absl::StatusCode::kInvalidArgument, "top_k is 0"));
  EXPECT_THAT(Gate::Create(Spec(4, 5), 2, {.weight = &w}), StatusIs(absl::StatusCode::kInvalidArgument, "top_k is 5"));
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(Spec(4, 2), 2, {.weight = &w}));
  EXPECT_THAT(gate.Route(std::vector<float>(3, 1.0f), 2),
              StatusIs(absl::StatusCode::kInvalidArgument, "expected 2 tokens × 2"));
  EXPECT_THAT(gate.Route(std::vector<float>{1.0f, 2.0f, NAN, 0.0f}, 2),
              StatusIs(absl::StatusCode::kInvalidArgument, "token 1"));
}

}  // namespace
}  // namespace moe::router

namespace moe::router {
namespace {

TEST(GateTest, NoisyTopKIsReproducibleBySeed) {
  const int h = 16, e = 8, n = 64;
  const model::Tensor w = model::Tensor::FromF32(testing::RandomVector(e * h, 21), {e, h});
  const std::vector<float> x = testing::RandomVector(n * h, 22);
  auto route = [&](float noise, uint64_t seed) {
    RoutingSpec spec = Spec(e, 2);
    spec.noise_std = noise;
    spec.noise_seed = seed;
    auto gate = Gate::Create(spec, h, {.weight = &w});
    return gate->Route(x, n)->experts;
  };
  EXPECT_EQ(route(1.0f, 7), route(1.0f, 7));
  EXPECT_NE(route(1.0f, 7), route(1.0f, 8));
  EXPECT_NE(route(1.0f, 7), route(0.0f, 7));
  EXPECT_EQ(route(0.0f, 7), route(0.0f, 8));  // off: the seed does not matter
}

}  // namespace
}  // namespace moe::router
