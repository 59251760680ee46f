// tests/experts/cpu/cpu_kernel_config_test.cc
// The once-per-process kernel setup names the CPU and the chosen ISA, never above the CPU's best.
#include "experts/cpu/cpu_kernel_config.h"

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

TEST(CpuKernelConfigTest, NamesThisCpuAndAnIsaItHas) {
  const base::CpuFeatures f = base::DetectCpuFeatures();
  ASSERT_OK_AND_ASSIGN(CpuKernelConfig config, ConfigureCpuKernels());
  EXPECT_NE(config.line.find("kernels "), std::string::npos) << config.line;
  EXPECT_NE(config.line.find(f.model), std::string::npos) << config.line;
  EXPECT_LE(config.choice.isa, base::BestIsa(f));
}

}  // namespace
}  // namespace moe::experts
