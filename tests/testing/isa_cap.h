// tests/testing/isa_cap.h
// The per-ISA runs of the CPU kernel tests (tests/CMakeLists.txt runs them once per MOE_CPU_ISA
// level): a run capped at this CPU's own best level repeats the plain run exactly (same kernels),
// so it skips, saying so — minutes under ASan. Register once per test binary:
//   const auto* const kOwnLevel = ::testing::AddGlobalTestEnvironment(new moe::testing::SkipTheCpusOwnLevel);
#pragma once

#include <cstdlib>
#include <string>

#include "base/cpu_features.h"
#include "gtest/gtest.h"

namespace moe::testing {

class SkipTheCpusOwnLevel : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* wanted = std::getenv("MOE_CPU_ISA");
    const base::CpuIsa best = base::BestIsa(base::DetectCpuFeatures());
    if (wanted != nullptr && std::string(base::CpuIsaName(best)) == wanted) {
      GTEST_SKIP() << "MOE_CPU_ISA=" << wanted << " is this CPU's own level: the plain run (no cap) runs these kernels";
    }
  }
};

}  // namespace moe::testing
