// experts/cuda/cuda_peers.h
// The ceilings moe-expert-bench compares the backend with, measured in the same program: one
// cuBLAS dense GEMM and a device-to-device copy, timed with CUDA events (median of `repeats`
// after a warm-up). Inside the plugin; exported through cuda_plugin_api.h. Thread-compatible.
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"
#include "model/dtype.h"

namespace moe::experts::cuda {

// TFLOP/s of C[m,n] = A[m,k]·B[n,k]ᵀ in `dtype` with f32 accumulation.
absl::StatusOr<double> GpuDenseGemmTflops(int device, int64_t m, int64_t n, int64_t k, model::DType dtype, int repeats);
// GB/s of read + write traffic of one cudaMemcpyAsync of `bytes` within the device.
absl::StatusOr<double> GpuDeviceCopyGBps(int device, int64_t bytes, int repeats);

}  // namespace moe::experts::cuda
