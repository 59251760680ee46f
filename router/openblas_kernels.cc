// router/openblas_kernels.cc
#include "router/openblas_kernels.h"

#include <cblas.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace moe::router {
namespace {

// Set in the re-executed process's environment, so that it can say what happened (and never
// re-executes twice).
constexpr char kReexecMarker[] = "MOE_OPENBLAS_REEXEC";

}  // namespace

std::optional<std::string> CorrectedOpenBlasCore(absl::string_view core, const base::CpuFeatures& features) {
  if (core != "Prescott") return std::nullopt;
  if (features.avx512_bf16) return "Cooperlake";
  if (features.avx512) return "SkylakeX";
  if (features.avx2_fma) return "Haswell";
  return std::nullopt;
}

std::string EnsureOpenBlasKernels(char** argv, absl::string_view loaded_core) {
  openblas_set_num_threads(1);
  const char* set = std::getenv("OPENBLAS_CORETYPE");
  if (std::getenv(kReexecMarker) != nullptr) {  // the re-executed process: say what it runs now
    unsetenv(kReexecMarker);                     // (children start from scratch)
    return absl::StrCat("OpenBLAS ", openblas_get_corename(), " 1 thread (OPENBLAS_CORETYPE=",
                        set == nullptr ? "" : set, " set by re-exec)");
  }
  const std::string core = loaded_core.empty() ? std::string(openblas_get_corename()) : std::string(loaded_core);
  const std::optional<std::string> wanted = CorrectedOpenBlasCore(core, base::DetectCpuFeatures());
  if (!wanted.has_value()) return absl::StrCat("OpenBLAS ", core, " 1 thread");
  if (set != nullptr) {
    return absl::StrCat("OpenBLAS ", core, " 1 thread (warning: OPENBLAS_CORETYPE=", set, " keeps the SSE3 kernels; this CPU can run ",
                        *wanted, ")");
  }
  setenv("OPENBLAS_CORETYPE", wanted->c_str(), 1);
  setenv(kReexecMarker, "1", 1);
  execv("/proc/self/exe", argv);
  const std::string error = std::strerror(errno);  // only reached if the exec failed
  unsetenv(kReexecMarker);
  return absl::StrCat("OpenBLAS ", core, " 1 thread (warning: re-exec with OPENBLAS_CORETYPE=", *wanted, " failed: ", error, ")");
}

}  // namespace moe::router
