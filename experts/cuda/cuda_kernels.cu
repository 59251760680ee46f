// experts/cuda/cuda_kernels.cu
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <type_traits>

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

// Grid-stride loops: element idx of a row-major rows × cols matrix is (idx / cols, idx % cols).
__device__ int64_t FirstIndex() { return blockIdx.x * int64_t{blockDim.x} + threadIdx.x; }
__device__ int64_t GridStride() { return int64_t{gridDim.x} * blockDim.x; }

template <typename T>
__global__ void FromF32Kernel(const float* in, T* out, int64_t rows, int64_t cols, int64_t ld_out) {
  for (int64_t idx = FirstIndex(); idx < rows * cols; idx += GridStride()) {
    const int64_t r = idx / cols, c = idx - r * cols;
    out[r * ld_out + c] = FromFloat<T>(in[idx]);
  }
}

template <typename T>
__global__ void ToF32Kernel(const T* in, int64_t ld_in, float* out, int64_t rows, int64_t cols) {
  for (int64_t idx = FirstIndex(); idx < rows * cols; idx += GridStride()) {
    const int64_t r = idx / cols, c = idx - r * cols;
    out[idx] = ToFloat(in[r * ld_in + c]);
  }
}

template <typename T>
__global__ void SiluMulKernel(const T* h, int64_t ld_h, T* act, int64_t ld_act, int64_t rows, int64_t inter) {
  for (int64_t idx = FirstIndex(); idx < rows * inter; idx += GridStride()) {
    const int64_t r = idx / inter, i = idx - r * inter;
    const float g = ToFloat(h[r * ld_h + i]);
    const float u = ToFloat(h[r * ld_h + inter + i]);
    act[r * ld_act + i] = FromFloat<T>(g / (1.0f + __expf(-g)) * u);
  }
}

template <typename T>
__global__ void FillKernel(T* out, int64_t n, uint32_t seed) {
  for (int64_t i = FirstIndex(); i < n; i += GridStride()) {
    uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ seed;
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    out[i] = FromFloat<T>((x & 0xffffff) / float(1 << 23) - 1.0f + 1e-3f);
  }
}

// cudaGetLastError after a launch returns the oldest error not yet read, which may be an earlier
// failure (say, a cudaMalloc that the caller already handled): read it away before launching, so
// the error a launch reports is its own. Sticky errors stay visible to cudaPeekAtLastError's
// caller through the context itself.
void ClearStaleError() { (void)cudaGetLastError(); }

int Blocks(int64_t n) { return static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads, 65535)); }

// Calls f with a typed null pointer of `dtype`'s element type.
template <typename F>
void WithType(int dtype, F&& f) {
  if (dtype == 1) {
    f(static_cast<__nv_bfloat16*>(nullptr));
  } else if (dtype == 2) {
    f(static_cast<__half*>(nullptr));
  } else {
    f(static_cast<float*>(nullptr));
  }
}

}  // namespace

cudaError_t LaunchFromF32(const float* in, void* out, int dtype, int64_t rows, int64_t cols, int64_t ld_out,
                          cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  ClearStaleError();
  WithType(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    FromF32Kernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(in, static_cast<T*>(out), rows, cols, ld_out);
  });
  return cudaGetLastError();
}

cudaError_t LaunchToF32(const void* in, int dtype, int64_t ld_in, float* out, int64_t rows, int64_t cols,
                        cudaStream_t stream) {
  if (rows * cols == 0) return cudaSuccess;
  ClearStaleError();
  WithType(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    ToF32Kernel<<<Blocks(rows * cols), kThreads, 0, stream>>>(static_cast<const T*>(in), ld_in, out, rows, cols);
  });
  return cudaGetLastError();
}

cudaError_t LaunchSiluMul(const void* h, int64_t ld_h, void* act, int64_t ld_act, int dtype, int64_t rows,
                          int64_t inter, cudaStream_t stream) {
  if (rows * inter == 0) return cudaSuccess;
  ClearStaleError();
  WithType(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    SiluMulKernel<<<Blocks(rows * inter), kThreads, 0, stream>>>(static_cast<const T*>(h), ld_h, static_cast<T*>(act),
                                                                 ld_act, rows, inter);
  });
  return cudaGetLastError();
}

cudaError_t LaunchFillPattern(void* out, int dtype, int64_t n, uint32_t seed, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  ClearStaleError();
  WithType(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    FillKernel<<<Blocks(n), kThreads, 0, stream>>>(static_cast<T*>(out), n, seed);
  });
  return cudaGetLastError();
}

}  // namespace moe::experts::cuda::internal
