// tests/router/dispatch_plan_test.cc
#include "router/dispatch_plan.h"

#include <map>
#include <random>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

using ::moe::testing::StatusIs;

// A random top-k routing of n tokens over e experts (distinct experts per token).
Routing RandomRouting(int n, int e, int k, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Routing r;
  r.num_tokens = n;
  for (int t = 0; t < n; ++t) {
    r.token_offsets.push_back(t * k);
    std::vector<int32_t> ids(e);
    for (int i = 0; i < e; ++i) ids[i] = i;
    std::shuffle(ids.begin(), ids.end(), rng);
    for (int j = 0; j < k; ++j) {
      r.experts.push_back(ids[j]);
      r.weights.push_back(std::uniform_real_distribution<float>(0.1f, 1.0f)(rng));
    }
  }
  r.token_offsets.push_back(n * k);
  return r;
}

TEST(DispatchPlanTest, EveryPairAppearsExactlyOnceGroupedByExpertInTokenOrder) {
  const int n = 200, e = 8, k = 3;
  const Routing routing = RandomRouting(n, e, k, 42);
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(routing, e));
  EXPECT_EQ(plan.num_rows(), n * k);
  EXPECT_EQ(plan.num_tokens(), n);
  EXPECT_EQ(plan.ExpertBegin(0), 0);
  EXPECT_EQ(plan.ExpertEnd(e - 1), n * k);
  std::map<std::pair<int, int>, float> pairs;  // (token, expert) → weight, from the routing
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < k; ++j) pairs[{t, routing.ExpertsOf(t)[j]}] = routing.WeightsOf(t)[j];
  }
  for (int x = 0; x < e; ++x) {
    for (int64_t row = plan.ExpertBegin(x); row < plan.ExpertEnd(x); ++row) {
      const int t = plan.row_tokens()[row];
      if (row > plan.ExpertBegin(x)) EXPECT_LT(plan.row_tokens()[row - 1], t);  // token order
      auto it = pairs.find({t, x});
      ASSERT_NE(it, pairs.end()) << "row " << row << " is not a routed pair";
      EXPECT_EQ(plan.row_weights()[row], it->second);
      pairs.erase(it);  // seen once
    }
  }
  EXPECT_TRUE(pairs.empty());
}

TEST(DispatchPlanTest, GatherCopiesTheTokenRows) {
  const Routing routing = RandomRouting(10, 4, 2, 7);
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(routing, 4));
  const int h = 5;
  const std::vector<float> x = testing::RandomVector(10 * h, 8);
  std::vector<float> rows(plan.num_rows() * h);
  plan.Gather(x, h, 0, plan.num_rows(), rows.data());
  for (int64_t r = 0; r < plan.num_rows(); ++r) {
    for (int j = 0; j < h; ++j) EXPECT_EQ(rows[r * h + j], x[plan.row_tokens()[r] * h + j]);
  }
}

TEST(DispatchPlanTest, EmptyRoutingAndBadExperts) {
  Routing empty;
  empty.token_offsets = {0};
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(empty, 3));
  EXPECT_EQ(plan.num_rows(), 0);
  EXPECT_EQ(plan.RowsOf(2), 0);

  Routing bad = RandomRouting(3, 4, 1, 1);
  bad.experts[1] = 4;
  EXPECT_THAT(DispatchPlan::Build(bad, 4), StatusIs(absl::StatusCode::kInvalidArgument, "expert 4"));
  bad.experts[1] = -1;
  EXPECT_THAT(DispatchPlan::Build(bad, 4), StatusIs(absl::StatusCode::kInvalidArgument, "expert -1"));
  Routing inconsistent = RandomRouting(3, 4, 1, 1);
  inconsistent.token_offsets.pop_back();
  EXPECT_THAT(DispatchPlan::Build(inconsistent, 4),
              StatusIs(absl::StatusCode::kInvalidArgument, "inconsistent"));
}

TEST(DispatchPlanTest, RowsOfTokenListsEachTokensRowsAscending) {
  // Token 0 → experts 2, 0; token 1 → none; token 2 → experts 1, 2, 0.
  Routing r;
  r.num_tokens = 3;
  r.token_offsets = {0, 2, 2, 5};
  r.experts = {2, 0, 1, 2, 0};
  r.weights = {0.5f, 0.5f, 0.2f, 0.3f, 0.5f};
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(r, 3));
  // Rows: expert 0 = {token 0, token 2}, expert 1 = {token 2}, expert 2 = {token 0, token 2}.
  EXPECT_EQ(std::vector<int64_t>(plan.RowsOfToken(0).begin(), plan.RowsOfToken(0).end()),
            (std::vector<int64_t>{0, 3}));
  EXPECT_TRUE(plan.RowsOfToken(1).empty());
  EXPECT_EQ(std::vector<int64_t>(plan.RowsOfToken(2).begin(), plan.RowsOfToken(2).end()),
            (std::vector<int64_t>{1, 2, 4}));
  for (int64_t t = 0; t < 3; ++t) {
    for (int64_t row : plan.RowsOfToken(t)) EXPECT_EQ(plan.row_tokens()[row], t);
  }
}

TEST(DispatchPlanTest, WeightOnInputScalesTheGatheredRowsAndCombinesWithOne) {
  // Llama 4: token 0 → expert 1 (0.25) and the always-on MLP (id 2, 1.0); token 1 → expert 0 (0.5).
  Routing r;
  r.num_tokens = 2;
  r.num_experts = 2;
  r.token_offsets = {0, 2, 3};
  r.experts = {1, 2, 0};
  r.weights = {0.25f, 1.0f, 0.5f};
  r.weight_on_input = true;
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(r, 3));
  const std::vector<float> x = {1, 2, 3, 4};  // [2 tokens, 2]
  std::vector<float> rows(plan.num_rows() * 2);
  plan.Gather(x, 2, 0, plan.num_rows(), rows.data());
  // Rows: expert 0 (token 1), expert 1 (token 0), always-on (token 0).
  EXPECT_EQ(rows, (std::vector<float>{1.5f, 2.0f, 0.25f, 0.5f, 1.0f, 2.0f}));
  EXPECT_EQ(std::vector<float>(plan.row_weights().begin(), plan.row_weights().end()),
            (std::vector<float>{1.0f, 1.0f, 1.0f}));
  r.weight_on_input = false;
  ASSERT_OK_AND_ASSIGN(DispatchPlan plain, DispatchPlan::Build(r, 3));
  EXPECT_TRUE(plain.row_input_scales().empty());
  EXPECT_EQ(plain.row_weights()[0], 0.5f);
}

}  // namespace
}  // namespace moe::router
