// experts/cuda/cuda_backend.h
// The CUDA expert backend: weights resident on one GPU (bf16, f16 or f32), activations in the
// same dtype with f32 accumulation, the projections on cuBLAS, silu(gate)⊙up fused in one kernel,
// all groups of a step issued back to back or as one grouped GEMM on one stream (CudaOptions),
// pinned staging and device workspaces reused across calls. A plain header (no CUDA types). The implementation is the plugin libmoe_cuda.so
// (built where nvcc is found; cuda_plugin_api.h says why a plugin); these functions load it on
// first use and say why when it is absent. Chosen by experts/factory/backend_factory.cc. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "experts/expert_weights.h"
#include "model/dtype.h"

namespace moe::experts::cuda {

struct CudaOptions {
  int device = 0;
  model::DType dtype = model::DType::kBF16;  // weights and activations on the GPU
  // How the per-expert products of one step are issued: false = back to back on the stream (one
  // cublasGemmEx each, down projection written in f32); true = one cublasGemmGroupedBatchedEx per
  // projection (its output is in `dtype`, so y is rounded to bf16/f16 once before it returns).
  bool grouped_gemm = false;
};

// Whether the CUDA plugin could be loaded.
bool BuiltWithCuda();

// "NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB)". FAILED_PRECONDITION naming the reason when the
// build has no CUDA, no GPU is visible, the driver is too old, or `device` does not exist.
absl::StatusOr<std::string> DescribeDevice(int device);

// Uploads `weights` (any dtype; converted to options.dtype) to the GPU. FAILED_PRECONDITION as
// DescribeDevice; RESOURCE_EXHAUSTED when the GPU memory does not hold them; INVALID_ARGUMENT
// for inconsistent shapes.
absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateCudaBackend(absl::Span<const ExpertWeights> weights,
                                                                 const CudaOptions& options);

// Peers measured in the same program by moe-expert-bench: one cuBLAS dense GEMM [m,k]·[k,n]
// (TFLOP/s, median of `repeats`), and a device-to-device copy (GB/s of read + write traffic).
absl::StatusOr<double> DenseGemmTflops(int device, int64_t m, int64_t n, int64_t k, model::DType dtype, int repeats);
absl::StatusOr<double> DeviceCopyGBps(int device, int64_t bytes, int repeats);

}  // namespace moe::experts::cuda
