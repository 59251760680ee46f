// tests/router/sparsemixer_test.cc
// SparseMixer top-2 on hand-made logits, every value worked out by hand from Hugging Face's
// `sparsemixer` (inference path).
#include "router/sparsemixer.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace moe::router {
namespace {

TEST(SparseMixerTest, MasksRelativeToEachMaximum) {
  // ε = 0.4 (mask where (max − s)/max(|s|, max) > 0.8). First max 2.0: keeps 2.0, 1.5 (0.25) and
  // 0.5 (0.75), masks −1.0 (1.5). Second max 1.5 with expert 0 excluded: keeps 1.5 and 0.5
  // (0.67), masks −1.0 (1.67).
  const std::vector<float> logits = {2.0f, 1.5f, -1.0f, 0.5f};
  int32_t experts[2];
  float weights[2];
  SparseMixerTop2(logits, 0.4f, experts, weights);
  EXPECT_EQ(experts[0], 0);
  EXPECT_EQ(experts[1], 1);
  EXPECT_NEAR(weights[0], std::exp(2.0) / (std::exp(2.0) + std::exp(1.5) + std::exp(0.5)), 1e-6);
  EXPECT_NEAR(weights[1], std::exp(1.5) / (std::exp(1.5) + std::exp(0.5)), 1e-6);
  // A small ε masks everything but each maximum: both weights 1.
  SparseMixerTop2(logits, 0.01f, experts, weights);
  EXPECT_FLOAT_EQ(weights[0], 1.0f);
  EXPECT_FLOAT_EQ(weights[1], 1.0f);
}

TEST(SparseMixerTest, ZeroLogitsKeepEveryExpertLikeTorch) {
  // (0 − 0) / max(0, 0) is NaN, and NaN > 2ε is false: nothing is masked, ties go to the first.
  const std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};
  int32_t experts[2];
  float weights[2];
  SparseMixerTop2(logits, 0.01f, experts, weights);
  EXPECT_EQ(experts[0], 0);
  EXPECT_EQ(experts[1], 1);
  EXPECT_NEAR(weights[0], 0.25f, 1e-7);
  EXPECT_NEAR(weights[1], 1.0f / 3.0f, 1e-7);
}

}  // namespace
}  // namespace moe::router
