// tests/router/openblas_reexec_probe.cc
// Test program for openblas_reexec_test.sh: pretends OpenBLAS loaded its Prescott fallback, so
// EnsureOpenBlasKernels sets OPENBLAS_CORETYPE and re-executes it; prints the startup line and
// the core this CPU should end up with ("none" where it has nothing better than SSE3).
#include <cstdio>

#include "router/openblas_kernels.h"

int main(int argc, char** argv) {
  const std::string line = moe::router::EnsureOpenBlasKernels(argv, "Prescott");
  const auto expected = moe::router::CorrectedOpenBlasCore("Prescott", moe::base::DetectCpuFeatures());
  std::printf("%s\nexpected=%s\n", line.c_str(), expected.value_or("none").c_str());
  return 0;
}
