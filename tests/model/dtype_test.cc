// tests/model/dtype_test.cc
#include "model/dtype.h"

#include <bit>
#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace moe::model {
namespace {

float Bits(uint32_t b) { return std::bit_cast<float>(b); }

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(DTypeSize(DType::kF32), 4u);
  EXPECT_EQ(DTypeSize(DType::kBF16), 2u);
  EXPECT_EQ(DTypeSize(DType::kF16), 2u);
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) EXPECT_EQ(ParseDType(DTypeName(d)), d);
  EXPECT_FALSE(ParseDType("F8_E4M3").has_value());
  EXPECT_FALSE(ParseDType("f32").has_value());
}

TEST(DTypeTest, Bf16RoundTripsEveryValue) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const float f = BF16ToF32(static_cast<uint16_t>(b));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(f))));
    } else {
      EXPECT_EQ(F32ToBF16(f), b) << "bits " << b;
    }
  }
}

TEST(DTypeTest, Bf16RoundsToNearestEven) {
  EXPECT_EQ(BF16ToF32(F32ToBF16(1.0f + 0x1p-8f)), 1.0f);                    // tie → even
  EXPECT_EQ(BF16ToF32(F32ToBF16(1.0f + 3 * 0x1p-8f)), 1.0f + 0x1p-6f);      // tie → even (up)
  EXPECT_EQ(BF16ToF32(F32ToBF16(1.0f + 0x1p-8f + 0x1p-20f)), 1.0f + 0x1p-7f);  // above tie
  EXPECT_EQ(BF16ToF32(F32ToBF16(-1.0f - 0x1p-8f - 0x1p-20f)), -1.0f - 0x1p-7f);
  EXPECT_TRUE(std::isinf(BF16ToF32(F32ToBF16(std::numeric_limits<float>::max()))));
  EXPECT_EQ(BF16ToF32(F32ToBF16(-INFINITY)), -INFINITY);
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(NAN))));
  // A NaN whose payload sits only in the low bits must stay NaN, not become Inf.
  EXPECT_TRUE(std::isnan(BF16ToF32(F32ToBF16(Bits(0x7f800001u)))));
  EXPECT_EQ(F32ToBF16(-0.0f), 0x8000);
}

TEST(DTypeTest, F16DecodesEveryValueExactly) {
  for (uint32_t b = 0; b < 65536; ++b) {
    const uint32_t exp = (b >> 10) & 0x1f, mant = b & 0x3ff;
    const float sign = (b & 0x8000) ? -1.0f : 1.0f;
    const float f = F16ToF32(static_cast<uint16_t>(b));
    if (exp == 0x1f) {
      EXPECT_TRUE(mant ? std::isnan(f) : f == sign * INFINITY) << b;
      continue;
    }
    const double expected = exp == 0 ? std::ldexp(double(mant), -24)
                                     : std::ldexp(double(mant + 1024), int(exp) - 25);
    EXPECT_EQ(double(f), sign * expected) << "bits " << b;
    EXPECT_EQ(F32ToF16(f), b) << "bits " << b;  // exact round trip
  }
}

TEST(DTypeTest, F16RoundsToNearestEvenWithOverflowAndSubnormals) {
  EXPECT_EQ(F16ToF32(F32ToF16(65504.0f)), 65504.0f);
  EXPECT_EQ(F16ToF32(F32ToF16(65519.0f)), 65504.0f);
  EXPECT_EQ(F16ToF32(F32ToF16(65520.0f)), INFINITY);  // tie at the top rounds to Inf
  EXPECT_EQ(F16ToF32(F32ToF16(-1e6f)), -INFINITY);
  EXPECT_EQ(F16ToF32(F32ToF16(0x1p-24f)), 0x1p-24f);          // smallest subnormal
  EXPECT_EQ(F16ToF32(F32ToF16(0x1p-25f)), 0.0f);              // tie → even (zero)
  EXPECT_EQ(F16ToF32(F32ToF16(1.5f * 0x1p-25f)), 0x1p-24f);   // above tie
  EXPECT_EQ(F16ToF32(F32ToF16(3 * 0x1p-25f)), 2 * 0x1p-24f);  // tie between 1 and 2 units → 2
  EXPECT_EQ(F16ToF32(F32ToF16(1.0f + 0x1p-11f)), 1.0f);       // tie → even
  EXPECT_EQ(F16ToF32(F32ToF16(1.0f + 3 * 0x1p-11f)), 1.0f + 0x1p-9f);
  EXPECT_EQ(F32ToF16(1e-10f), 0);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(NAN))));
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(Bits(0x7f800001u)))));
}

TEST(DTypeTest, BulkConversionMatchesScalar) {
  const std::vector<float> v = testing::RandomVector(1000, 7, 100.0f);
  for (DType d : {DType::kBF16, DType::kF16}) {
    std::vector<uint16_t> packed(v.size());
    ConvertFromF32(d, v.data(), packed.data(), v.size());
    std::vector<float> back(v.size());
    ConvertToF32(d, packed.data(), back.data(), v.size());
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t scalar = d == DType::kBF16 ? F32ToBF16(v[i]) : F32ToF16(v[i]);
      ASSERT_EQ(packed[i], scalar);
      const float rel = std::abs(back[i] - v[i]) / std::abs(v[i]);
      EXPECT_LE(rel, d == DType::kBF16 ? 0x1p-8f : 0x1p-11f);  // half an ulp
    }
  }
}

}  // namespace
}  // namespace moe::model
