// experts/cuda/cuda_kernels.cu
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "experts/cuda/cuda_kernels.h"

namespace moe::experts::cuda::internal {
namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ T FromFloat(float v);
template <>
__device__ float FromFloat<float>(float v) { return v; }
template <>
__device__ __nv_bfloat16 FromFloat<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
template <>
__device__ __half FromFloat<__half>(float v) { return __float2half_rn(v); }

__device__ float ToFloat(float v) { return v; }
__device__ float ToFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ float ToFloat(__half v) { return __half2float(v); }

template <typename T>
__global__ void FromF32Kernel(const float* in, T* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = FromFloat<T>(in[i]);
  }
}

template <typename T>
__global__ void SiluMulKernel(const T* h, T* act, int64_t rows, int64_t inter) {
  const int64_t n = rows * inter;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < n; idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = idx / inter, i = idx - r * inter;
    const float g = ToFloat(h[r * 2 * inter + i]);
    const float u = ToFloat(h[r * 2 * inter + inter + i]);
    act[idx] = FromFloat<T>(g / (1.0f + __expf(-g)) * u);
  }
}

template <typename T>
__global__ void FillKernel(T* out, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    out[i] = FromFloat<T>((x & 0xffffff) / float(1 << 23) - 1.0f + 1e-3f);
  }
}

int Blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

}  // namespace

cudaError_t LaunchFromF32(const float* in, void* out, int dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (dtype == 1) {
    FromF32Kernel<<<Blocks(n), kThreads, 0, stream>>>(in, static_cast<__nv_bfloat16*>(out), n);
  } else if (dtype == 2) {
    FromF32Kernel<<<Blocks(n), kThreads, 0, stream>>>(in, static_cast<__half*>(out), n);
  } else {
    FromF32Kernel<<<Blocks(n), kThreads, 0, stream>>>(in, static_cast<float*>(out), n);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSiluMul(const void* h, void* act, int dtype, int64_t rows, int64_t inter, cudaStream_t stream) {
  const int64_t n = rows * inter;
  if (n == 0) return cudaSuccess;
  if (dtype == 1) {
    SiluMulKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<const __nv_bfloat16*>(h),
                                                      static_cast<__nv_bfloat16*>(act), rows, inter);
  } else if (dtype == 2) {
    SiluMulKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<const __half*>(h), static_cast<__half*>(act), rows, inter);
  } else {
    SiluMulKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<const float*>(h), static_cast<float*>(act), rows, inter);
  }
  return cudaGetLastError();
}

cudaError_t LaunchFillPattern(void* out, int dtype, int64_t n, uint32_t seed, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (dtype == 1) {
    FillKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(out), n, seed);
  } else if (dtype == 2) {
    FillKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<__half*>(out), n, seed);
  } else {
    FillKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<float*>(out), n, seed);
  }
  return cudaGetLastError();
}

}  // namespace moe::experts::cuda::internal
