// router/openblas_kernels.h
// Keeps the gate's OpenBLAS off its SSE3 fallback. Debian's OpenBLAS 0.3.21 picks kernels by CPU
// model number and falls back to "Prescott" on models it does not know (seen: Emerald Rapids),
// 4x slower where AVX2/AVX-512 are there; it reads OPENBLAS_CORETYPE only in its library
// constructor, so the fix is to set the variable and re-exec the program. Called first thing by
// the mains that run the gate (moe-router, moe-bench-local, moe-client, moe-routing-study).
// Not thread-safe: call before any thread starts.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "base/cpu_features.h"

namespace moe::router {

// The OPENBLAS_CORETYPE that `features` deserve when OpenBLAS chose `core`: "Cooperlake"
// (AVX512-BF16), "SkylakeX" (AVX-512) or "Haswell" (AVX2) if `core` is the Prescott fallback;
// nullopt when `core` needs no correction (or the CPU has nothing better).
std::optional<std::string> CorrectedOpenBlasCore(absl::string_view core, const base::CpuFeatures& features);

// Also makes OpenBLAS single-threaded: the gate's GEMM is small ([tokens, H] x [H, experts]), and
// OpenBLAS's own threads spin after each call, taking the cores from the expert kernels' OpenMP
// threads (measured: a 1024-token layer 58 -> 44 ms). Then, if the loaded OpenBLAS core (`loaded_core`, openblas_get_corename() when empty) is the Prescott
// fallback on a CPU with better kernels and OPENBLAS_CORETYPE is unset, sets it and re-executes
// /proc/self/exe with `argv` (does not return then). Returns the line for the startup log:
// "OpenBLAS SkylakeX 1 thread", "OpenBLAS SkylakeX 1 thread (OPENBLAS_CORETYPE=SkylakeX set by
// re-exec)", or a
// warning when OPENBLAS_CORETYPE is set by the user to a slower core or the exec failed.
std::string EnsureOpenBlasKernels(char** argv, absl::string_view loaded_core = "");

}  // namespace moe::router
