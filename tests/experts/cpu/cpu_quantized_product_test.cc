// tests/experts/cpu/cpu_quantized_product_test.cc
// QuantizedProduct against a double loop on the dequantized weights, for every format and every
// ISA level this CPU has (the level is an argument: no MOE_CPU_ISA needed), row counts across the
// kernels' 4-row blocks, output features not a multiple of anything, and strided outputs.
#include "experts/cpu/cpu_quantized_product.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "model/dtype.h"
#include "tests/testing/quantized_data.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

std::vector<base::CpuIsa> LevelsOfThisCpu() {
  std::vector<base::CpuIsa> levels;
  const base::CpuIsa best = base::BestIsa(base::DetectCpuFeatures());
  for (int i = 0; i <= static_cast<int>(best); ++i) levels.push_back(static_cast<base::CpuIsa>(i));
  return levels;
}

TEST(QuantizedProductTest, EveryFormatAndLevelMatchesADoubleLoop) {
  for (const std::string& format : testing::TestedWeightFormats()) {
    // fp8 and int8 rows are ragged (200 = 128 + 72); the block formats need whole blocks: three of 32, or
    // two of int4's 128 and of the 256-value super-blocks.
    const int block = model::FindWeightFormat(format)->block;
    const int64_t n = 37, k = model::FindWeightFormat(format)->ragged ? 200 : block == 32 ? 96 : 2 * block;
    const model::QuantizedMatrix w = testing::RandomQuantizedMatrix(format, n, k, 11);
    const std::vector<float> dense = testing::DequantizedValues(w);
    for (const base::CpuIsa isa : LevelsOfThisCpu()) {
      for (const int rows : {1, 3, 4, 5, 8, 9, 17}) {
        const int64_t ldx = k + 3, ldy = n + 5;
        const std::vector<float> x = testing::RandomVector(static_cast<size_t>(rows * ldx), 20 + rows);
        std::vector<float> y(static_cast<size_t>(rows * ldy), std::numeric_limits<float>::quiet_NaN());
        QuantizedProduct(isa, w, x.data(), ldx, rows, y.data(), ldy, 2);
        for (int r = 0; r < rows; ++r) {
          double worst = 0, largest = 0;
          for (int64_t j = 0; j < n; ++j) {
            double want = 0;
            for (int64_t c = 0; c < k; ++c) want += double(dense[j * k + c]) * x[r * ldx + c];
            worst = std::max(worst, std::abs(want - y[r * ldy + j]));
            largest = std::max(largest, std::abs(want));
          }
          EXPECT_LE(worst, 1e-5 * largest) << format << " at " << base::CpuIsaName(isa) << ", " << rows << " rows";
          // Columns past n are not written.
          for (int64_t j = n; j < ldy; ++j) ASSERT_TRUE(std::isnan(y[r * ldy + j]));
        }
      }
    }
  }
}

// Activation rows that are one-hot pick single weights: every level's kernel must return each
// weight bit for bit as the scalar DequantizeRow decodes it (0·w adds exact zeros).
TEST(QuantizedProductTest, EveryKernelDecodesTheWeightsBitForBit) {
  for (const std::string& format : testing::TestedWeightFormats()) {
    const int block = model::FindWeightFormat(format)->block;
    const int64_t n = 5, k = model::FindWeightFormat(format)->ragged ? 200 : block == 32 ? 96 : 2 * block;
    const model::QuantizedMatrix w = testing::RandomQuantizedMatrix(format, n, k, 17);
    const std::vector<float> dense = testing::DequantizedValues(w);
    for (const base::CpuIsa isa : LevelsOfThisCpu()) {
      for (int64_t c0 = 0; c0 < k; c0 += 4) {
        const int rows = static_cast<int>(std::min<int64_t>(4, k - c0));
        std::vector<float> x(static_cast<size_t>(rows * k), 0.0f);
        for (int r = 0; r < rows; ++r) x[r * k + c0 + r] = 1.0f;
        std::vector<float> y(static_cast<size_t>(rows * n));
        QuantizedProduct(isa, w, x.data(), k, rows, y.data(), n, 1);
        for (int r = 0; r < rows; ++r) {
          for (int64_t j = 0; j < n; ++j) {
            ASSERT_EQ(y[r * n + j], dense[j * k + c0 + r])
                << format << " at " << base::CpuIsaName(isa) << ": W[" << j << ", " << c0 + r << "]";
          }
        }
      }
    }
  }
}

// Products of raw matrices, against the double loop on DequantizeRow (the scalar decoding):
// every level must give the format's values, here at the edges the generators do not reach.
void ExpectProductsMatch(const model::QuantizedMatrix& w, const std::string& what) {
  const std::vector<float> dense = testing::DequantizedValues(w);
  for (const base::CpuIsa isa : LevelsOfThisCpu()) {
    for (const int rows : {1, 6}) {
      const std::vector<float> x = testing::RandomVector(static_cast<size_t>(rows * w.k()), 7 + rows);
      std::vector<float> y(static_cast<size_t>(rows * w.n()));
      QuantizedProduct(isa, w, x.data(), w.k(), rows, y.data(), w.n(), 2);
      for (int r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < w.n(); ++j) {
          double want = 0, size = 0;
          for (int64_t c = 0; c < w.k(); ++c) {
            want += double(dense[j * w.k() + c]) * x[r * w.k() + c];
            size += std::abs(double(dense[j * w.k() + c]) * x[r * w.k() + c]);
          }
          ASSERT_LE(std::abs(want - y[r * w.n() + j]), 1e-6 * size + 1e-30)
              << what << " at " << base::CpuIsaName(isa) << ", row " << r << ", feature " << j;
        }
      }
    }
  }
}

TEST(QuantizedProductTest, Mxfp4ScalesAtTheirExtremes) {
  std::vector<uint8_t> bytes = testing::RandomBytes(8 * 2 * 17, 5);
  const uint8_t exponents[] = {0, 1, 100, 127, 160, 200};  // (2^127 · 6 is past f32: inf either way)
  for (size_t b = 0; b < 16; ++b) bytes[b * 17] = exponents[b % 6];
  ASSERT_OK_AND_ASSIGN(const model::QuantizedMatrix w, model::QuantizedMatrix::FromBytes(model::kMxfp4, 8, 64, bytes.data()));
  ExpectProductsMatch(w, "mxfp4");
}

TEST(QuantizedProductTest, Fp8GridsNarrowerThanAVectorAndRaggedSpans) {
  std::vector<uint8_t> codes = testing::RandomBytes(33 * 50, 6);
  for (uint8_t& c : codes) c = (c & 0x7f) == 0x7f ? 0x3f : c;  // no NaN codes
  // Spans of 20 (20 + 20 + 10 values: vector bodies and scalar tails) in row blocks of 16.
  model::ScaleGrid grid{.scales = testing::RandomVector(3 * 3, 8), .rows = 16, .cols = 20};
  ASSERT_OK_AND_ASSIGN(const model::QuantizedMatrix w,
                       model::QuantizedMatrix::FromBytes(model::kFp8E4m3, 33, 50, codes.data(), 0, grid));
  ExpectProductsMatch(w, "fp8_e4m3");
}

TEST(QuantizedProductTest, Q8_0AndQ4_0FromRawBlocks) {
  for (const model::WeightFormat* f : {&model::kQ8_0, &model::kQ4_0}) {
    std::vector<uint8_t> bytes = testing::RandomBytes(5 * 3 * f->block_bytes, 9);
    for (size_t b = 0; b < 15; ++b) {  // finite f16 scales, some subnormal
      bytes[b * f->block_bytes + 1] = static_cast<uint8_t>(bytes[b * f->block_bytes + 1] % 0x78);
    }
    ASSERT_OK_AND_ASSIGN(const model::QuantizedMatrix w, model::QuantizedMatrix::FromBytes(*f, 5, 96, bytes.data()));
    ExpectProductsMatch(w, f->name);
  }
}

TEST(QuantizedProductTest, Int8ActivationsAreWithinHalfAStep) {
  const std::vector<float> x = testing::RandomVector(3 * 70, 12);
  Int8Activations q;
  QuantizeActivationsInt8(x.data(), 70, 3, 64, &q);
  for (int r = 0; r < 3; ++r) {
    for (int c = 0; c < 64; ++c) {
      const float d = q.d[r * 2 + c / 32];
      EXPECT_LE(std::abs(q.q[r * 64 + c] * d - x[r * 70 + c]), 0.5001f * d) << r << "," << c;
      EXPECT_LE(std::abs(int{q.q[r * 64 + c]}), 127);
    }
  }
}

// Compares QuantizedProductInt8 on `w` with a double loop on the dequantized weights and the
// quantized activations' values: exact integer sums, so as close as f32 scaling allows.
void ExpectInt8ProductsMatch(const model::QuantizedMatrix& w, const std::string& what) {
  const int64_t n = w.n(), k = w.k();
  const std::vector<float> dense = testing::DequantizedValues(w);
  for (const base::CpuIsa isa : LevelsOfThisCpu()) {
    if (!HasInt8Kernel(w.format(), isa)) continue;
    for (const int rows : {1, 2, 3, 4, 5, 9}) {
      const std::vector<float> x = testing::RandomVector(static_cast<size_t>(rows * k), 30 + rows);
      Int8Activations q;
      QuantizeActivationsInt8(x.data(), k, rows, k, &q);
      const int64_t ldy = n + 2;
      std::vector<float> y(static_cast<size_t>(rows * ldy), std::numeric_limits<float>::quiet_NaN());
      QuantizedProductInt8(isa, w, q, rows, y.data(), ldy, 2);
      for (int r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < n; ++j) {
          double want = 0, size = 0;
          for (int64_t c = 0; c < k; ++c) {
            const double xv = double(q.q[r * k + c]) * q.d[r * (k / 32) + c / 32];
            want += double(dense[j * k + c]) * xv;
            size += std::abs(double(dense[j * k + c]) * xv);
          }
          // (An absolute floor for sums of subnormal weights, which have no relative precision.)
          ASSERT_LE(std::abs(want - y[r * ldy + j]), 1e-6 * size + 1e-37)
              << what << " at " << base::CpuIsaName(isa) << ", " << rows << " rows, row " << r << ", feature " << j;
        }
        for (int64_t j = n; j < ldy; ++j) ASSERT_TRUE(std::isnan(y[r * ldy + j]));
      }
    }
  }
}

// Every block format has an int8 kernel from AVX2 up (the one-byte fp8_e4m3 and int8 do not);
// k = 512: two super-blocks, four int4 groups, sixteen blocks of 32.
TEST(QuantizedProductTest, Int8KernelsMatchTheDoubleLoopOnQuantizedActivations) {
  for (const std::string& format : testing::TestedWeightFormats()) {
    const model::WeightFormat& f = *model::FindWeightFormat(format);
    EXPECT_EQ(HasInt8Kernel(f, base::CpuIsa::kAvx2), !f.ragged) << format;
    if (f.ragged) continue;
    ExpectInt8ProductsMatch(testing::RandomQuantizedMatrix(format, 37, 512, 13), format);
  }
}

// Raw blocks: every code a format can store (q8_0's −128 included) and small, subnormal or large
// scales.
TEST(QuantizedProductTest, Int8KernelsOnRawBlocks) {
  for (const model::WeightFormat* f : {&model::kQ8_0, &model::kQ4_0}) {
    std::vector<uint8_t> bytes = testing::RandomBytes(5 * 8 * f->block_bytes, 19);
    for (size_t b = 0; b < 40; ++b) {  // finite f16 scales, some subnormal
      bytes[b * f->block_bytes + 1] = static_cast<uint8_t>(bytes[b * f->block_bytes + 1] % 0x78);
    }
    if (f == &model::kQ8_0) bytes[2] = 0x80;
    ASSERT_OK_AND_ASSIGN(const model::QuantizedMatrix w, model::QuantizedMatrix::FromBytes(*f, 5, 256, bytes.data()));
    ExpectInt8ProductsMatch(w, f->name);
  }
  std::vector<uint8_t> bytes = testing::RandomBytes(8 * 2 * 17, 5);
  const uint8_t exponents[] = {0, 1, 100, 127, 140, 118};
  for (size_t b = 0; b < 16; ++b) bytes[b * 17] = exponents[b % 6];
  for (const model::WeightFormat* f : {&model::kMxfp4, &model::kMxfp4Gguf}) {
    ASSERT_OK_AND_ASSIGN(const model::QuantizedMatrix w, model::QuantizedMatrix::FromBytes(*f, 8, 64, bytes.data()));
    ExpectInt8ProductsMatch(w, f->name);
  }
}

// vpdpbusd and vpmaddubsw + vpmaddwd give the same exact integer sums, and the scaling after them
// is the same code: the AVX512-VNNI kernels equal the AVX2 ones bit for bit, for every format and
// row count across the 4-row blocks.
TEST(QuantizedProductTest, Avx512VnniKernelsEqualTheAvx2OnesBitForBit) {
  if (base::BestIsa(base::DetectCpuFeatures()) < base::CpuIsa::kAvx512Vnni) {
    GTEST_SKIP() << "no AVX512-VNNI on this CPU (" << base::DetectCpuFeatures().model << ")";
  }
  for (const std::string& format : testing::TestedWeightFormats()) {
    const model::WeightFormat& f = *model::FindWeightFormat(format);
    if (!HasInt8Kernel(f, base::CpuIsa::kAvx512Vnni)) continue;
    EXPECT_NE(QuantizedKernelName(f, base::CpuIsa::kAvx512Vnni, QuantizedActivations::kInt8).find("avx512_vnni int8 dot"),
              std::string::npos)
        << format;
    const model::QuantizedMatrix w = testing::RandomQuantizedMatrix(format, 21, 768, 17);
    for (const int rows : {1, 2, 3, 4, 5, 7, 8, 13}) {
      const std::vector<float> x = testing::RandomVector(static_cast<size_t>(rows * w.k()), 50 + rows);
      Int8Activations q;
      QuantizeActivationsInt8(x.data(), w.k(), rows, w.k(), &q);
      std::vector<float> avx2(static_cast<size_t>(rows * w.n())), vnni(avx2.size());
      QuantizedProductInt8(base::CpuIsa::kAvx2, w, q, rows, avx2.data(), w.n(), 2);
      QuantizedProductInt8(base::CpuIsa::kAvx512Vnni, w, q, rows, vnni.data(), w.n(), 2);
      for (size_t i = 0; i < avx2.size(); ++i) {
        ASSERT_EQ(avx2[i], vnni[i]) << format << ", " << rows << " rows, output " << i;
      }
    }
  }
}

// QuantizedProductBf16 against a double loop on bf16(the exact dequantized weights) × the bf16
// activations: the decoded row must round each exact value (d·q − m included) to nearest even,
// so only the f32 summation order differs. Rows across the 8/4/2/1-row blocks, strided outputs.
TEST(QuantizedProductTest, Bf16KernelsMatchTheDoubleLoopOnBf16Values) {
  const base::CpuIsa best = base::BestIsa(base::DetectCpuFeatures());
  for (const std::string& format : testing::TestedWeightFormats()) {
    const model::WeightFormat& f = *model::FindWeightFormat(format);
    EXPECT_FALSE(HasBf16Kernel(f, base::CpuIsa::kAvx512Vnni)) << format;
    EXPECT_EQ(HasBf16Kernel(f, base::CpuIsa::kAvx512Bf16), !f.ragged) << format;
    if (best < base::CpuIsa::kAvx512Bf16) continue;
    if (f.ragged) continue;
    const model::QuantizedMatrix w = testing::RandomQuantizedMatrix(format, 23, 512, 29);
    const int64_t n = w.n(), k = w.k();
    const std::vector<float> dense = testing::DequantizedValues(w);
    for (const base::CpuIsa isa : {base::CpuIsa::kAvx512Bf16, best}) {
      for (const int rows : {1, 2, 3, 4, 5, 8, 11, 16, 19}) {
        const std::vector<float> x = testing::RandomVector(static_cast<size_t>(rows * k), 60 + rows);
        Bf16Activations b;
        ConvertActivationsBf16(isa, x.data(), k, rows, k, &b);
        const int64_t ldy = n + 3;
        std::vector<float> y(static_cast<size_t>(rows * ldy), std::numeric_limits<float>::quiet_NaN());
        QuantizedProductBf16(isa, w, b, rows, y.data(), ldy, 2);
        for (int r = 0; r < rows; ++r) {
          for (int64_t j = 0; j < n; ++j) {
            double want = 0, size = 0;
            for (int64_t c = 0; c < k; ++c) {
              const double wv = model::BF16ToF32(model::F32ToBF16(dense[j * k + c]));
              const double xv = model::BF16ToF32(b.x[r * k + c]);
              ASSERT_EQ(b.x[r * k + c], model::F32ToBF16(x[r * k + c]));
              want += wv * xv;
              size += std::abs(wv * xv);
            }
            ASSERT_LE(std::abs(want - y[r * ldy + j]), 1e-6 * size + 1e-37)
                << format << " at " << base::CpuIsaName(isa) << ", " << rows << " rows, row " << r << ", feature "
                << j;
          }
          for (int64_t j = n; j < ldy; ++j) ASSERT_TRUE(std::isnan(y[r * ldy + j]));
        }
      }
    }
  }
  if (best < base::CpuIsa::kAvx512Bf16) GTEST_SKIP() << "no AVX512_BF16 on this CPU to run the bf16 kernels";
}

TEST(QuantizedProductTest, Int8ActivationBlockSumsAreTheirValuesSum) {
  const std::vector<float> x = testing::RandomVector(2 * 96, 21);
  Int8Activations q;
  QuantizeActivationsInt8(x.data(), 96, 2, 96, &q);
  for (int b = 0; b < 6; ++b) {
    int sum = 0;
    for (int i = 0; i < 32; ++i) sum += q.q[b * 32 + i];
    EXPECT_EQ(q.sum[b], q.d[b] * static_cast<float>(sum)) << b;
  }
}

TEST(QuantizedProductTest, DequantizeRowsF32IsDequantizeRow) {
  const model::QuantizedMatrix w = testing::RandomQuantizedMatrix("q4_0", 10, 64, 3);
  const std::vector<float> dense = testing::DequantizedValues(w);
  std::vector<float> out(4 * 70, -1.0f);
  DequantizeRowsF32(w, 3, 4, out.data(), 70, 2);
  for (int j = 0; j < 4; ++j) {
    for (int c = 0; c < 64; ++c) ASSERT_EQ(out[j * 70 + c], dense[(3 + j) * 64 + c]);
    for (int c = 64; c < 70; ++c) ASSERT_EQ(out[j * 70 + c], -1.0f);
  }
}

TEST(QuantizedProductTest, KernelNamesSayFormatAndLevel) {
  EXPECT_EQ(QuantizedKernelName(model::kQ8_0, base::CpuIsa::kAvx2), "q8_0: avx2 (blocks decoded in registers)");
  EXPECT_EQ(QuantizedKernelName(model::kMxfp4, base::CpuIsa::kScalar), "mxfp4: dequantize + scalar dot");
  EXPECT_EQ(QuantizedKernelName(model::kFp8E4m3, base::CpuIsa::kAmx), "fp8_e4m3: avx2 (codes decoded in registers)");
  EXPECT_EQ(QuantizedKernelName(model::kInt8, base::CpuIsa::kAvx512), "int8: avx2 (codes decoded in registers)");
  EXPECT_EQ(QuantizedKernelName(model::kQ4_0, base::CpuIsa::kAvx512, QuantizedActivations::kInt8),
            "q4_0: avx2 int8 dot (activations in 8 bits a value, a scale per 32)");
  EXPECT_EQ(QuantizedKernelName(model::kQ4_K, base::CpuIsa::kAvx2, QuantizedActivations::kInt8),
            "q4_k: avx2 int8 dot (activations in 8 bits a value, a scale per 32)");
  EXPECT_EQ(QuantizedKernelName(model::kFp8E4m3, base::CpuIsa::kAvx2, QuantizedActivations::kInt8),
            "fp8_e4m3: avx2 (codes decoded in registers)");
  EXPECT_EQ(QuantizedKernelName(model::kQ4_K, base::CpuIsa::kAvx512Vnni, QuantizedActivations::kInt8),
            "q4_k: avx512_vnni int8 dot (activations in 8 bits a value, a scale per 32)");
  EXPECT_EQ(QuantizedKernelName(model::kQ4_K, base::CpuIsa::kAvx512Vnni), "q4_k: avx2 (blocks decoded in registers)");
  EXPECT_EQ(QuantizedKernelName(model::kQ8_0, base::CpuIsa::kAmx, QuantizedActivations::kInt8),
            "q8_0: avx512_vnni int8 dot (activations in 8 bits a value, a scale per 32)");
  EXPECT_EQ(QuantizedKernelName(model::kQ6_K, base::CpuIsa::kAmx, QuantizedActivations::kBf16),
            "q6_k: avx512_bf16 bf16 dot (rows decoded once to bf16, activations in bf16)");
  EXPECT_EQ(QuantizedKernelName(model::kQ6_K, base::CpuIsa::kAvx512Vnni, QuantizedActivations::kBf16),
            "q6_k: avx2 (blocks decoded in registers)");
  EXPECT_FALSE(HasInt8Kernel(model::kQ8_0, base::CpuIsa::kScalar));
}

}  // namespace
}  // namespace moe::experts
