// tests/router/expert_choice_test.cc
#include "router/expert_choice.h"

#include <algorithm>

#include "gtest/gtest.h"
#include "router/gate.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

TEST(ExpertChoiceTest, EveryExpertTakesExactlyCOfItsBestTokens) {
  const int h = 12, e = 6, n = 40;
  RoutingSpec spec;
  spec.num_experts = e;
  spec.top_k = 2;
  spec.policy = RoutingSpec::Policy::kExpertChoice;
  spec.capacity_factor = 1.0f;
  const model::Tensor w = model::Tensor::FromF32(testing::RandomVector(e * h, 5), {e, h});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, h, {.weight = &w}));
  const std::vector<float> x = testing::RandomVector(n * h, 6);
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(x, n));
  ASSERT_OK_AND_ASSIGN(std::vector<float> scores, gate.Scores(x, n));
  const int64_t c = ExpertChoiceCapacity(spec, n);
  EXPECT_EQ(c, 14);  // ⌈1 · 40 · 2 / 6⌉
  std::vector<std::vector<int>> chosen(e);
  for (int t = 0; t < n; ++t) {
    for (size_t j = 0; j < r.ExpertsOf(t).size(); ++j) {
      const int x_e = r.ExpertsOf(t)[j];
      chosen[x_e].push_back(t);
      EXPECT_FLOAT_EQ(r.WeightsOf(t)[j], scores[t * e + x_e]);  // weight = the gate score
    }
  }
  for (int x_e = 0; x_e < e; ++x_e) {
    ASSERT_EQ(static_cast<int64_t>(chosen[x_e].size()), c) << "expert " << x_e;
    // No unchosen token scores higher for this expert than a chosen one.
    float worst_chosen = 2.0f;
    for (int t : chosen[x_e]) worst_chosen = std::min(worst_chosen, scores[t * e + x_e]);
    for (int t = 0; t < n; ++t) {
      if (std::find(chosen[x_e].begin(), chosen[x_e].end(), t) == chosen[x_e].end()) {
        EXPECT_LE(scores[t * e + x_e], worst_chosen);
      }
    }
  }
}

TEST(ExpertChoiceTest, CapacityIsClampedToTheBatch) {
  RoutingSpec spec;
  spec.num_experts = 2;
  spec.top_k = 2;
  spec.capacity_factor = 4.0f;
  EXPECT_EQ(ExpertChoiceCapacity(spec, 3), 3);
  spec.capacity_factor = 0.0f;  // means 1
  EXPECT_EQ(ExpertChoiceCapacity(spec, 3), 3);
  spec.top_k = 1;
  EXPECT_EQ(ExpertChoiceCapacity(spec, 3), 2);
}

}  // namespace
}  // namespace moe::router
