// experts/cuda/cuda_kernels.h
// Launchers of moe-serve's own CUDA kernels (cuda_kernels.cu), for the plugin's host code only.
// Plain C++ signatures; the stream is the only CUDA type. dtype codes: 0 = f32, 1 = bf16,
// 2 = f16. Matrices are row-major with an explicit row stride (`ld_*`, in elements), so callers
// can pad rows to 16-byte multiples for cuBLAS's grouped GEMM.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace moe::experts::cuda::internal {

// out[r, c] (row stride ld_out, `dtype`) = in[r, c] (f32, contiguous) for r < rows, c < cols.
cudaError_t LaunchFromF32(const float* in, void* out, int dtype, int64_t rows, int64_t cols, int64_t ld_out,
                          cudaStream_t stream);
// out[r, c] (f32, contiguous) = in[r, c] (row stride ld_in, `dtype`) for r < rows, c < cols.
cudaError_t LaunchToF32(const void* in, int dtype, int64_t ld_in, float* out, int64_t rows, int64_t cols,
                        cudaStream_t stream);
// act[r, i] = silu(h[r, i]) · h[r, inter + i] for r < rows, i < inter, computed in f32; h and act
// are of `dtype` with row strides ld_h (≥ 2·inter) and ld_act (≥ inter).
cudaError_t LaunchSiluMul(const void* h, int64_t ld_h, void* act, int64_t ld_act, int dtype, int64_t rows,
                          int64_t inter, cudaStream_t stream);
// Fills `n` elements of `dtype` at `out` with a deterministic pattern in [-1, 1) (never zeros).
cudaError_t LaunchFillPattern(void* out, int dtype, int64_t n, uint32_t seed, cudaStream_t stream);

}  // namespace moe::experts::cuda::internal
