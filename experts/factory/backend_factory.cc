// experts/factory/backend_factory.cc
#include "experts/factory/backend_factory.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "experts/cpu/cpu_backend.h"
#include "experts/cuda/cuda_backend.h"

namespace moe::experts {

namespace {

absl::StatusOr<CpuExpertBackend::Options> CpuOptionsOf(const BackendOptions& options) {
  const model::WeightFormat* quantize = nullptr;
  if (!options.quantize.empty()) {
    quantize = model::FindWeightFormat(options.quantize);
    if (quantize == nullptr || quantize->quantize == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("cannot quantize to '", options.quantize, "'; formats: ",
                                                     absl::StrJoin(model::QuantizableFormatNames(), ", ")));
    }
  }
  return CpuExpertBackend::Options{.threads = options.threads,
                                   .f32_compute = options.cpu_f32_compute,
                                   .small_rows = options.cpu_small_rows,
                                   .onednn_amx = options.cpu_onednn_amx,
                                   .quantize = quantize,
                                   .int8_activations = options.cpu_int8_activations,
                                   .bf16_activations = options.cpu_bf16_activations};
}

// INVALID_ARGUMENT for an unknown kind; for "cuda", FAILED_PRECONDITION without a usable GPU.
absl::Status CheckBackendKind(const BackendOptions& options) {
  if (options.kind == "cuda") return CudaDevice(options.device).status();
  if (options.kind != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat("unknown backend '", options.kind, "'; expected cpu or cuda"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<ExpertBackend>> ChangeExperts(const model::Checkpoint& checkpoint,
                                                             const ExpertBackend* current,
                                                             absl::Span<const ExpertKey> add,
                                                             absl::Span<const ExpertKey> remove,
                                                             const BackendOptions& options, int64_t budget,
                                                             int64_t* added_bytes) {
  RETURN_IF_ERROR(CheckBackendKind(options));  // before reading any weights
  std::vector<ExpertWeights> weights;
  weights.reserve(add.size());
  int64_t estimate = 0;
  for (const ExpertKey& key : add) {
    if (current != nullptr && current->Hosts(key) &&
        std::find(remove.begin(), remove.end(), key) == remove.end()) {
      return absl::AlreadyExistsError(absl::StrCat("expert ", key.expert, " of layer ", key.layer, " is already hosted"));
    }
    ASSIGN_OR_RETURN(ExpertWeights w, LoadExpertWeights(checkpoint, key, {.keep_quantized = true}));
    if (options.kind == "cpu") {
      ASSIGN_OR_RETURN(const CpuExpertBackend::Options cpu, CpuOptionsOf(options));
      ASSIGN_OR_RETURN(const int64_t bytes, CpuExpertBackend::ResidentBytesOf(w, cpu));
      estimate += bytes;
    }
    weights.push_back(std::move(w));
  }
  if (added_bytes != nullptr) *added_bytes = estimate;
  if (budget >= 0 && estimate > budget) {
    return absl::ResourceExhaustedError(absl::StrCat("the ", add.size(), " experts take ~", estimate,
                                                     " bytes resident; the memory budget has ", budget,
                                                     " bytes left"));
  }
  std::vector<ExpertKey> kept;
  if (current != nullptr) {
    for (const ExpertKey& key : remove) {
      if (!current->Hosts(key)) {
        return absl::NotFoundError(absl::StrCat("expert ", key.expert, " of layer ", key.layer, " is not hosted"));
      }
    }
    for (const ExpertKey& key : current->hosted()) {
      if (std::find(remove.begin(), remove.end(), key) == remove.end()) kept.push_back(key);
    }
  } else if (!remove.empty()) {
    return absl::NotFoundError("this worker hosts no experts to remove");
  }
  if (kept.empty() && weights.empty()) return std::shared_ptr<ExpertBackend>();  // nothing left
  if (kept.empty()) {
    ASSIGN_OR_RETURN(std::unique_ptr<ExpertBackend> made, CreateBackendFromWeights(weights, options));
    return std::shared_ptr<ExpertBackend>(std::move(made));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ExpertBackend> rebuilt, current->Rebuild(weights, remove));
  return std::shared_ptr<ExpertBackend>(std::move(rebuilt));
}

absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateBackend(const model::Checkpoint& checkpoint,
                                                             absl::Span<const ExpertKey> hosted,
                                                             const BackendOptions& options) {
  RETURN_IF_ERROR(CheckBackendKind(options));  // before reading any weights
  std::vector<ExpertWeights> weights;
  weights.reserve(hosted.size());
  for (const ExpertKey& key : hosted) {
    ASSIGN_OR_RETURN(ExpertWeights w, LoadExpertWeights(checkpoint, key, {.keep_quantized = true}));
    weights.push_back(std::move(w));
  }
  return CreateBackendFromWeights(weights, options);
}

absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateBackendFromWeights(absl::Span<const ExpertWeights> weights,
                                                                        const BackendOptions& options) {
  if (options.kind == "cpu") {
    ASSIGN_OR_RETURN(const CpuExpertBackend::Options cpu, CpuOptionsOf(options));
    ASSIGN_OR_RETURN(auto backend, CpuExpertBackend::FromWeights(weights, cpu));
    return std::unique_ptr<ExpertBackend>(std::move(backend));
  }
  if (options.kind == "cuda") {
    if (!options.quantize.empty()) {
      return absl::UnimplementedError("--quantize runs on the CPU backend only (--backend=cpu)");
    }
    for (const ExpertWeights& w : weights) {
      if (w.quantized()) {
        return absl::UnimplementedError(absl::StrCat(
            "the CUDA backend has no kernels for ", w.q1->format().name, " weights (expert ", w.key.expert,
            " of layer ", w.key.layer, "); --backend=cpu serves them as stored"));
      }
      if (w.b1.rank() > 0 || w.activation.alpha > 0.0f) {
        return absl::UnimplementedError(
            "experts with biases or gpt-oss's clamped activation run on the CPU backend only (--backend=cpu)");
      }
    }
    return cuda::CreateCudaBackend(
        weights, {.device = options.device, .dtype = options.cuda_dtype, .grouped_gemm = options.cuda_grouped_gemm});
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown backend '", options.kind, "'; expected cpu or cuda"));
}

absl::StatusOr<std::string> CudaDevice(int device) { return cuda::DescribeDevice(device); }

}  // namespace moe::experts
