// tests/router/openblas_kernels_test.cc
// Which OpenBLAS core each CPU deserves when OpenBLAS fell back to Prescott. (The re-exec itself
// is tested end to end by tests/router/openblas_reexec_test.sh.)
#include "router/openblas_kernels.h"

#include <cblas.h>

#include "gtest/gtest.h"

namespace moe::router {
namespace {

base::CpuFeatures With(bool avx2, bool avx512, bool bf16) {
  base::CpuFeatures f;
  f.avx2_fma = avx2;
  f.avx512 = avx512;
  f.avx512_bf16 = bf16;
  return f;
}

TEST(OpenBlasKernelsTest, PrescottIsCorrectedByFeature) {
  EXPECT_EQ(CorrectedOpenBlasCore("Prescott", With(true, true, true)), "Cooperlake");
  EXPECT_EQ(CorrectedOpenBlasCore("Prescott", With(true, true, false)), "SkylakeX");
  EXPECT_EQ(CorrectedOpenBlasCore("Prescott", With(true, false, false)), "Haswell");
  EXPECT_EQ(CorrectedOpenBlasCore("Prescott", With(false, false, false)), std::nullopt);
}

TEST(OpenBlasKernelsTest, KnownCoresAreLeftAlone) {
  for (const char* core : {"SkylakeX", "Haswell", "Zen", "Cooperlake", "SapphireRapids"}) {
    EXPECT_EQ(CorrectedOpenBlasCore(core, With(true, true, true)), std::nullopt) << core;
  }
}

TEST(OpenBlasKernelsTest, UserChoiceIsKeptWithAWarning) {
  // OPENBLAS_CORETYPE set by the user: no re-exec (this returns), a warning when it is slow.
  setenv("OPENBLAS_CORETYPE", "Prescott", 1);
  const std::string line = EnsureOpenBlasKernels(nullptr, "Prescott");
  unsetenv("OPENBLAS_CORETYPE");
  EXPECT_EQ(openblas_get_num_threads(), 1) << "the gate's OpenBLAS must not spin beside the expert kernels";
  if (CorrectedOpenBlasCore("Prescott", base::DetectCpuFeatures()).has_value()) {
    EXPECT_NE(line.find("warning: OPENBLAS_CORETYPE=Prescott keeps the SSE3 kernels"), std::string::npos) << line;
  } else {
    EXPECT_EQ(line, "OpenBLAS Prescott 1 thread");
  }
}

}  // namespace
}  // namespace moe::router
