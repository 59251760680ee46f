// experts/cuda/cuda_support.h
// What the CUDA plugin's host code shares (cuda_backend.cc, cuda_peers.cc): CUDA and cuBLAS
// return codes turned into absl::Status, the dtype mapping, and grow-only device and pinned host
// buffers (no allocation per call in steady state). Inside the plugin only; not thread-safe by
// itself (the backend guards its buffers with its mutex).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "base/status_macros.h"
#include "model/dtype.h"

namespace moe::experts::cuda {

// An error after which the CUDA context can no longer be trusted (the process must go).
bool IsSticky(cudaError_t e);
// cudaErrorMemoryAllocation → RESOURCE_EXHAUSTED; no device / driver → FAILED_PRECONDITION;
// anything else → INTERNAL; the message names `what` and CUDA's own name for the error.
absl::Status FromCuda(cudaError_t e, const char* what);
absl::Status FromCublas(cublasStatus_t s, const char* what);

#define CUDA_RETURN_IF_ERROR(expr) RETURN_IF_ERROR(::moe::experts::cuda::FromCuda((expr), #expr))
#define CUBLAS_RETURN_IF_ERROR(expr) RETURN_IF_ERROR(::moe::experts::cuda::FromCublas((expr), #expr))

// The dtype codes of cuda_kernels.h (0 f32, 1 bf16, 2 f16) and cuBLAS's data types.
int KernelDType(model::DType d);
cudaDataType_t CublasDType(model::DType d);

// "NVIDIA H100 80GB HBM3 (sm_90, 79.2 GiB)", or FAILED_PRECONDITION saying why not.
absl::StatusOr<std::string> DescribeGpu(int device);

// cudaMalloc / cudaMallocHost (page-locked host memory) and their frees, for GrowOnlyBuffer.
absl::Status AllocateCuda(bool pinned_host, size_t bytes, void** ptr);
void FreeCuda(bool pinned_host, void* ptr);

// An allocation that only grows (no allocation per call in steady state): device memory, or
// page-locked host memory for asynchronous copies.
template <bool kPinnedHost>
class GrowOnlyBuffer {
 public:
  GrowOnlyBuffer() = default;
  GrowOnlyBuffer(const GrowOnlyBuffer&) = delete;
  GrowOnlyBuffer& operator=(const GrowOnlyBuffer&) = delete;
  ~GrowOnlyBuffer() { FreeCuda(kPinnedHost, ptr_); }
  absl::Status Reserve(size_t bytes) {
    if (bytes <= bytes_) return absl::OkStatus();
    FreeCuda(kPinnedHost, ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    RETURN_IF_ERROR(AllocateCuda(kPinnedHost, bytes, &ptr_));
    bytes_ = bytes;
    return absl::OkStatus();
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};
using DeviceBuffer = GrowOnlyBuffer<false>;
using PinnedBuffer = GrowOnlyBuffer<true>;

}  // namespace moe::experts::cuda
