// tests/experts/cpu/cpu_amx_product_test.cc
// Our AMX product against a double loop over the same bf16 values, on fresh random data: row
// counts of one and two row tiles and many, K and N that are not multiples of 32 or 64 (the
// packed padding), K cut into several blocks (accumulating across passes), more threads than
// column tiles, a leading dimension past K. Outputs are poisoned first; the padding columns
// must come out 0. Skips, saying why, on CPUs (or kernels) without AMX.
#include "experts/cpu/cpu_amx_product.h"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <ostream>
#include <vector>

#include "base/cpu_features.h"
#include "experts/cpu/cpu_kernel_config.h"
#include "gtest/gtest.h"
#include "model/dtype.h"
#include "tests/testing/random_data.h"

namespace moe::experts {
namespace {

struct Shape {
  int64_t rows, n, k, k_block;
  int threads;
};

void PrintTo(const Shape& s, std::ostream* os) {
  *os << s.rows << " rows, n " << s.n << ", k " << s.k << " in blocks of " << s.k_block << ", " << s.threads
      << " threads";
}

class AmxProductTest : public ::testing::TestWithParam<Shape> {
 protected:
  void SetUp() override {
    absl::StatusOr<CpuKernelConfig> config = ConfigureCpuKernels();
    ASSERT_TRUE(config.ok()) << config.status();
    if (config->choice.isa != base::CpuIsa::kAmx) GTEST_SKIP() << "no AMX here: " << config->line;
  }
};

TEST_P(AmxProductTest, MatchesDoubleLoop) {
  const Shape s = GetParam();
  // bf16 weights [n, k] and inputs [rows, k]; the reference multiplies the same bf16 values.
  std::vector<uint16_t> w(static_cast<size_t>(s.n * s.k));
  const std::vector<float> wf = testing::RandomVector(w.size(), 1000 + s.n + s.k, 0.5f);
  for (size_t i = 0; i < w.size(); ++i) w[i] = model::F32ToBF16(wf[i]);
  absl::StatusOr<PackedWeight> packed =
      PackedWeight::Pack(w.data(), model::DType::kBF16, s.n, s.k, model::DType::kBF16, PackedLayout::kBlocked);
  ASSERT_TRUE(packed.ok()) << packed.status();
  const int64_t ldx = packed->k_pad() + 32, ldy = packed->n_pad() + 16;
  const std::vector<float> xf = testing::RandomVector(static_cast<size_t>(s.rows * s.k), 7 + s.rows);
  std::vector<uint16_t> x(static_cast<size_t>(s.rows * ldx), model::F32ToBF16(std::numeric_limits<float>::quiet_NaN()));
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t c = 0; c < packed->k_pad(); ++c) x[r * ldx + c] = c < s.k ? model::F32ToBF16(xf[r * s.k + c]) : 0;
  }
  std::vector<float> y(static_cast<size_t>(s.rows * ldy), std::numeric_limits<float>::quiet_NaN());  // poison

  AmxProduct(*packed, x.data(), ldx, s.rows, y.data(), ldy, s.threads, s.k_block);

  double worst = 0;
  for (int64_t r = 0; r < s.rows; ++r) {
    for (int64_t j = 0; j < packed->n_pad(); ++j) {
      const float got = y[r * ldy + j];
      if (j >= s.n) {
        ASSERT_EQ(got, 0.0f) << "padding column " << j << " of row " << r;
        continue;
      }
      double want = 0, scale = 0;
      for (int64_t c = 0; c < s.k; ++c) {
        const double term = double(model::BF16ToF32(x[r * ldx + c])) * model::BF16ToF32(w[j * s.k + c]);
        want += term;
        scale += std::abs(term);
      }
      ASSERT_TRUE(std::isfinite(got)) << "row " << r << " column " << j << " not written";
      // f32 accumulation of k bf16 products: error within a few ulps of the sum of |terms|.
      worst = std::max(worst, std::abs(got - want) / scale);
    }
  }
  EXPECT_LE(worst, 1e-6) << s.rows << "x" << s.k << " by " << s.n;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AmxProductTest,
    ::testing::Values(Shape{16, 64, 32, 2048, 1},       // one tile of everything
                      Shape{16, 100, 100, 2048, 2},     // padding in K and N; one row tile
                      Shape{48, 200, 1000, 2048, 2},    // 32 + 16 rows
                      Shape{256, 1024, 1024, 2048, 2},  // the demo's w1|w3 slice
                      Shape{64, 130, 3000, 2048, 2},    // K in two blocks of 1504
                      Shape{32, 70, 300, 64, 3},        // K in five blocks; 3 threads, 2 tiles
                      Shape{528, 64, 96, 32, 2}));      // many row tiles, one column tile

}  // namespace
}  // namespace moe::experts
