// tests/router/scoring_test.cc
#include "router/scoring.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

using ::moe::testing::StatusIs;

TEST(SoftmaxTest, HandComputedCase) {
  std::vector<float> row = {1.0f, 2.0f, 3.0f};
  ASSERT_OK(SoftmaxInPlace(absl::MakeSpan(row)));
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(row[0], std::exp(1.0) / z, 1e-7);
  EXPECT_NEAR(row[1], std::exp(2.0) / z, 1e-7);
  EXPECT_NEAR(row[2], std::exp(3.0) / z, 1e-7);
}

TEST(SoftmaxTest, VeryLargeAndVeryNegativeLogitsStayFinite) {
  std::vector<float> row = {1e30f, 1e30f, -1e30f, 0.0f};
  ASSERT_OK(SoftmaxInPlace(absl::MakeSpan(row)));
  EXPECT_FLOAT_EQ(row[0], 0.5f);
  EXPECT_FLOAT_EQ(row[1], 0.5f);
  EXPECT_EQ(row[2], 0.0f);
  EXPECT_EQ(row[3], 0.0f);
  std::vector<float> negative = {-1e4f, -1e4f - 1.0f};
  ASSERT_OK(SoftmaxInPlace(absl::MakeSpan(negative)));
  EXPECT_NEAR(negative[0], 1.0 / (1.0 + std::exp(-1.0)), 1e-6);
}

TEST(SoftmaxTest, NonFiniteInputIsInvalidArgument) {
  std::vector<float> nan_row = {0.0f, NAN};
  EXPECT_THAT(SoftmaxInPlace(absl::MakeSpan(nan_row)),
              StatusIs(absl::StatusCode::kInvalidArgument, "NaN or Inf"));
  std::vector<float> inf_row = {INFINITY, 0.0f};
  EXPECT_THAT(SoftmaxInPlace(absl::MakeSpan(inf_row)),
              StatusIs(absl::StatusCode::kInvalidArgument, "NaN or Inf"));
}

std::vector<int32_t> TopIds(const std::vector<float>& scores, int k) {
  std::vector<int32_t> ids(k);
  std::vector<float> values(k);
  TopK(scores, absl::MakeSpan(ids), absl::MakeSpan(values));
  for (int j = 0; j < k; ++j) EXPECT_EQ(values[j], scores[ids[j]]);
  return ids;
}

TEST(TopKTest, OrdersByScoreThenLowerId) {
  EXPECT_EQ(TopIds({0.1f, 0.4f, 0.2f, 0.3f}, 2), (std::vector<int32_t>{1, 3}));
  EXPECT_EQ(TopIds({0.25f, 0.25f, 0.25f, 0.25f}, 2), (std::vector<int32_t>{0, 1}));  // ties
  EXPECT_EQ(TopIds({0.1f, 0.3f, 0.3f, 0.3f}, 2), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(TopIds({0.5f, 0.2f, 0.5f}, 1), (std::vector<int32_t>{0}));                // k = 1
  EXPECT_EQ(TopIds({0.1f, 0.6f, 0.3f}, 3), (std::vector<int32_t>{1, 2, 0}));          // k = E
  EXPECT_EQ(TopIds({-3.0f, -1.0f, -2.0f}, 2), (std::vector<int32_t>{1, 2}));          // negatives
  EXPECT_EQ(TopIds({0.2f, 0.2f, 0.9f, 0.2f}, 3), (std::vector<int32_t>{2, 0, 1}));
}

}  // namespace
}  // namespace moe::router
