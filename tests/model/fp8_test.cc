// tests/model/fp8_test.cc
// e4m3fn decoding against known values and the format's definition, and block dequantization
// with ragged edge blocks against a double-precision loop.
#include "model/fp8.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::StatusIs;

TEST(Fp8Test, E4m3KnownValues) {
  EXPECT_EQ(E4m3ToF32(0x00), 0.0f);
  EXPECT_TRUE(std::signbit(E4m3ToF32(0x80)));
  EXPECT_EQ(E4m3ToF32(0x38), 1.0f);            // 0.0111.000
  EXPECT_EQ(E4m3ToF32(0xb8), -1.0f);
  EXPECT_EQ(E4m3ToF32(0x7e), 448.0f);           // largest: 1.110 × 2^8
  EXPECT_EQ(E4m3ToF32(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(E4m3ToF32(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::isnan(E4m3ToF32(0x7f)));
  EXPECT_TRUE(std::isnan(E4m3ToF32(0xff)));
  // Every code: (-1)^s · 2^(e-7) · (1 + m/8), subnormals 2^-6 · m/8; monotone in the positive half.
  for (int c = 0; c < 0x7f; ++c) {
    const int e = (c >> 3) & 15, m = c & 7;
    const double want = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
    EXPECT_EQ(E4m3ToF32(static_cast<uint8_t>(c)), static_cast<float>(want)) << c;
    EXPECT_EQ(E4m3ToF32(static_cast<uint8_t>(c | 0x80)), -static_cast<float>(want)) << c;
    if (c > 0) EXPECT_GT(E4m3ToF32(static_cast<uint8_t>(c)), E4m3ToF32(static_cast<uint8_t>(c - 1)));
  }
}

TEST(Fp8Test, BlocksWithRaggedEdgesMatchADoubleLoop) {
  const int64_t n = 37, k = 70;  // blocks of 16 x 32: 3 x 3, the last ones ragged
  const int bn = 16, bk = 32;
  std::vector<uint8_t> q(n * k);
  for (int64_t i = 0; i < n * k; ++i) q[i] = static_cast<uint8_t>((i * 37 + 11) % 256 == 0x7f ? 0 : (i * 37 + 11) % 256);
  for (auto& v : q) if ((v & 0x7f) == 0x7f) v = 0x3c;  // no NaNs in a weight
  const std::vector<float> s = testing::RandomVector(3 * 3, 5, 1.0f);
  const Tensor scales = Tensor::FromF32(s, {3, 3});
  ASSERT_OK_AND_ASSIGN(const Tensor f32, DequantizeFp8Blocks("w", q.data(), n, k, scales, bn, bk, DType::kF32));
  ASSERT_OK_AND_ASSIGN(const Tensor bf16, DequantizeFp8Blocks("w", q.data(), n, k, scales, bn, bk, DType::kBF16));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const double want = double(E4m3ToF32(q[i * k + j])) * double(s[(i / bn) * 3 + j / bk]);
      ASSERT_EQ(f32.f32()[i * k + j], static_cast<float>(want)) << i << "," << j;  // exact in f32
      ASSERT_EQ(static_cast<const uint16_t*>(bf16.raw_data())[i * k + j], F32ToBF16(static_cast<float>(want)));
    }
  }
  EXPECT_THAT(DequantizeFp8Blocks("w", q.data(), n, k, Tensor::FromF32(s, {9, 1}), bn, bk, DType::kBF16),
              StatusIs(absl::StatusCode::kInvalidArgument, "'w_scale_inv' is F32[9, 1]; expected F32[3, 3]"));
}

TEST(Mxfp4Test, NibblesLowFirstTimesTheGroupExponent) {
  // Two experts of [N 2, K 64]: 2 groups of 32 per row. Expert 1, row 1, group 1: scale 2^(130-127).
  const int64_t e = 2, n = 2, k = 64, groups = 2;
  std::vector<uint8_t> blocks(e * n * groups * 16), scales(e * n * groups, 127);
  for (size_t b = 0; b < blocks.size(); ++b) blocks[b] = static_cast<uint8_t>((b * 7 + 3) & 0xff);
  scales[(1 * n + 1) * groups + 1] = 130;
  scales[(1 * n + 0) * groups + 0] = 120;
  const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  const Tensor w = DequantizeMxfp4Expert(blocks.data(), scales.data(), 1, n, k, DType::kF32);
  ASSERT_EQ(w.shape(), (std::vector<int64_t>{n, k}));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      const int64_t g = j / 32, byte = ((1 * n + i) * groups + g) * 16 + (j % 32) / 2;
      const int code = j % 2 == 0 ? blocks[byte] & 0x0f : blocks[byte] >> 4;
      const float want = std::ldexp(e2m1[code], scales[(1 * n + i) * groups + g] - 127);
      ASSERT_EQ(w.f32()[i * k + j], want) << i << "," << j;
    }
  }
  const Tensor bf = DequantizeMxfp4Expert(blocks.data(), scales.data(), 1, n, k, DType::kBF16);
  for (int64_t x = 0; x < n * k; ++x) ASSERT_EQ(bf.ToF32().f32()[x], w.f32()[x]);  // exact in bf16
}

TEST(Fp8Test, EncodeIsTheNearestCodeAndRoundTrips) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    const float v = E4m3ToF32(static_cast<uint8_t>(c));
    if (c == 0x80) continue;  // -0 encodes as -0 (0x80) but compares equal to 0
    EXPECT_EQ(F32ToE4m3(v), c) << c;
  }
  EXPECT_EQ(F32ToE4m3(1000.0f), 0x7e);   // saturates at 448
  EXPECT_EQ(F32ToE4m3(-1000.0f), 0xfe);
  EXPECT_EQ(F32ToE4m3(1.0625f), 0x38);   // halfway between 1 (0x38) and 1.125 (0x39): even code
  EXPECT_EQ(F32ToE4m3(1.1875f), 0x3a);   // halfway between 1.125 (0x39) and 1.25 (0x3a): even code
  EXPECT_EQ(F32ToE4m3(1.07f), 0x39);
  const std::vector<float> w = testing::RandomVector(40 * 50, 21, 3.0f);
  std::vector<uint8_t> codes;
  const Tensor scales = QuantizeFp8Blocks(w.data(), 40, 50, 16, 32, &codes);
  ASSERT_OK_AND_ASSIGN(const Tensor back, DequantizeFp8Blocks("w", codes.data(), 40, 50, scales, 16, 32, DType::kF32));
  for (size_t x = 0; x < w.size(); ++x) EXPECT_NEAR(back.f32()[x], w[x], std::fabs(w[x]) / 15 + 1e-3) << x;
}

TEST(Mxfp4Test, QuantizeThenDequantizeIsExactOnTheGridAndNearOffIt) {
  // Row 0: values on the e2m1 grid times 2^-3 (exact); row 1: random (within half a grid step).
  const int64_t n = 2, k = 64;
  std::vector<float> w(n * k);
  const float grid[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  for (int j = 0; j < k; ++j) w[j] = std::ldexp(grid[j % 8] * (j % 3 == 0 ? -1.0f : 1.0f), -3);
  const std::vector<float> r = testing::RandomVector(k, 31, 2.0f);
  std::copy(r.begin(), r.end(), w.begin() + k);
  std::vector<uint8_t> blocks, scales;
  QuantizeMxfp4Expert(w.data(), n, k, &blocks, &scales);
  ASSERT_EQ(blocks.size(), static_cast<size_t>(n * k / 2));
  ASSERT_EQ(scales.size(), static_cast<size_t>(n * k / 32));
  const Tensor back = DequantizeMxfp4Expert(blocks.data(), scales.data(), 0, n, k, DType::kF32);
  for (int j = 0; j < k; ++j) EXPECT_EQ(back.f32()[j], w[j]) << j;
  for (int g = 0; g < 2; ++g) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(w[k + g * 32 + j]));
    const float step = std::ldexp(1.0f, static_cast<int>(std::ceil(std::log2(amax / 6.0f))));  // the grid's unit
    for (int j = 0; j < 32; ++j) EXPECT_LE(std::fabs(back.f32()[k + g * 32 + j] - w[k + g * 32 + j]), step) << j;
  }
}

}  // namespace
}  // namespace moe::model
