// tests/testing/error_measures_test.cc
// The comparison every parity test relies on must itself fail on NaN, Inf and short outputs.
#include "tests/testing/error_measures.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace moe::testing {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(MaxRelErrorTest, MeasuresTheLargestDifferenceAgainstTheLargestReference) {
  const std::vector<float> ref = {1.0f, -4.0f, 2.0f};
  EXPECT_EQ(MaxRelError(ref, ref), 0.0);
  EXPECT_DOUBLE_EQ(MaxRelError(std::vector<float>{1.0f, -4.0f, 3.0f}, ref), 0.25);
  EXPECT_DOUBLE_EQ(MaxRelError(std::vector<float>{1.5f, -4.0f, 2.0f}, std::vector<double>{1.0, -4.0, 2.0}), 0.125);
  EXPECT_DOUBLE_EQ(MaxRelError(std::vector<float>{0.5f}, std::vector<float>{0.0f}), 0.5);  // zero reference: absolute
}

TEST(MaxRelErrorTest, NaNAnywhereFails) {
  const std::vector<float> ref = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(MaxRelError(std::vector<float>{kNaN, kNaN, kNaN}, ref), kInf);
  EXPECT_EQ(MaxRelError(std::vector<float>{1.0f, kNaN, 3.0f}, ref), kInf);
  EXPECT_EQ(MaxRelError(std::vector<float>{1.0f, 2.0f, kNaN}, std::vector<double>{1, 2, 3}), kInf);
  EXPECT_EQ(MaxRelError(ref, std::vector<float>{1.0f, kNaN, 3.0f}), kInf);  // a NaN reference is no reference
}

TEST(MaxRelErrorTest, InfWhereTheReferenceIsFiniteFails) {
  EXPECT_EQ(MaxRelError(std::vector<float>{1.0f, kInf}, std::vector<float>{1.0f, 2.0f}), kInf);
  EXPECT_EQ(MaxRelError(std::vector<float>{-kInf, 2.0f}, std::vector<double>{1.0, 2.0}), kInf);
}

TEST(MaxRelErrorTest, SizesThatDifferFail) {
  const std::vector<float> ref = {1.0f, 2.0f, 3.0f};
  EXPECT_EQ(MaxRelError(std::vector<float>{1.0f, 2.0f}, ref), kInf);  // short: would read past its end
  EXPECT_EQ(MaxRelError(std::vector<float>{1.0f, 2.0f, 3.0f, 4.0f}, ref), kInf);
  EXPECT_EQ(MaxRelError(std::vector<float>{}, ref), kInf);
}

}  // namespace
}  // namespace moe::testing
