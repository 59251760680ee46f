// tests/router/combine_test.cc
#include "router/combine.h"

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

TEST(CombineTest, AppliesEachWeightOnceInTokenOrder) {
  // Token 0 → experts 2 (0.7) and 0 (0.3); token 1 → expert 1 (1.0); token 2 → nothing.
  Routing r;
  r.num_tokens = 3;
  r.token_offsets = {0, 2, 3, 3};
  r.experts = {2, 0, 1};
  r.weights = {0.7f, 0.3f, 1.0f};
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(r, 3));
  const int h = 4;
  const std::vector<float> expert_out = testing::RandomVector(plan.num_rows() * h, 3);
  std::vector<float> out(3 * h, 99.0f);
  Combine(plan, expert_out, h, absl::MakeSpan(out));
  // Dispatch rows: expert 0 (token 0), expert 1 (token 1), expert 2 (token 0).
  for (int j = 0; j < h; ++j) {
    EXPECT_FLOAT_EQ(out[j], 0.3f * expert_out[0 * h + j] + 0.7f * expert_out[2 * h + j]);
    EXPECT_FLOAT_EQ(out[h + j], expert_out[1 * h + j]);
    EXPECT_EQ(out[2 * h + j], 0.0f);  // a token with no expert gets zeros
  }
}

TEST(CombineTest, SegmentsAddUpToTheWhole) {
  Routing r;
  r.num_tokens = 2;
  r.token_offsets = {0, 2, 4};
  r.experts = {0, 1, 1, 0};
  r.weights = {0.25f, 0.75f, 0.5f, 0.5f};
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(r, 2));
  const int h = 3;
  const std::vector<float> expert_out = testing::RandomVector(4 * h, 4);
  std::vector<float> whole(2 * h), parts(2 * h, 0.0f);
  Combine(plan, expert_out, h, absl::MakeSpan(whole));
  AccumulateRows(plan, 2, 2, expert_out.data() + 2 * h, h, absl::MakeSpan(parts));
  AccumulateRows(plan, 0, 2, expert_out.data(), h, absl::MakeSpan(parts));
  for (int j = 0; j < 2 * h; ++j) EXPECT_NEAR(parts[j], whole[j], 1e-6);
}

TEST(CombineTest, TokenMajorIsBitIdenticalToExpertByExpertAccumulation) {
  // Combine sums token by token; the router service accumulates worker replies expert by expert.
  // Both must give the same bits: the same products added in the same (expert) order.
  const int num_tokens = 37, num_experts = 8, k = 3, h = 19;
  Routing r;
  r.num_tokens = num_tokens;
  r.token_offsets.push_back(0);
  const std::vector<float> u = testing::RandomVector(num_tokens * k, 11);
  for (int t = 0; t < num_tokens; ++t) {
    for (int j = 0; j < k; ++j) {
      r.experts.push_back((t * 5 + j * 3 + (t % 3)) % num_experts);  // rank order is not expert order
      r.weights.push_back(u[t * k + j]);
    }
    r.token_offsets.push_back(static_cast<int64_t>(r.experts.size()));
  }
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(r, num_experts));
  const std::vector<float> expert_out = testing::RandomVector(plan.num_rows() * h, 12);
  std::vector<float> whole(num_tokens * h, -7.0f), by_expert(num_tokens * h, 0.0f);
  Combine(plan, expert_out, h, absl::MakeSpan(whole));
  for (int e = 0; e < num_experts; ++e) {
    AccumulateRows(plan, plan.ExpertBegin(e), plan.RowsOf(e), expert_out.data() + plan.ExpertBegin(e) * h, h,
                   absl::MakeSpan(by_expert));
  }
  for (int i = 0; i < num_tokens * h; ++i) ASSERT_EQ(whole[i], by_expert[i]) << "value " << i;
}

TEST(CombineTest, ZeroExpertsAddTheirWeightTimesTheInput) {
  Routing r;
  r.num_tokens = 2;
  r.token_offsets = {0, 1, 1};
  r.experts = {0};
  r.weights = {0.5f};
  r.identity_weights = {0.25f, 2.0f};  // token 1 chose only zero experts
  ASSERT_OK_AND_ASSIGN(DispatchPlan plan, DispatchPlan::Build(r, 1));
  const int h = 3;
  const std::vector<float> x = testing::RandomVector(2 * h, 5), expert_out = testing::RandomVector(h, 6);
  std::vector<float> out(2 * h);
  Combine(plan, expert_out, h, absl::MakeSpan(out));
  AddIdentity(r, x, h, absl::MakeSpan(out));
  for (int j = 0; j < h; ++j) {
    EXPECT_FLOAT_EQ(out[j], 0.5f * expert_out[j] + 0.25f * x[j]);
    EXPECT_FLOAT_EQ(out[h + j], 2.0f * x[h + j]);
  }
}

}  // namespace
}  // namespace moe::router
