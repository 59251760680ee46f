// tests/experts/cpu/cpu_quantized_product_test.cc
// QuantizedProduct against a double loop on the dequantized weights, for every format and every
// ISA level this CPU has (the level is an argument: no MOE_CPU_ISA needed), row counts across the
// kernels' 4-row blocks, output features not a multiple of anything, and strided outputs.
#include "experts/cpu/cpu_quantized_product.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/quantized_data.h"
#include "tests/testing/random_data.h"

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
    // fp8 rows are ragged (200 = 128 + 72); the block formats need multiples of 32.
    const int64_t n = 37, k = format == "fp8_e4m3" ? 200 : 96;
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
  EXPECT_EQ(QuantizedKernelName(model::kQ8_0, base::CpuIsa::kAvx2), "q8_0: dequantize + avx2 dot");
  EXPECT_EQ(QuantizedKernelName(model::kMxfp4, base::CpuIsa::kScalar), "mxfp4: dequantize + scalar dot");
  EXPECT_EQ(QuantizedKernelName(model::kFp8E4m3, base::CpuIsa::kAmx), "fp8_e4m3: dequantize + avx512 dot");
}

}  // namespace
}  // namespace moe::experts
