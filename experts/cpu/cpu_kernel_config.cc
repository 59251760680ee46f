// experts/cpu/cpu_kernel_config.cc
#include "experts/cpu/cpu_kernel_config.h"

#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "dnnl.hpp"

namespace moe::experts {
namespace {

dnnl::cpu_isa OneDnnIsa(base::CpuIsa isa) {
  switch (isa) {
    case base::CpuIsa::kAmx:
      return dnnl::cpu_isa::avx512_core_amx;
    case base::CpuIsa::kAvx512Bf16:
      return dnnl::cpu_isa::avx512_core_bf16;
    case base::CpuIsa::kAvx512Vnni:
      return dnnl::cpu_isa::avx512_core_vnni;
    case base::CpuIsa::kAvx512:
      return dnnl::cpu_isa::avx512_core;
    case base::CpuIsa::kAvx2:
      return dnnl::cpu_isa::avx2;
    case base::CpuIsa::kScalar:
      return dnnl::cpu_isa::sse41;  // oneDNN's lowest; our kernels stay scalar
  }
  return dnnl::cpu_isa::all;
}

}  // namespace

absl::StatusOr<CpuKernelConfig> ConfigureCpuKernels() {
  static std::once_flag once;
  static absl::StatusOr<CpuKernelConfig>* result = nullptr;
  std::call_once(once, [] {
    CpuKernelConfig config;
    config.features = base::DetectCpuFeatures();
    const char* cap_env = std::getenv("MOE_CPU_ISA");
    const absl::string_view cap = cap_env == nullptr ? "" : cap_env;
    absl::StatusOr<base::CpuIsaChoice> first = base::ChooseCpuIsa(config.features, cap, /*amx_permitted=*/true);
    if (!first.ok()) {
      result = new absl::StatusOr<CpuKernelConfig>(first.status());
      return;
    }
    const bool amx_permitted = first->isa != base::CpuIsa::kAmx || base::RequestAmxPermission();
    config.choice = *base::ChooseCpuIsa(config.features, cap, amx_permitted);
    // oneDNN takes the cap only before its first kernel is generated; a later call is a no-op.
    dnnl::set_max_cpu_isa(OneDnnIsa(config.choice.isa));
    config.line = absl::StrCat("CPU ", config.features.model, "; kernels ", base::CpuIsaName(config.choice.isa));
    if (!config.choice.fallback.empty()) absl::StrAppend(&config.line, " (fallback: ", config.choice.fallback, ")");
    result = new absl::StatusOr<CpuKernelConfig>(std::move(config));
  });
  return *result;
}

}  // namespace moe::experts
