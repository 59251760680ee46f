// experts/factory/backend_factory.h
// The one place that chooses an expert backend by name ("cpu" or "cuda"). Called by moe-expert,
// the router (--local and its shared experts), tests and benchmarks. Thread-safe (no state).
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "experts/expert_weights.h"
#include "model/checkpoint.h"
#include "model/dtype.h"

namespace moe::experts {

struct BackendOptions {
  std::string kind = "cpu";          // "cpu" | "cuda"
  int threads = 0;                   // CPU: compute threads (0 = every core)
  bool cpu_f32_compute = false;      // CPU: widen bf16 weights to f32 and compute in f32
  int cpu_small_rows = -1;           // CPU: rows up to which our kernels run (-1 = default)
  bool cpu_onednn_amx = false;       // CPU with AMX: oneDNN's AMX matmul instead of ours (comparisons)
  std::string quantize = {};         // CPU: bf16/f32 weights quantized at load to this format ("" = as stored)
  bool cpu_int8_activations = false; // CPU, quantized experts: int8 activations (CpuExpertBackend::Options)
  bool cpu_bf16_activations = false; // CPU, quantized experts: bf16 activations (CpuExpertBackend::Options)
  int device = 0;                    // CUDA: device ordinal
  model::DType cuda_dtype = model::DType::kBF16;   // CUDA: weights and activations on the GPU
  bool cuda_grouped_gemm = false;    // CUDA: one grouped GEMM per projection (cuda::CudaOptions)
};

// Creates a backend of `options.kind` hosting `hosted`, quantized weights (FP8, MXFP4) kept as the
// checkpoint stores them. INVALID_ARGUMENT for an unknown kind or quantize format; FAILED_PRECONDITION
// for "cuda" in a build or on a machine without CUDA; UNIMPLEMENTED for quantized weights on CUDA
// (it has no low-bit kernels yet and never widens them silently); errors of loading.
absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateBackend(const model::Checkpoint& checkpoint,
                                                             absl::Span<const ExpertKey> hosted,
                                                             const BackendOptions& options);
// The same from weights already in memory (tests, benchmarks).
absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateBackendFromWeights(absl::Span<const ExpertWeights> weights,
                                                                        const BackendOptions& options);
// `current` (null: hosting nothing) changed to host hosted() − remove + add, `add` read from
// `checkpoint` (only those experts' tensors) and packed as `options` says, the experts kept
// shared with `current` (ExpertBackend::Rebuild). Null when nothing is left. `budget` (−1: none)
// bounds the bytes the added experts may take resident: RESOURCE_EXHAUSTED before anything is
// packed when their estimate exceeds it; *added_bytes (may be null) gets that estimate (0 for
// backends that do not estimate). ALREADY_EXISTS for an added expert hosted and not removed,
// NOT_FOUND for a removed one not hosted, errors of loading, UNIMPLEMENTED for a backend that
// cannot change (CUDA). `current` is unchanged either way. Used by the worker's LoadExperts and
// UnloadExperts.
absl::StatusOr<std::shared_ptr<ExpertBackend>> ChangeExperts(const model::Checkpoint& checkpoint,
                                                             const ExpertBackend* current,
                                                             absl::Span<const ExpertKey> add,
                                                             absl::Span<const ExpertKey> remove,
                                                             const BackendOptions& options, int64_t budget,
                                                             int64_t* added_bytes);
// A description of the CUDA device, or FAILED_PRECONDITION saying why there is no usable GPU
// (no CUDA in this build, no device, old driver). Tests skip on it with that reason.
absl::StatusOr<std::string> CudaDevice(int device);

}  // namespace moe::experts
