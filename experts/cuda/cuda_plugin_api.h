// experts/cuda/cuda_plugin_api.h
// The boundary between moe-serve's binaries and libmoe_cuda.so, the CUDA backend built as a
// plugin. Binaries never link CUDA: libraries with large static TLS (cudart, cuBLAS) shrink every
// thread's stack, and prometheus-cpp's civetweb threads then overflow theirs (reproduced: a
// SIGSEGV in mg_printf on the first /metrics request, or no server at all with cuBLAS). Loaded
// with dlopen only when --backend=cuda is asked for, the plugin's TLS is dynamic and the CPU
// paths load nothing of CUDA. Used by cuda_plugin_loader.cc and cuda_plugin.cc only.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/cuda/cuda_backend.h"

namespace moe::experts::cuda::internal {

// Function table the plugin hands out; same compiler and libraries on both sides.
struct PluginApi {
  absl::StatusOr<std::string> (*describe_device)(int device);
  absl::StatusOr<std::unique_ptr<ExpertBackend>> (*create_backend)(absl::Span<const ExpertWeights> weights,
                                                                   const CudaOptions& options);
  absl::StatusOr<double> (*dense_gemm_tflops)(int device, int64_t m, int64_t n, int64_t k, model::DType dtype, int repeats);
  absl::StatusOr<double> (*device_copy_gbps)(int device, int64_t bytes, int repeats);
};

}  // namespace moe::experts::cuda::internal

// The plugin's one exported symbol.
extern "C" const moe::experts::cuda::internal::PluginApi* moe_cuda_plugin_api();
