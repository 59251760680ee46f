// base/cpu_features.h
// What the CPU can run, read with cpuid/xgetbv (never by model number), and the one decision of
// which instruction set the CPU expert kernels use: the best the CPU and OS support, capped by
// MOE_CPU_ISA=scalar|avx2|avx512|avx512_vnni|avx512_bf16|amx, with AMX only if the kernel grants the
// per-process permission (arch_prctl). Called by the CPU backend (and benchmarks) before the
// first kernel runs. Detect/Choose are pure and thread-safe; ConfigureCpuKernels runs once per
// process (it caps oneDNN's ISA, which oneDNN allows only before its first kernel).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::base {

struct CpuFeatures {
  std::string model;          // the brand string, e.g. "Intel(R) Xeon(R) Platinum 8592+"
  bool avx2_fma = false;      // AVX2, FMA and F16C, with the OS saving ymm state
  bool avx512 = false;        // AVX-512 F/BW/VL/DQ, with the OS saving zmm state
  bool avx512_vnni = false;   // AVX512_VNNI (vpdpbusd: int8 dot products)
  bool avx512_bf16 = false;   // AVX512_BF16 (vdpbf16ps)
  bool amx_bf16 = false;      // AMX-TILE and AMX-BF16 in cpuid (permission is separate)
};

// The instruction sets the kernels distinguish, in increasing order. Each level implies the ones
// below it on every CPU that has it: Skylake-SP avx512; Cascade Lake and Ice Lake avx512_vnni;
// Cooper Lake and AMD Zen 4/5 avx512_bf16 (all of which have VNNI too); Sapphire Rapids on amx.
enum class CpuIsa { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Vnni = 3, kAvx512Bf16 = 4, kAmx = 5 };

// "scalar", "avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx"
absl::string_view CpuIsaName(CpuIsa isa);
// Inverse of CpuIsaName; INVALID_ARGUMENT listing the accepted names otherwise.
absl::StatusOr<CpuIsa> ParseCpuIsa(absl::string_view name);

// Reads this CPU's features.
CpuFeatures DetectCpuFeatures();
// The best ISA `features` supports.
CpuIsa BestIsa(const CpuFeatures& features);

struct CpuIsaChoice {
  CpuIsa isa = CpuIsa::kScalar;
  // Empty when `isa` is the best the CPU has; otherwise why not (cap, AMX refused).
  std::string fallback;
};

// The ISA to use: BestIsa(features), lowered to `cap` when given (a cap above what the CPU has
// is not an error: the CPU's best is used and `fallback` says so), and below AMX when
// `amx_permitted` is false. INVALID_ARGUMENT for a cap that does not parse.
absl::StatusOr<CpuIsaChoice> ChooseCpuIsa(const CpuFeatures& features, absl::string_view cap,
                                          bool amx_permitted);

// Asks Linux for the AMX tile-data permission; false where it is refused or unknown.
bool RequestAmxPermission();

}  // namespace moe::base
