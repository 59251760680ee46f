// tests/model/quantized_matrix_test.cc
// Every code of every weight format against a double-precision decoding written from the format's
// definition (not from our tables), ragged FP8 rows under a 2-D scale grid, the reference
// quantizers' rounding and range, and the errors of bad shapes.
#include "model/quantized_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "model/dtype.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::StatusIs;

// OCP e4m3fn: sign, 4 exponent bits (bias 7), 3 mantissa bits; S.1111.111 is NaN.
double E4m3(uint8_t c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return std::nan("");
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1.0 + m / 8.0, e - 7);
  return s ? -v : v;
}

// OCP e2m1: sign, 2 exponent bits (bias 1), 1 mantissa bit.
double E2m1(int c) {
  const int s = c >> 3, e = (c >> 1) & 3, m = c & 1;
  const double v = e == 0 ? m * 0.5 : std::ldexp(1.0 + m / 2.0, e - 1);
  return s ? -v : v;
}

std::vector<float> Row(const QuantizedMatrix& m, int64_t r) {
  std::vector<float> out(static_cast<size_t>(m.k()));
  m.DequantizeRow(r, out.data());
  return out;
}

TEST(WeightFormatTest, RegistryNamesEveryFormat) {
  for (const std::string& name : WeightFormatNames()) {
    const WeightFormat* f = FindWeightFormat(name);
    ASSERT_NE(f, nullptr) << name;
    EXPECT_EQ(f->name, name);
  }
  EXPECT_EQ(FindWeightFormat("q3_z"), nullptr);
  EXPECT_EQ(QuantizableFormatNames(), (std::vector<std::string>{"q8_0", "q4_0", "q4_k", "q6_k", "int4"}));
}

TEST(QuantizedMatrixTest, Q8_0EveryCodeIsScaleTimesCode) {
  for (const float d : {0.0078125f, 0.3f, 1e-4f}) {
    const uint16_t d_bits = F32ToF16(d);
    std::vector<uint8_t> rows;
    for (int b = 0; b < 8; ++b) {  // 8 blocks of 32: the 256 codes
      rows.insert(rows.end(), {static_cast<uint8_t>(d_bits & 0xff), static_cast<uint8_t>(d_bits >> 8)});
      for (int i = 0; i < 32; ++i) rows.push_back(static_cast<uint8_t>(b * 32 + i));
    }
    ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kQ8_0, 1, 256, rows.data()));
    EXPECT_EQ(m.bytes(), 8u * 34);
    const std::vector<float> got = Row(m, 0);
    for (int c = 0; c < 256; ++c) {
      const double want = double(F16ToF32(d_bits)) * static_cast<int8_t>(static_cast<uint8_t>(c));
      EXPECT_EQ(got[c], static_cast<float>(want)) << "code " << c << " d " << d;
    }
  }
}

TEST(QuantizedMatrixTest, Q4_0EveryCodeInBothNibbles) {
  const uint16_t d_bits = F32ToF16(-0.21f);
  std::vector<uint8_t> block = {static_cast<uint8_t>(d_bits & 0xff), static_cast<uint8_t>(d_bits >> 8)};
  for (int i = 0; i < 16; ++i) block.push_back(static_cast<uint8_t>(i | ((15 - i) << 4)));
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kQ4_0, 1, 32, block.data()));
  const std::vector<float> got = Row(m, 0);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(got[i], static_cast<float>(double(F16ToF32(d_bits)) * (i - 8))) << i;
    EXPECT_EQ(got[i + 16], static_cast<float>(double(F16ToF32(d_bits)) * (15 - i - 8))) << i + 16;
  }
}

TEST(QuantizedMatrixTest, Mxfp4EveryCodeAtSeveralExponents) {
  for (const int s : {1, 117, 127, 130, 254}) {
    std::vector<uint8_t> block = {static_cast<uint8_t>(s)};
    for (int i = 0; i < 16; ++i) block.push_back(static_cast<uint8_t>(i | ((15 - i) << 4)));
    ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kMxfp4, 1, 32, block.data()));
    const std::vector<float> got = Row(m, 0);
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(got[2 * i], static_cast<float>(std::ldexp(E2m1(i), s - 127))) << "s " << s << " code " << i;
      EXPECT_EQ(got[2 * i + 1], static_cast<float>(std::ldexp(E2m1(15 - i), s - 127))) << "s " << s;
    }
  }
}

TEST(QuantizedMatrixTest, Fp8EveryCodeTimesItsGridScale) {
  std::vector<uint8_t> codes(256);
  for (int c = 0; c < 256; ++c) codes[c] = static_cast<uint8_t>(c);
  ScaleGrid grid{.scales = {0.75f, 1.0f / 3}, .rows = 128, .cols = 128};
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kFp8E4m3, 1, 256, codes.data(), 0, grid));
  EXPECT_EQ(m.bytes(), 256u + 2 * sizeof(float));
  const std::vector<float> got = Row(m, 0);
  for (int c = 0; c < 256; ++c) {
    const double want = E4m3(static_cast<uint8_t>(c));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got[c])) << c;
      continue;
    }
    // e4m3 × scale rounded once to f32, as transformers computes it in f32.
    EXPECT_EQ(got[c], static_cast<float>(want) * grid.scales[c / 128]) << "code " << c;
  }
}

TEST(QuantizedMatrixTest, Int8EveryCodeTimesItsChannelScale) {
  // compressed-tensors' int-quantized weights: signed codes, one scale per output row (a grid one
  // row high and the whole width wide).
  std::vector<uint8_t> codes(2 * 256);
  for (int c = 0; c < 512; ++c) codes[c] = static_cast<uint8_t>(c % 256);
  ScaleGrid grid{.scales = {0.75f, 1.0f / 3}, .rows = 1, .cols = 256};
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kInt8, 2, 256, codes.data(), 0, grid));
  EXPECT_EQ(m.bytes(), 512u + 2 * sizeof(float));
  for (int r = 0; r < 2; ++r) {
    const std::vector<float> got = Row(m, r);
    for (int c = 0; c < 256; ++c) {
      const int value = c < 128 ? c : c - 256;  // two's complement
      EXPECT_EQ(got[c], static_cast<float>(value) * grid.scales[r]) << "row " << r << ", code " << c;
    }
  }
}

TEST(QuantizedMatrixTest, Fp8GridsOfAnyWidth) {
  // DeepSeek's 128 × 128 and the 16 × 16 of tiny test checkpoints alike.
  std::vector<uint8_t> codes(40, 0x38);  // 1.0
  ScaleGrid grid{.scales = {1, 2, 3}, .rows = 16, .cols = 16};
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kFp8E4m3, 1, 40, codes.data(), 0, grid));
  const std::vector<float> got = Row(m, 0);
  for (int c = 0; c < 40; ++c) EXPECT_EQ(got[c], grid.scales[c / 16]) << c;
}

TEST(QuantizedMatrixTest, RaggedFp8RowsAndColumnsTakeTheirBlocksScale) {
  // [130, 200] in 128 × 128 blocks: a grid of 2 × 2, the last row and column blocks ragged.
  const int64_t n = 130, k = 200;
  std::vector<uint8_t> codes(static_cast<size_t>(n * k), 0x38);  // 1.0
  ScaleGrid grid{.scales = {1, 2, 3, 4}, .rows = 128, .cols = 128};
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kFp8E4m3, n, k, codes.data(), 0, grid));
  EXPECT_EQ(m.row_bytes(), k);
  for (const int64_t r : {0, 127, 128, 129}) {
    const std::vector<float> got = Row(m, r);
    for (const int64_t c : {0, 127, 128, 199}) EXPECT_EQ(got[c], grid.scales[(r / 128) * 2 + c / 128]) << r << "," << c;
  }
}

TEST(QuantizedMatrixTest, Q8_0QuantizerRoundsToNearestWithinHalfAStep) {
  const std::vector<float> w = testing::RandomVector(4 * 64, 5);
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::Quantize(kQ8_0, w.data(), 4, 64));
  for (int64_t r = 0; r < 4; ++r) {
    const std::vector<float> got = Row(m, r);
    for (int b = 0; b < 2; ++b) {
      float amax = 0;
      for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(w[r * 64 + b * 32 + i]));
      const double d = F16ToF32(F32ToF16(amax / 127));
      for (int i = 0; i < 32; ++i) {
        // Half a step, plus d's rounding to f16 (amax / 127 vs the stored d) times the code.
        EXPECT_LE(std::fabs(got[b * 32 + i] - w[r * 64 + b * 32 + i]), 0.5001 * d + std::fabs(d * 127 - amax))
            << r << " " << b << " " << i;
      }
    }
  }
  const std::vector<float> zeros(32, 0.0f);
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix z, QuantizedMatrix::Quantize(kQ8_0, zeros.data(), 1, 32));
  for (float v : Row(z, 0)) EXPECT_EQ(v, 0.0f);
}

TEST(QuantizedMatrixTest, Q4_0QuantizerKeepsTheLargestValueAndSixteenLevels) {
  const std::vector<float> w = testing::RandomVector(64, 8);
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::Quantize(kQ4_0, w.data(), 1, 64));
  const std::vector<float> got = Row(m, 0);
  for (int b = 0; b < 2; ++b) {
    int arg = 0;
    for (int i = 0; i < 32; ++i) arg = std::fabs(w[b * 32 + i]) > std::fabs(w[b * 32 + arg]) ? i : arg;
    const double d = F16ToF32(F32ToF16(w[b * 32 + arg] / -8));
    EXPECT_NEAR(got[b * 32 + arg], w[b * 32 + arg], std::fabs(w[b * 32 + arg]) * 1e-3);  // -8·d, d in f16
    for (int i = 0; i < 32; ++i) {
      // Half a step, except past 6.5 steps on the other side of the largest value: code 15 (7 steps).
      const double t = w[b * 32 + i] / d;
      EXPECT_LE(std::fabs(got[b * 32 + i] - w[b * 32 + i]), std::fabs(d) * std::max(0.5, t - 7) * 1.001 + 1e-7) << i;
    }
  }
}

// Q4_K's 12 bytes of scales and mins, packed by hand as ggml-common.h lays them out (bytes 0-3:
// scales 0-3 and the top bits of scales 4-7; bytes 4-7: mins 0-3 and the top bits of mins 4-7;
// bytes 8-11: the low nibbles of scales and mins 4-7), every nibble of both halves.
TEST(QuantizedMatrixTest, Q4_KScalesMinsAndBothNibblesOfEverySubBlock) {
  int sc[8], mn[8];
  for (int j = 0; j < 8; ++j) {
    sc[j] = 5 + 7 * j;   // 5 … 54: both ranges of bits
    mn[j] = 63 - 8 * j;  // 63 … 7
  }
  std::vector<uint8_t> block(144, 0);
  const uint16_t d_bits = F32ToF16(0.0123f), m_bits = F32ToF16(0.0071f);
  std::memcpy(block.data(), &d_bits, 2);
  std::memcpy(block.data() + 2, &m_bits, 2);
  for (int j = 0; j < 4; ++j) {
    block[4 + j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    block[8 + j] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    block[12 + j] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
  }
  for (int b = 0; b < 128; ++b) block[16 + b] = static_cast<uint8_t>((b % 16) | ((15 - b % 16) << 4));
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kQ4_K, 1, 256, block.data()));
  EXPECT_EQ(m.bytes(), 144u);
  const std::vector<float> got = Row(m, 0);
  const float d = F16ToF32(d_bits), dmin = F16ToF32(m_bits);
  for (int i = 0; i < 256; ++i) {
    const int j = i / 32, l = i % 32;  // sub-block j: the low (j even) or high nibbles of 32 bytes
    const int q = j % 2 == 0 ? l % 16 : 15 - l % 16;
    const float want = (d * static_cast<float>(sc[j])) * static_cast<float>(q) - dmin * static_cast<float>(mn[j]);
    ASSERT_EQ(got[i], want) << "element " << i;
  }
}

TEST(QuantizedMatrixTest, Int4EveryCodeAndZeroPoint) {
  for (int z = 0; z < 16; z += 5) {
    std::vector<uint8_t> block(67);
    const uint16_t s_bits = F32ToF16(-0.037f);
    std::memcpy(block.data(), &s_bits, 2);
    block[2] = static_cast<uint8_t>(z);
    for (int i = 0; i < 64; ++i) block[3 + i] = static_cast<uint8_t>((i % 16) | ((i / 4) << 4));
    ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::FromBytes(kInt4, 1, 128, block.data()));
    const std::vector<float> got = Row(m, 0);
    for (int i = 0; i < 64; ++i) {
      EXPECT_EQ(got[i], static_cast<float>(double(F16ToF32(s_bits)) * (i % 16 - z))) << i;
      EXPECT_EQ(got[i + 64], static_cast<float>(double(F16ToF32(s_bits)) * (i / 4 - z))) << i + 64;
    }
  }
}

// RMS error of W quantized to `format` and back, relative to W's RMS.
double RoundTripError(const WeightFormat& format, const std::vector<float>& w, int64_t n, int64_t k) {
  absl::StatusOr<QuantizedMatrix> m = QuantizedMatrix::Quantize(format, w.data(), n, k);
  EXPECT_TRUE(m.ok()) << m.status();
  if (!m.ok()) return 1;
  double num = 0, den = 0;
  for (int64_t r = 0; r < n; ++r) {
    const std::vector<float> got = Row(*m, r);
    for (int64_t c = 0; c < k; ++c) {
      num += (got[c] - w[r * k + c]) * double(got[c] - w[r * k + c]);
      den += double(w[r * k + c]) * w[r * k + c];
    }
  }
  return std::sqrt(num / den);
}

// The quantizers on Gaussian weights: more bits, less error (q8_0 < q6_k < q4_k ≤ q4_0), each
// near what its step size allows (a uniform error of step s has RMS s/√12: ~0.5 % for 8 bits,
// ~2 % for 6, ~9 % for 4 on Gaussian rows), and int4's error within half a step of each group.
TEST(QuantizedMatrixTest, QuantizersErrorsFollowTheirBits) {
  const int64_t n = 16, k = 1024;
  const std::vector<float> w = testing::RandomVector(static_cast<size_t>(n * k), 5, 0.03f);
  const double q8 = RoundTripError(kQ8_0, w, n, k), q6 = RoundTripError(kQ6_K, w, n, k);
  const double q4k = RoundTripError(kQ4_K, w, n, k), q4 = RoundTripError(kQ4_0, w, n, k);
  const double i4 = RoundTripError(kInt4, w, n, k);
  std::printf("round-trip RMS error: q8_0 %.4f, q6_k %.4f, q4_k %.4f, q4_0 %.4f, int4 %.4f\n", q8, q6, q4k, q4, i4);
  EXPECT_LT(q8, 0.01);
  EXPECT_LT(q6, 0.04);
  EXPECT_LT(q8, q6);
  EXPECT_LT(q6, q4k);
  EXPECT_LE(q4k, q4);
  EXPECT_LT(q4k, 0.12);
  EXPECT_LT(i4, 0.15);
  ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::Quantize(kInt4, w.data(), n, k));
  for (int64_t r = 0; r < n; ++r) {
    const std::vector<float> got = Row(m, r);
    for (int64_t g = 0; g < k / 128; ++g) {
      float lo = 0, hi = 0;
      for (int i = 0; i < 128; ++i) {
        lo = std::min(lo, w[r * k + g * 128 + i]);
        hi = std::max(hi, w[r * k + g * 128 + i]);
      }
      const double step = (hi - lo) / 15.0;
      for (int i = 0; i < 128; ++i) {
        ASSERT_LE(std::fabs(got[g * 128 + i] - w[r * k + g * 128 + i]), 0.5 * step * 1.01 + 1e-7)
            << "row " << r << " group " << g << " value " << i;
      }
    }
  }
}

// All-zero and constant blocks quantize to exact values, never NaN.
TEST(QuantizedMatrixTest, QuantizersTakeZeroAndConstantBlocks) {
  for (const WeightFormat* f : {&kQ8_0, &kQ4_0, &kQ4_K, &kQ6_K, &kInt4}) {
    for (const float v : {0.0f, 0.25f, -3.0f}) {
      const std::vector<float> w(256, v);
      ASSERT_OK_AND_ASSIGN(QuantizedMatrix m, QuantizedMatrix::Quantize(*f, w.data(), 1, 256));
      const std::vector<float> got = Row(m, 0);
      for (int i = 0; i < 256; ++i) ASSERT_NEAR(got[i], v, std::fabs(v) * 2e-3) << f->name << " " << v << " at " << i;
    }
  }
}

TEST(QuantizedMatrixTest, BadShapesAndFormatsAreRefused) {
  const std::vector<uint8_t> bytes(1024);
  EXPECT_THAT(QuantizedMatrix::FromBytes(kQ8_0, 1, 33, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, "multiple of 32"));
  EXPECT_THAT(QuantizedMatrix::FromBytes(kQ8_0, 0, 32, bytes.data()), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_THAT(QuantizedMatrix::FromBytes(kFp8E4m3, 2, 200, bytes.data(), 0, {.scales = {1, 2, 3}, .rows = 128, .cols = 128}),
              StatusIs(absl::StatusCode::kInvalidArgument, "does not cover"));
  EXPECT_THAT(QuantizedMatrix::FromBytes(kFp8E4m3, 2, 200, bytes.data(), 0, {.scales = {1}, .rows = 128, .cols = 64}),
              StatusIs(absl::StatusCode::kInvalidArgument, "does not cover"));
  EXPECT_THAT(QuantizedMatrix::FromBytes(kQ8_0, 2, 64, bytes.data(), 0, {.scales = {1, 1}, .rows = 2, .cols = 48}),
              StatusIs(absl::StatusCode::kInvalidArgument, "does not cover"));
  const std::vector<float> w(64, 1.0f);
  EXPECT_THAT(QuantizedMatrix::Quantize(kMxfp4, w.data(), 1, 64),
              StatusIs(absl::StatusCode::kInvalidArgument, "only read from checkpoints"));
  EXPECT_THAT(QuantizedMatrix::Quantize(kQ4_0, w.data(), 2, 32 + 1), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_THAT(QuantizedMatrix::FromBytes(kQ4_K, 1, 128, bytes.data()),
              StatusIs(absl::StatusCode::kInvalidArgument, "multiple of 256"));
  EXPECT_THAT(QuantizedMatrix::Quantize(kInt4, w.data(), 1, 64), StatusIs(absl::StatusCode::kInvalidArgument, "multiple of 128"));
}

}  // namespace
}  // namespace moe::model
