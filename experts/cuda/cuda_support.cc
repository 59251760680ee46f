// experts/cuda/cuda_support.cc
#include "experts/cuda/cuda_support.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moe::experts::cuda {

bool IsSticky(cudaError_t e) {
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorHardwareStackError:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorECCUncorrectable:
    case cudaErrorLaunchTimeout:
      return true;
    default:
      return false;
  }
}

absl::Status FromCuda(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  const std::string message =
      absl::StrCat("CUDA: ", what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
  switch (e) {
    case cudaErrorMemoryAllocation:
      return absl::ResourceExhaustedError(message);
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
    case cudaErrorInitializationError:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status FromCublas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  const std::string message =
      absl::StrCat("cuBLAS: ", what, ": ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ")");
  if (s == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (s == CUBLAS_STATUS_NOT_INITIALIZED) return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

int KernelDType(model::DType d) { return d == model::DType::kF32 ? 0 : d == model::DType::kBF16 ? 1 : 2; }

cudaDataType_t CublasDType(model::DType d) {
  return d == model::DType::kF32 ? CUDA_R_32F : d == model::DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
}

absl::StatusOr<std::string> DescribeGpu(int device) {
  int count = 0;
  // Without a GPU (or with too old a driver) this fails: that is "no usable GPU", not a crash.
  RETURN_IF_ERROR(FromCuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount"));
  if (device < 0 || device >= count) {
    return absl::FailedPreconditionError(absl::StrCat("CUDA device ", device, " does not exist (", count, " visible)"));
  }
  cudaDeviceProp p;
  RETURN_IF_ERROR(FromCuda(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties"));
  return absl::StrFormat("%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor, p.totalGlobalMem / double(1 << 30));
}

absl::Status AllocateCuda(bool pinned_host, size_t bytes, void** ptr) {
  if (pinned_host) return FromCuda(cudaMallocHost(ptr, bytes), "cudaMallocHost");
  return FromCuda(cudaMalloc(ptr, bytes), "cudaMalloc");
}

void FreeCuda(bool pinned_host, void* ptr) {
  if (ptr == nullptr) return;
  if (pinned_host) {
    cudaFreeHost(ptr);
  } else {
    cudaFree(ptr);
  }
}

}  // namespace moe::experts::cuda
