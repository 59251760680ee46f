// experts/cuda/cuda_peers.cc
#include "experts/cuda/cuda_peers.h"

#include <algorithm>
#include <functional>
#include <vector>

#include "experts/cuda/cuda_kernels.h"
#include "experts/cuda/cuda_support.h"

namespace moe::experts::cuda {
namespace {

// Median of `repeats` timings of `body` with CUDA events on `stream`, in milliseconds.
absl::StatusOr<double> TimeMs(cudaStream_t stream, int repeats, const std::function<absl::Status()>& body) {
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  std::vector<float> ms;
  absl::Status status = body();  // warm-up
  for (int i = 0; status.ok() && i < std::max(1, repeats); ++i) {
    status = FromCuda(cudaEventRecord(start, stream), "cudaEventRecord");
    if (status.ok()) status = body();
    if (status.ok()) status = FromCuda(cudaEventRecord(stop, stream), "cudaEventRecord");
    if (status.ok()) status = FromCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    if (status.ok()) status = FromCuda(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  RETURN_IF_ERROR(status);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// A stream and a cuBLAS handle on it, released on every path.
struct Session {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  ~Session() {
    if (blas != nullptr) cublasDestroy(blas);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  absl::Status Open(int device, bool with_blas) {
    RETURN_IF_ERROR(DescribeGpu(device).status());
    CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
    CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    if (!with_blas) return absl::OkStatus();
    CUBLAS_RETURN_IF_ERROR(cublasCreate(&blas));
    CUBLAS_RETURN_IF_ERROR(cublasSetStream(blas, stream));
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<double> GpuDenseGemmTflops(int device, int64_t m, int64_t n, int64_t k, model::DType dtype, int repeats) {
  Session s;
  RETURN_IF_ERROR(s.Open(device, /*with_blas=*/true));
  DeviceBuffer a, b, c;
  const size_t elem = model::DTypeSize(dtype);
  RETURN_IF_ERROR(a.Reserve(m * k * elem));
  RETURN_IF_ERROR(b.Reserve(n * k * elem));
  RETURN_IF_ERROR(c.Reserve(m * n * elem));
  CUDA_RETURN_IF_ERROR(internal::LaunchFillPattern(a.get(), KernelDType(dtype), m * k, 1, s.stream));
  CUDA_RETURN_IF_ERROR(internal::LaunchFillPattern(b.get(), KernelDType(dtype), n * k, 2, s.stream));
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType_t t = CublasDType(dtype);
  ASSIGN_OR_RETURN(const double ms, TimeMs(s.stream, repeats, [&]() {
                     return FromCublas(cublasGemmEx(s.blas, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, b.get(), t, k,
                                                    a.get(), t, k, &zero, c.get(), t, n, CUBLAS_COMPUTE_32F,
                                                    CUBLAS_GEMM_DEFAULT),
                                       "cublasGemmEx");
                   }));
  return 2.0 * m * n * k / (ms * 1e-3) / 1e12;
}

absl::StatusOr<double> GpuDeviceCopyGBps(int device, int64_t bytes, int repeats) {
  Session s;
  RETURN_IF_ERROR(s.Open(device, /*with_blas=*/false));
  DeviceBuffer src, dst;
  RETURN_IF_ERROR(src.Reserve(bytes));
  RETURN_IF_ERROR(dst.Reserve(bytes));
  CUDA_RETURN_IF_ERROR(internal::LaunchFillPattern(src.get(), 0, bytes / 4, 3, s.stream));
  ASSIGN_OR_RETURN(const double ms, TimeMs(s.stream, repeats, [&]() {
                     return FromCuda(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, s.stream),
                                     "cudaMemcpyAsync");
                   }));
  return 2.0 * bytes / (ms * 1e-3) / 1e9;  // read + write traffic
}

}  // namespace moe::experts::cuda
