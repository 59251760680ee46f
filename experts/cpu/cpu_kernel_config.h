// experts/cpu/cpu_kernel_config.h
// The once-per-process setup of the CPU expert kernels: the CPU's features, MOE_CPU_ISA's cap,
// the AMX permission, and oneDNN capped to the chosen ISA (oneDNN allows that only before its first
// kernel). Called by the CPU backend and tests before the first kernel runs; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "base/cpu_features.h"

namespace moe::experts {

struct CpuKernelConfig {
  base::CpuFeatures features;
  base::CpuIsaChoice choice;
  std::string line;  // "CPU <model>; kernels <isa> ...; fallback: ..." for startup lines
};

// Once per process: detects the CPU, reads MOE_CPU_ISA, requests AMX if it would be used, caps
// oneDNN to the chosen ISA. Later calls return the first result. INVALID_ARGUMENT for a
// MOE_CPU_ISA that does not parse.
absl::StatusOr<CpuKernelConfig> ConfigureCpuKernels();

}  // namespace moe::experts
