// tests/base/cpu_features_test.cc
// The ISA decision: caps, CPUs without a level, and a refused AMX permission all fall back.
#include "base/cpu_features.h"

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::base {
namespace {

using ::moe::testing::StatusIs;

CpuFeatures Sapphire() {
  return {.model = "x", .avx2_fma = true, .avx512 = true, .avx512_vnni = true, .avx512_bf16 = true, .amx_bf16 = true};
}
CpuFeatures Zen3() {
  CpuFeatures f;
  f.avx2_fma = true;
  return f;
}

TEST(CpuFeaturesTest, BestIsaFollowsFeatures) {
  EXPECT_EQ(BestIsa(Sapphire()), CpuIsa::kAmx);
  EXPECT_EQ(BestIsa(Zen3()), CpuIsa::kAvx2);
  EXPECT_EQ(BestIsa({.model = "z", .avx2_fma = true, .avx512 = true}), CpuIsa::kAvx512);
  EXPECT_EQ(BestIsa({.model = "ice", .avx2_fma = true, .avx512 = true, .avx512_vnni = true}), CpuIsa::kAvx512Vnni);
  EXPECT_EQ(BestIsa({.model = "zen4", .avx2_fma = true, .avx512 = true, .avx512_vnni = true, .avx512_bf16 = true}),
            CpuIsa::kAvx512Bf16);
  // BF16 without VNNI (no such CPU is known) does not skip the VNNI level's kernels.
  EXPECT_EQ(BestIsa({.model = "odd", .avx2_fma = true, .avx512 = true, .avx512_bf16 = true}), CpuIsa::kAvx512);
  EXPECT_EQ(BestIsa(CpuFeatures{}), CpuIsa::kScalar);
}

TEST(CpuFeaturesTest, NamesRoundTrip) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Vnni, CpuIsa::kAvx512Bf16,
                     CpuIsa::kAmx}) {
    ASSERT_OK_AND_ASSIGN(CpuIsa parsed, ParseCpuIsa(CpuIsaName(isa)));
    EXPECT_EQ(parsed, isa);
  }
  EXPECT_THAT(ParseCpuIsa("sse9"), StatusIs(absl::StatusCode::kInvalidArgument, "unknown CPU ISA 'sse9'"));
}

TEST(CpuFeaturesTest, CapLowersAndSaysWhy) {
  ASSERT_OK_AND_ASSIGN(CpuIsaChoice c, ChooseCpuIsa(Sapphire(), "avx2", true));
  EXPECT_EQ(c.isa, CpuIsa::kAvx2);
  EXPECT_NE(c.fallback.find("capped to avx2"), std::string::npos) << c.fallback;
  ASSERT_OK_AND_ASSIGN(CpuIsaChoice none, ChooseCpuIsa(Sapphire(), "", true));
  EXPECT_EQ(none.isa, CpuIsa::kAmx);
  EXPECT_EQ(none.fallback, "");
}

TEST(CpuFeaturesTest, CapAboveTheCpuUsesItsBest) {
  ASSERT_OK_AND_ASSIGN(CpuIsaChoice c, ChooseCpuIsa(Zen3(), "amx", true));
  EXPECT_EQ(c.isa, CpuIsa::kAvx2);
  EXPECT_NE(c.fallback.find("not supported by this CPU"), std::string::npos) << c.fallback;
}

TEST(CpuFeaturesTest, RefusedAmxPermissionFallsBackToAvx512Bf16) {
  ASSERT_OK_AND_ASSIGN(CpuIsaChoice c, ChooseCpuIsa(Sapphire(), "", /*amx_permitted=*/false));
  EXPECT_EQ(c.isa, CpuIsa::kAvx512Bf16);
  EXPECT_NE(c.fallback.find("AMX permission refused"), std::string::npos) << c.fallback;
  // A cap below AMX never needs the permission.
  ASSERT_OK_AND_ASSIGN(CpuIsaChoice capped, ChooseCpuIsa(Sapphire(), "avx512", false));
  EXPECT_EQ(capped.isa, CpuIsa::kAvx512);
}

TEST(CpuFeaturesTest, BadCapIsAnError) {
  EXPECT_THAT(ChooseCpuIsa(Sapphire(), "fast", true), StatusIs(absl::StatusCode::kInvalidArgument, "unknown CPU ISA"));
}

TEST(CpuFeaturesTest, ThisCpuIsDescribed) {
  const CpuFeatures f = DetectCpuFeatures();
  EXPECT_FALSE(f.model.empty());
  // Levels imply the ones below them.
  EXPECT_TRUE(!f.amx_bf16 || f.avx512_bf16);
  EXPECT_TRUE(!f.avx512_bf16 || f.avx512);
  EXPECT_TRUE(!f.avx512_vnni || f.avx512);
}

}  // namespace
}  // namespace moe::base
