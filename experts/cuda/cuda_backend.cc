// experts/cuda/cuda_backend.cc
// Host side of the CUDA backend, built into the plugin libmoe_cuda.so (cuda_plugin_api.h says
// why a plugin): plain C++ on the CUDA runtime and cuBLAS; the kernels are in cuda_kernels.cu.
//
// One Run is one worker step: the f32 rows go to pinned memory, to the GPU, and are converted to
// the weights' dtype (rows padded to 16 bytes); the up projections of every group write one
// buffer h [rows, 2·I]; one fused kernel computes act = silu(gate)⊙up for all rows; the down
// projections write y; y comes back as f32. The per-group products are issued either back to
// back (one cublasGemmEx each; the down projection writes f32 directly) or as one
// cublasGemmGroupedBatchedEx per projection (which needs C in the inputs' dtype, so y is rounded
// to it once). moe-expert-bench measures both. Device events around staging in, the products and
// staging out give LastStepTimes.
//
// Row-major products on column-major cuBLAS: C[m,N] = A[m,K]·B[N,K]ᵀ is computed as the
// column-major Cᵀ = B·Aᵀ, i.e. gemm(OP_T, OP_N, N, m, K, B, ldb, A, lda, C, ldc).
#include "experts/cuda/cuda_backend.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "experts/cuda/cuda_kernels.h"
#include "experts/cuda/cuda_peers.h"
#include "experts/cuda/cuda_plugin_api.h"
#include "experts/cuda/cuda_support.h"

namespace moe::experts::cuda {
namespace {

// Rows of the device buffers start on 16-byte boundaries (cuBLAS grouped GEMM's alignment rule).
int64_t PadTo8(int64_t n) { return (n + 7) / 8 * 8; }

// The host-side arrays of one cublasGemmGroupedBatchedEx call; groups of equal shape share an
// entry. Reused across calls (clear() keeps the capacity).
struct GroupedGemm {
  std::vector<cublasOperation_t> op_t, op_n;
  std::vector<int> m, n, k, lda, ldb, ldc, size;
  std::vector<float> alpha, beta;

  void Clear() {
    for (auto* v : {&m, &n, &k, &lda, &ldb, &ldc, &size}) v->clear();
    op_t.clear(), op_n.clear(), alpha.clear(), beta.clear();
  }
  // Adds one product C = A·Bᵀ (row-major view; see the file comment) of shape (n_out, rows, depth).
  void Add(int64_t n_out, int64_t rows, int64_t depth, int64_t ld_a, int64_t ld_b, int64_t ld_c) {
    if (!size.empty() && m.back() == n_out && n.back() == rows && k.back() == depth && lda.back() == ld_a &&
        ldb.back() == ld_b && ldc.back() == ld_c) {
      ++size.back();
      return;
    }
    op_t.push_back(CUBLAS_OP_T), op_n.push_back(CUBLAS_OP_N);
    m.push_back(n_out), n.push_back(rows), k.push_back(depth);
    lda.push_back(ld_a), ldb.push_back(ld_b), ldc.push_back(ld_c);
    alpha.push_back(1.0f), beta.push_back(0.0f), size.push_back(1);
  }
  absl::Status Run(cublasHandle_t blas, cudaDataType_t t, void* const* a, void* const* b, void* const* c) const {
    CUBLAS_RETURN_IF_ERROR(cublasGemmGroupedBatchedEx(
        blas, op_t.data(), op_n.data(), m.data(), n.data(), k.data(), alpha.data(), a, t, lda.data(), b, t,
        ldb.data(), beta.data(), c, t, ldc.data(), static_cast<int>(size.size()), size.data(), CUBLAS_COMPUTE_32F));
    return absl::OkStatus();
  }
};

class CudaExpertBackend final : public ExpertBackend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaExpertBackend>> Create(absl::Span<const ExpertWeights> weights,
                                                                  const CudaOptions& options);
  ~CudaExpertBackend() override {
    for (cudaEvent_t e : events_) {
      if (e != nullptr) cudaEventDestroy(e);
    }
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
  std::optional<StepTimes> LastStepTimes() const override {
    absl::MutexLock lock(&mu_);
    return last_times_;
  }

 private:
  struct Expert {
    int64_t inter = 0;
    DeviceBuffer w13;  // [2I, H]: w1 then w3
    DeviceBuffer w2;   // [H, I]
  };
  // A non-empty group with its expert resolved.
  struct Step {
    const Expert* expert;
    int64_t row_begin, num_rows;
  };
  CudaExpertBackend() = default;
  absl::Status RunLocked(absl::Span<const ExpertGroup> groups, absl::Span<const float> in, absl::Span<float> out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SiluMul(int64_t row_begin, int64_t rows, int64_t inter) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The two ways of issuing the products of steps_, whose rows lie in [lo, hi).
  absl::Status BackToBack(int64_t lo, int64_t hi) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Grouped(int64_t lo, int64_t hi) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Device addresses of row r in x, h, act, y and the f32 output.
  char* X(int64_t r) const { return x_.get<char>() + r * ld_x_ * elem_; }
  char* H(int64_t r) const { return h_.get<char>() + r * ld_h_ * elem_; }
  char* Act(int64_t r) const { return act_.get<char>() + r * ld_act_ * elem_; }
  char* Y(int64_t r) const { return y_.get<char>() + r * ld_x_ * elem_; }
  float* Y32(int64_t r) const { return y32_.get<float>() + r * hidden_; }

  CudaOptions options_;
  std::string device_;
  int hidden_ = 0;
  int intermediate_ = 0;
  bool uniform_inter_ = true;  // every hosted expert has the same I
  size_t elem_ = 0;            // bytes per element of options_.dtype
  cudaDataType_t type_ = CUDA_R_16BF;
  int64_t ld_x_ = 0, ld_h_ = 0, ld_act_ = 0;  // padded row strides, in elements
  std::vector<ExpertKey> hosted_;
  absl::flat_hash_map<ExpertKey, std::unique_ptr<Expert>> experts_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  mutable absl::Mutex mu_;
  absl::Status sticky_ ABSL_GUARDED_BY(mu_);
  // Recorded on the stream around staging in, the products and staging out (LastStepTimes).
  cudaEvent_t events_[4] = {nullptr, nullptr, nullptr, nullptr};
  std::optional<StepTimes> last_times_ ABSL_GUARDED_BY(mu_);
  std::vector<Step> steps_ ABSL_GUARDED_BY(mu_);
  GroupedGemm up_ ABSL_GUARDED_BY(mu_), down_ ABSL_GUARDED_BY(mu_);
  PinnedBuffer host_in_ ABSL_GUARDED_BY(mu_), host_out_ ABSL_GUARDED_BY(mu_), host_ptrs_ ABSL_GUARDED_BY(mu_);
  DeviceBuffer in_f32_ ABSL_GUARDED_BY(mu_), x_ ABSL_GUARDED_BY(mu_), h_ ABSL_GUARDED_BY(mu_),
      act_ ABSL_GUARDED_BY(mu_), y_ ABSL_GUARDED_BY(mu_), y32_ ABSL_GUARDED_BY(mu_), ptrs_ ABSL_GUARDED_BY(mu_);
};

absl::Status Upload(const model::Tensor& a, const model::Tensor* b, model::DType dtype, DeviceBuffer& dst) {
  // Converts a (and b after it, if given) to `dtype` on the host and copies them to `dst`.
  const size_t n = static_cast<size_t>(a.num_elements()) + (b != nullptr ? b->num_elements() : 0);
  std::vector<float> f32(n);
  model::ConvertToF32(a.dtype(), a.raw_data(), f32.data(), a.num_elements());
  if (b != nullptr) model::ConvertToF32(b->dtype(), b->raw_data(), f32.data() + a.num_elements(), b->num_elements());
  std::vector<uint8_t> packed(n * model::DTypeSize(dtype));
  model::ConvertFromF32(dtype, f32.data(), packed.data(), n);
  RETURN_IF_ERROR(dst.Reserve(packed.size()));
  CUDA_RETURN_IF_ERROR(cudaMemcpy(dst.get(), packed.data(), packed.size(), cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CudaExpertBackend>> CudaExpertBackend::Create(absl::Span<const ExpertWeights> weights,
                                                                            const CudaOptions& options) {
  if (weights.empty()) return absl::InvalidArgumentError("a CUDA backend needs at least one expert");
  ASSIGN_OR_RETURN(std::string description, DescribeGpu(options.device));
  std::unique_ptr<CudaExpertBackend> b(new CudaExpertBackend());
  b->options_ = options;
  b->device_ = std::move(description);
  b->elem_ = model::DTypeSize(options.dtype);
  b->type_ = CublasDType(options.dtype);
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device));
  CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&b->stream_, cudaStreamNonBlocking));
  CUBLAS_RETURN_IF_ERROR(cublasCreate(&b->cublas_));
  CUBLAS_RETURN_IF_ERROR(cublasSetStream(b->cublas_, b->stream_));
  for (cudaEvent_t& e : b->events_) CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
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
    if (!b->experts_.empty() && inter != b->intermediate_) b->uniform_inter_ = false;
    b->intermediate_ = std::max<int>(b->intermediate_, static_cast<int>(inter));
    b->experts_.emplace(w.key, std::move(e));
    b->hosted_.push_back(w.key);
  }
  b->ld_x_ = PadTo8(b->hidden_);
  b->ld_act_ = PadTo8(b->intermediate_);
  b->ld_h_ = 2 * b->ld_act_;
  std::sort(b->hosted_.begin(), b->hosted_.end());
  // The weights went up with cudaMemcpy from pageable memory on the legacy stream, which may
  // return before the copy has landed and does not order work on the non-blocking compute
  // stream: the first Run could read weights still in flight. Wait for them here, once.
  CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  return b;
}

absl::Status CudaExpertBackend::Run(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                                    absl::Span<float> out) {
  RETURN_IF_ERROR(ValidateGroups(*this, groups, in.size(), out.size()));
  absl::MutexLock lock(&mu_);
  if (!sticky_.ok()) return sticky_;
  absl::Status status = RunLocked(groups, in, out);
  cudaError_t last = cudaPeekAtLastError();
  if (!status.ok()) {
    // Let what was already queued finish before the staging buffers are reused; a sticky error
    // of that work shows here even if a launch's own check already read it.
    const cudaError_t sync = cudaStreamSynchronize(stream_);
    if (IsSticky(sync)) last = sync;
  }
  // A sticky error poisons the context: remember it, never compute again.
  if (IsSticky(last)) sticky_ = FromCuda(last, "device is in an unrecoverable state");
  if (!sticky_.ok()) return sticky_;
  return status;
}

absl::Status CudaExpertBackend::RunLocked(absl::Span<const ExpertGroup> groups, absl::Span<const float> in,
                                          absl::Span<float> out) {
  const int64_t h = hidden_;
  const int64_t rows = static_cast<int64_t>(in.size()) / h;
  steps_.clear();
  int64_t lo = rows, hi = 0;  // the rows any group covers
  for (const ExpertGroup& g : groups) {
    if (g.num_rows == 0) continue;
    steps_.push_back({experts_.find(g.key)->second.get(), g.row_begin, g.num_rows});
    lo = std::min(lo, g.row_begin);
    hi = std::max(hi, g.row_begin + g.num_rows);
  }
  if (steps_.empty()) return absl::OkStatus();
  const size_t f32_bytes = in.size() * sizeof(float);
  CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device));
  RETURN_IF_ERROR(host_in_.Reserve(f32_bytes));
  RETURN_IF_ERROR(host_out_.Reserve(f32_bytes));
  RETURN_IF_ERROR(in_f32_.Reserve(f32_bytes));
  RETURN_IF_ERROR(y32_.Reserve(f32_bytes));
  RETURN_IF_ERROR(x_.Reserve(rows * ld_x_ * elem_));
  RETURN_IF_ERROR(h_.Reserve(rows * ld_h_ * elem_));
  RETURN_IF_ERROR(act_.Reserve(rows * ld_act_ * elem_));

  std::memcpy(host_in_.get(), in.data() + lo * h, (hi - lo) * h * sizeof(float));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[0], stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(in_f32_.get<float>() + lo * h, host_in_.get(), (hi - lo) * h * sizeof(float),
                                       cudaMemcpyHostToDevice, stream_));
  CUDA_RETURN_IF_ERROR(internal::LaunchFromF32(in_f32_.get<float>() + lo * h, X(lo), KernelDType(options_.dtype),
                                               hi - lo, h, ld_x_, stream_));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[1], stream_));
  RETURN_IF_ERROR(options_.grouped_gemm ? Grouped(lo, hi) : BackToBack(lo, hi));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[2], stream_));
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_out_.get(), Y32(lo), (hi - lo) * h * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream_));
  CUDA_RETURN_IF_ERROR(cudaEventRecord(events_[3], stream_));
  CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream_));
  float ms[3] = {0, 0, 0};
  for (int i = 0; i < 3; ++i) CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms[i], events_[i], events_[i + 1]));
  last_times_ = StepTimes{.stage_in_ms = ms[0], .compute_ms = ms[1], .stage_out_ms = ms[2]};
  for (const Step& s : steps_) {
    std::memcpy(out.data() + s.row_begin * h, host_out_.get<float>() + (s.row_begin - lo) * h,
                s.num_rows * h * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status CudaExpertBackend::SiluMul(int64_t row_begin, int64_t rows, int64_t inter) {
  CUDA_RETURN_IF_ERROR(internal::LaunchSiluMul(H(row_begin), ld_h_, Act(row_begin), ld_act_,
                                               KernelDType(options_.dtype), rows, inter, stream_));
  return absl::OkStatus();
}

absl::Status CudaExpertBackend::BackToBack(int64_t lo, int64_t hi) {
  const float one = 1.0f, zero = 0.0f;
  for (const Step& s : steps_) {
    // x [m, H]·w13 [2I, H]ᵀ → h [m, 2I]
    CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, 2 * s.expert->inter, s.num_rows, hidden_,
                                        &one, s.expert->w13.get(), type_, hidden_, X(s.row_begin), type_, ld_x_,
                                        &zero, H(s.row_begin), type_, ld_h_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    if (!uniform_inter_) RETURN_IF_ERROR(SiluMul(s.row_begin, s.num_rows, s.expert->inter));
  }
  // One launch for every row; rows no group covers are computed and never read.
  if (uniform_inter_) RETURN_IF_ERROR(SiluMul(lo, hi - lo, intermediate_));
  for (const Step& s : steps_) {
    // act [m, I]·w2 [H, I]ᵀ → y [m, H], written in f32
    CUBLAS_RETURN_IF_ERROR(cublasGemmEx(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, hidden_, s.num_rows, s.expert->inter,
                                        &one, s.expert->w2.get(), type_, s.expert->inter, Act(s.row_begin), type_,
                                        ld_act_, &zero, Y32(s.row_begin), CUDA_R_32F, hidden_, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
  }
  return absl::OkStatus();
}

absl::Status CudaExpertBackend::Grouped(int64_t lo, int64_t hi) {
  // Grouped GEMM writes C in the inputs' dtype: y goes through a padded buffer unless it is f32.
  const bool f32 = options_.dtype == model::DType::kF32;
  if (!f32) RETURN_IF_ERROR(y_.Reserve(hi * ld_x_ * elem_));
  const size_t g = steps_.size();
  RETURN_IF_ERROR(host_ptrs_.Reserve(6 * g * sizeof(void*)));
  RETURN_IF_ERROR(ptrs_.Reserve(6 * g * sizeof(void*)));
  void** p = host_ptrs_.get<void*>();  // A, B, C of the up projections, then of the down ones
  up_.Clear();
  down_.Clear();
  for (size_t i = 0; i < g; ++i) {
    const Step& s = steps_[i];
    const int64_t inter = s.expert->inter;
    p[i] = s.expert->w13.get();
    p[g + i] = X(s.row_begin);
    p[2 * g + i] = H(s.row_begin);
    up_.Add(2 * inter, s.num_rows, hidden_, hidden_, ld_x_, ld_h_);
    p[3 * g + i] = s.expert->w2.get();
    p[4 * g + i] = Act(s.row_begin);
    p[5 * g + i] = f32 ? static_cast<void*>(Y32(s.row_begin)) : Y(s.row_begin);
    down_.Add(hidden_, s.num_rows, inter, inter, ld_act_, f32 ? hidden_ : ld_x_);
  }
  CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(ptrs_.get(), p, 6 * g * sizeof(void*), cudaMemcpyHostToDevice, stream_));
  void** d = ptrs_.get<void*>();
  RETURN_IF_ERROR(up_.Run(cublas_, type_, d, d + g, d + 2 * g));
  if (uniform_inter_) {  // as in BackToBack
    RETURN_IF_ERROR(SiluMul(lo, hi - lo, intermediate_));
  } else {
    for (const Step& s : steps_) RETURN_IF_ERROR(SiluMul(s.row_begin, s.num_rows, s.expert->inter));
  }
  RETURN_IF_ERROR(down_.Run(cublas_, type_, d + 3 * g, d + 4 * g, d + 5 * g));
  if (!f32) {
    CUDA_RETURN_IF_ERROR(
        internal::LaunchToF32(Y(lo), KernelDType(options_.dtype), ld_x_, Y32(lo), hi - lo, hidden_, stream_));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ExpertBackend>> GpuCreateBackend(absl::Span<const ExpertWeights> weights,
                                                                const CudaOptions& options) {
  ASSIGN_OR_RETURN(auto backend, CudaExpertBackend::Create(weights, options));
  return std::unique_ptr<ExpertBackend>(std::move(backend));
}

}  // namespace

const internal::PluginApi* PluginApiTable() {
  static const internal::PluginApi api = {&DescribeGpu, &GpuCreateBackend, &GpuDenseGemmTflops, &GpuDeviceCopyGBps};
  return &api;
}

}  // namespace moe::experts::cuda

extern "C" __attribute__((visibility("default"))) const moe::experts::cuda::internal::PluginApi* moe_cuda_plugin_api() {
  return moe::experts::cuda::PluginApiTable();
}
