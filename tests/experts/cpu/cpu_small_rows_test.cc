// tests/experts/cpu/cpu_small_rows_test.cc
// RoundToBf16 at every ISA this CPU has equals the scalar F32ToBF16 bit for bit (the products
// themselves are tested through the backend, tests/experts/cpu/cpu_backend_test.cc).
#include "experts/cpu/cpu_small_rows.h"

#include <cstring>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace moe::experts {
namespace {

TEST(RoundToBf16Test, EveryIsaMatchesScalarBitForBit) {
  std::vector<float> src = testing::RandomVector(1003, 4, 3.0f);  // not a multiple of 16
  // Ties (both parities), NaNs with payloads, infinities, signed zeros, denormals.
  for (uint32_t bits : {0x3f808000u, 0x3f818000u, 0x7fc00001u, 0xffa00000u, 0x7f800000u, 0xff800000u,
                        0x80000000u, 0x00000001u, 0x7f7fffffu}) {
    float f;
    std::memcpy(&f, &bits, 4);
    src.push_back(f);
  }
  const base::CpuIsa best = base::BestIsa(base::DetectCpuFeatures());
  for (int level = 0; level <= static_cast<int>(best); ++level) {
    const base::CpuIsa isa = static_cast<base::CpuIsa>(level);
    std::vector<uint16_t> got(src.size(), 0xdead);
    RoundToBf16(isa, src.data(), got.data(), static_cast<int64_t>(src.size()));
    for (size_t i = 0; i < src.size(); ++i) {
      ASSERT_EQ(got[i], model::F32ToBF16(src[i])) << base::CpuIsaName(isa) << " element " << i;
    }
  }
}

}  // namespace
}  // namespace moe::experts
