// tests/experts/cpu/cpu_swiglu_test.cc
// silu(gate)⊙up at every ISA this CPU has against double precision, over the whole range of
// gates (including where exp under- or overflows), for f32 and bf16 activations.
#include "experts/cpu/cpu_swiglu.h"

#include <cmath>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace moe::experts {
namespace {

double SiluMul(double g, double u) { return g / (1.0 + std::exp(-g)) * u; }

TEST(SiluMulRowsTest, EveryIsaMatchesDoublePrecision) {
  const int64_t rows = 5, inter = 83;  // not a multiple of 8 or 16: vector tails
  std::vector<float> gate_up = testing::RandomVector(rows * 2 * inter, 11, 4.0f);
  // Gates where exp(-g) overflows or underflows, and zero.
  const float extremes[] = {-120.0f, -88.0f, -30.0f, 0.0f, 30.0f, 88.0f, 120.0f};
  for (int i = 0; i < 7; ++i) gate_up[i] = extremes[i];
  const base::CpuIsa best = base::BestIsa(base::DetectCpuFeatures());
  for (int level = 0; level <= static_cast<int>(best); ++level) {
    const base::CpuIsa isa = static_cast<base::CpuIsa>(level);
    const int64_t ld = inter + 5;
    std::vector<float> act(rows * ld, std::numeric_limits<float>::quiet_NaN());
    std::vector<uint16_t> act_bf16(rows * ld, 0xffff);
    const float* g = gate_up.data();
    SiluMulRows(isa, g, g + inter, 2 * inter, rows, inter, model::DType::kF32, act.data(), ld, 2);
    SiluMulRows(isa, g, g + inter, 2 * inter, rows, inter, model::DType::kBF16, act_bf16.data(), ld, 2);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < inter; ++i) {
        const double want = SiluMul(gate_up[r * 2 * inter + i], gate_up[r * 2 * inter + inter + i]);
        const double got = act[r * ld + i];
        ASSERT_NEAR(got, want, 3e-7 * std::abs(want) + 1e-30) << base::CpuIsaName(isa) << " row " << r << " col " << i;
        ASSERT_EQ(act_bf16[r * ld + i], model::F32ToBF16(act[r * ld + i])) << base::CpuIsaName(isa) << " bf16 is f32 rounded once";
      }
      for (int64_t i = inter; i < ld; ++i) {  // columns past `cols` are the caller's: untouched
        ASSERT_TRUE(std::isnan(act[r * ld + i]));
        ASSERT_EQ(act_bf16[r * ld + i], 0xffff);
      }
    }
  }
}

}  // namespace
}  // namespace moe::experts
