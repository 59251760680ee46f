// experts/cuda/cuda_kernels.h
// Launchers of moe-serve's own CUDA kernels (cuda_kernels.cu), for cuda_backend.cc only. Plain
// C++ signatures; the stream is the only CUDA type. dtype codes: 0 = f32, 1 = bf16, 2 = f16.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::experts::cuda::internal {

// out[i] = dtype(in[i]) for i < n.
cudaError_t LaunchFromF32(const float* in, void* out, int dtype, int64_t n, cudaStream_t stream);
// act[r, i] = silu(h[r, i]) · h[r, inter + i] for r < rows, i < inter; h is [rows, 2·inter],
// act is [rows, inter], both of `dtype`, computed in f32.
cudaError_t LaunchSiluMul(const void* h, void* act, int dtype, int64_t rows, int64_t inter, cudaStream_t stream);
// Fills `n` elements of `dtype` at `out` with a deterministic pattern in [-1, 1) (never zeros).
cudaError_t LaunchFillPattern(void* out, int dtype, int64_t n, uint32_t seed, cudaStream_t stream);

}  // namespace moe::experts::cuda::internal
