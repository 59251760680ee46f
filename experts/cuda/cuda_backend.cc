// experts/cuda/cuda_backend.cc
// Host side of the CUDA backend, built into the plugin libmoe_cuda.so (cuda_plugin_api.h says
// why a plugin): plain C++ on the CUDA runtime and cuBLAS APIs; the kernels are in cuda_kernels.cu. Row-major products on column-major cuBLAS: C[m,N] = A[m,K]·B[N,K]ᵀ is
// computed as the column-major Cᵀ = B·Aᵀ, i.e. gemm(OP_T, OP_N, N, m, K, B, K, A, K, C, N).
#include "experts/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "experts/cuda/cuda_plugin_api.h"
#include "experts/cuda/cuda_kernels.h"
#include "experts/status_macros.h"

namespace moe::experts::cuda {
namespace {

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
  const std::string message = absl::StrCat("CUDA: ", what, ": ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ")");
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
  const std::string message = absl::StrCat("cuBLAS: ", what, ": ", cublasGetStatusName(s), " (", cublasGetStatusString(s), ")");
  if (s == CUBLAS_STATUS_ALLOC_FAILED) return absl::ResourceExhaustedError(message);
  if (s == CUBLAS_STATUS_NOT_INITIALIZED) return absl::FailedPreconditionError(message);
  return absl::InternalError(message);
}

#define CUDA_RETURN_IF_ERROR(expr) RETURN_IF_ERROR(FromCuda((expr), #expr))
#define CUBLAS_RETURN_IF_ERROR(expr) RETURN_IF_ERROR(FromCublas((expr), #expr))

absl::StatusOr<std::string> GpuDescribeDevice(int device);

int DTypeCode(DType d) { return d == DType::kF32 ? 0 : d == DType::kBF16 ? 1 : 2; }
cudaDataType_t CudaType(DType d) {
  return d == DType::kF32 ? CUDA_R_32F : d == DType::kBF16 ? CUDA_R_16BF : CUDA_R_16F;
}

// A device allocation that only grows (no allocation per call in steady state).
class DeviceBuffer {
 public:
  ~DeviceBuffer() {
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  absl::Status Reserve(size_t bytes) {
    if (bytes <= bytes_) return absl::OkStatus();
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    CUDA_RETURN_IF_ERROR(cudaMalloc(&ptr_, bytes));
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

// Page-locked host memory for asynchronous copies, grow-only.
class PinnedBuffer {
 public:
  ~PinnedBuffer() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }
  absl::Status Reserve(size_t bytes) {
    if (bytes <= bytes_) return absl::OkStatus();
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    CUDA_RETURN_IF_ERROR(cudaMallocHost(&ptr_, bytes));
    bytes_ = bytes;
    return absl::OkStatus();
  }
  float* get() const { return static_cast<float*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

class CudaExpertBackend final : public ExpertBackend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaExpertBackend>> Create(absl::Span<const ExpertWeights> weights,
                                                                  const CudaOptions& options);
  ~CudaExpertBackend() override {
    if (cublas_ != nullptr) cublasDestroy(cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  std::string name() const override { return "cuda"; }
  std::string device() const override { return device_; }
  int hidden_size() const override { return hidden_; }
  int intermediate_size() const override { return intermediate_; }
  const std::vector<ExpertKey>& hosted() const override { return hosted_; }
  bool Hosts(const ExpertKey& key) const override { return experts_.contains(key); }
  absl::Status Run(absl::Span<const ExpertGroup> groups, absl::Span<const float> in, absl::Span<float> out) override;
  absl::Status Health() const override {
    absl::MutexLock lock(&mu_);
    return sticky_;
  }

 private:
  struct Expert {
    int64_t inter = 0;
    DeviceBuffer w13;  // [2I, H]
    DeviceBuffer w2;   // [H, I]
  };
  CudaExpertBackend() = default;
  absl::Status RunLocked(absl::Span<const ExpertGroup> groups, absl::Span<const float> in, absl::Span<float> out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  CudaOptions options_;
  std::string device_;
  int hidden_ = 0;
  int intermediate_ = 0;
  std::vector<ExpertKey> hosted_;
  absl::flat_hash_map<ExpertKey, std::unique_ptr<Expert>> experts_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  mutable absl::Mutex mu_;
  absl::Status sticky_ ABSL_GUARDED_BY(mu_);
  PinnedBuffer host_in_ ABSL_GUARDED_BY(mu_), host_out_ ABSL_GUARDED_BY(mu_);
  DeviceBuffer in_f32_ ABSL_GUARDED_BY(mu_), x_ ABSL_GUARDED_BY(mu_), h_ ABSL_GUARDED_BY(mu_),
      act_ ABSL_GUARDED_BY(mu_), y_ ABSL_GUARDED_BY(mu_);
};

absl::Status Upload(const Tensor& a, const Tensor* b, DType dtype, DeviceBuffer& dst) {
  // Converts a (and b after it, if given) to `dtype` on the host and copies them to `dst`.
  const size_t n = static_cast<size_t>(a.num_elements()) + (b != nullptr ? b->num_elements() : 0);
  std::vector<float> f32(n);
  ConvertToF32(a.dtype(), a.raw_data(), f32.data(), a.num_elements());
  if (b != nullptr) ConvertToF32(b->dtype(), b->raw_data(), f32.data() + a.num_elements(), b->num_elements());
  std::vector<uint8_t> packed(n * DTypeSize(dtype));
  ConvertFromF32(dtype, f32.data(), packed.data(), n);
  RETURN_IF_ERROR(dst.Reserve(packed.size()));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(dst.get(), packed.data(), packed.size(), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaExpertBackend>> CudaExpertBackend::Create(absl::Span<const ExpertWeights> weights,
                                                                            const CudaOptions& options) {
  if (weights.empty()) return absl::InvalidArgumentError("a CUDA backend needs at least one expert");
  ASSIGN_OR_RETURN(std::string description, GpuDescribeDevice(options.device));
  std::unique_ptr<CudaExpertBackend> b(new CudaExpertBackend());
  b->options_ = options;
  b->device_ = std::move(description);
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking));
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&b->cublas_));
  CUBLAS_RETURN_IF_ERROR(cublasSetStream(b->cublas_, b->stream_));
  b->hidden_ = static_cast<int>(weights[0].w1.rank() == 2 ? weights[0].w1.dim(1) : 0);
  for (const ExpertWeights& w : weights) {
    const int64_t inter = w.w1.rank() == 2 ? w.w1.dim(0) : 0, h = b->hidden_;
    if (inter <= 0 || h <= 0 || w.w1.shape() != std::vector<int64_t>{inter, h} ||
        w.w3.shape() != std::vector<int64_t>{inter, h} || w.w2.shape() != std::vector<int64_t>{h, inter}) {
      return absl::InvalidArgumentError(absl::StrCat("expert ", w.key.expert, " of layer ", w.key.layer,
                                                     " has inconsistent shapes"));
    }
    if (b->experts_.contains(w.key)) {
      return absl::InvalidArgumentError(absl::StrCat("expert ", w.key.expert, " of layer ", w.key.layer, " given twice"));
    }
    auto e = std::make_unique<Expert>();
    e->inter = inter;
    RETURN_IF_ERROR(Upload(w.w1, &w.w3, options.dtype, e->w13));
    RETURN_IF_ERROR(Upload(w.w2, nullptr, options.dtype, e->w2));
    b->intermediate_ = std::max<int>(b->intermediate_, static_cast<int>(inter));
    b->experts_.emplace(w.key, std::move(e));
    b->hosted_.push_back(w.key);
  }
  std::sort(b->hosted_.begin(), b->hosted_.end());
  return b;
}

absl::Status CudaExpertBackend::Run(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                                    absl::Span<float> out) {
  RETURN_IF_ERROR(ValidateGroups(*this, groups, in.size(), out.size()));
  absl::MutexLock lock(&mu_);
  if (!sticky_.ok()) return sticky_;
  absl::Status status = RunLocked(groups, in, out);
  // A sticky error poisons the context: remember it, never compute again.
  const cudaError_t last = cudaPeekAtLastError();
  if (IsSticky(last)) sticky_ = FromCuda(last, "device is in an unrecoverable state");
  if (!sticky_.ok()) return sticky_;
  return status;
}

absl::Status CudaExpertBackend::RunLocked(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                                          absl::Span<float> out) {
  const int64_t h = hidden_;
  const int64_t rows = static_cast<int64_t>(in.size()) / h;
  int64_t max_rows = 0;
  for (const ExpertGroup& g : groups) max_rows = std::max(max_rows, g.num_rows);
  if (rows == 0 || max_rows == 0) return absl::OkStatus();
  const size_t elem = DTypeSize(options_.dtype);
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  RETURN_IF_ERROR(host_in_.Reserve(in.size() * sizeof(float)));
  RETURN_IF_ERROR(host_out_.Reserve(in.size() * sizeof(float)));
  RETURN_IF_ERROR(in_f32_.Reserve(in.size() * sizeof(float)));
  RETURN_IF_ERROR(x_.Reserve(in.size() * elem));
  RETURN_IF_ERROR(h_.Reserve(static_cast<size_t>(max_rows) * 2 * intermediate_ * elem));
  RETURN_IF_ERROR(act_.Reserve(static_cast<size_t>(max_rows) * intermediate_ * elem));
  RETURN_IF_ERROR(y_.Reserve(in.size() * sizeof(float)));

  std::memcpy(host_in_.get(), in.data(), in.size() * sizeof(float));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(in_f32_.get(), host_in_.get(), in.size() * sizeof(float),
                                       cudaMemcpyHostToDevice, stream_));
  CUDA_RETURN_IF_ERROR(internal::LaunchFromF32(in_f32_.get<float>(), x_.get(), DTypeCode(options_.dtype),
                                               static_cast<int64_t>(in.size()), stream_));
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType_t t = CudaType(options_.dtype);
  for (const ExpertGroup& g : groups) {
    if (g.num_rows == 0) continue;
    const Expert& e = *experts_.find(g.key)->second;
    const int64_t m = g.num_rows, inter = e.inter;
    const char* x = x_.get<char>() + g.row_begin * h * elem;
    // [m, H]·[2I, H]ᵀ → h [m, 2I]
    CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, 2 * inter, m, h, &one, e.w13.get(), t, h,
                                        x, t, h, &zero, h_.get(), t, 2 * inter, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    CUDA_RETURN_IF_ERROR(internal::LaunchSiluMul(h_.get(), act_.get(), DTypeCode(options_.dtype), m, inter, stream_));
    // act [m, I]·[H, I]ᵀ → y [m, H] in f32
    CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, h, m, inter, &one, e.w2.get(), t, inter,
                                        act_.get(), t, inter, &zero, y_.get<float>() + g.row_begin * h, CUDA_R_32F, h,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_out_.get(), y_.get(), in.size() * sizeof(float), cudaMemcpyDeviceToHost,
                                       stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  for (const ExpertGroup& g : groups) {
    std::memcpy(out.data() + g.row_begin * h, host_out_.get() + g.row_begin * h, g.num_rows * h * sizeof(float));
  }
  return absl::OkStatus();
}

// Median of `repeats` timings of `body` with CUDA events on `stream`, in milliseconds.
absl::StatusOr<double> TimeMs(cudaStream_t stream, int repeats, const std::function<absl::Status()>& body) {
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  RETURN_IF_ERROR(body());  // warm-up
  std::vector<float> ms;
  for (int i = 0; i < std::max(1, repeats); ++i) {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
    RETURN_IF_ERROR(body());
    CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float t = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

absl::StatusOr<std::string> GpuDescribeDevice(int device) {
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

absl::StatusOr<std::unique_ptr<ExpertBackend>> GpuCreateBackend(absl::Span<const ExpertWeights> weights,
                                                                const CudaOptions& options) {
  ASSIGN_OR_RETURN(auto backend, CudaExpertBackend::Create(weights, options));
  return std::unique_ptr<ExpertBackend>(std::move(backend));
}


absl::StatusOr<double> GpuDenseGemmTflops(int device, int64_t m, int64_t n, int64_t k, DType dtype, int repeats) {
  RETURN_IF_ERROR(GpuDescribeDevice(device).status());
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaStream_t stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream));
  cublasHandle_t handle;
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle));
  CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle, stream));
  DeviceBuffer a, b, c;
  const size_t elem = DTypeSize(dtype);
  RETURN_IF_ERROR(a.Reserve(m * k * elem));
  RETURN_IF_ERROR(b.Reserve(n * k * elem));
  RETURN_IF_ERROR(c.Reserve(m * n * elem));
  CUDA_RETURN_IF_ERROR(internal::LaunchFillPattern(a.get(), DTypeCode(dtype), m * k, 1, stream));
  CUDA_RETURN_IF_ERROR(internal::LaunchFillPattern(b.get(), DTypeCode(dtype), n * k, 2, stream));
  const float one = 1.0f, zero = 0.0f;
  const cudaDataType_t t = CudaType(dtype);
  auto ms = TimeMs(stream, repeats, [&]() {
    return FromCublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, b.get(), t, k, a.get(), t, k,
                                   &zero, c.get(), t, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                      "cublasGemmEx");
  });
  cublasDestroy(handle);
  cudaStreamDestroy(stream);
  if (!ms.ok()) return ms.status();
  return 2.0 * m * n * k / (*ms * 1e-3) / 1e12;
}

absl::StatusOr<double> GpuDeviceCopyGBps(int device, int64_t bytes, int repeats) {
  RETURN_IF_ERROR(GpuDescribeDevice(device).status());
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device));
  cudaStream_t stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream));
  DeviceBuffer src, dst;
  RETURN_IF_ERROR(src.Reserve(bytes));
  RETURN_IF_ERROR(dst.Reserve(bytes));
  CUDA_RETURN_IF_ERROR(internal::LaunchFillPattern(src.get(), 0, bytes / 4, 3, stream));
  auto ms = TimeMs(stream, repeats, [&]() {
    return FromCuda(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice, stream), "cudaMemcpyAsync");
  });
  cudaStreamDestroy(stream);
  if (!ms.ok()) return ms.status();
  return 2.0 * bytes / (*ms * 1e-3) / 1e9;  // read + write traffic
}

}  // namespace

const internal::PluginApi* PluginApiTable() {
  static const internal::PluginApi api = {&GpuDescribeDevice, &GpuCreateBackend, &GpuDenseGemmTflops,
                                          &GpuDeviceCopyGBps};
  return &api;
}

}  // namespace moe::experts::cuda

extern "C" __attribute__((visibility("default"))) const moe::experts::cuda::internal::PluginApi* moe_cuda_plugin_api() {
  return moe::experts::cuda::PluginApiTable();
}
