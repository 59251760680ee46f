// experts/factory/backend_factory.cc
#include "experts/factory/backend_factory.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "experts/cpu/cpu_backend.h"
#include "experts/cuda/cuda_backend.h"

namespace moe::experts {

absl::StatusOr<std::unique_ptr<ExpertBackend>> CreateBackend(const model::Checkpoint& checkpoint,
                                                             absl::Span<const ExpertKey> hosted,
                                                             const BackendOptions& options) {
  if (options.kind == "cuda") {
    // Fail on a missing GPU before reading any weights.
    RETURN_IF_ERROR(CudaDevice(options.device).status());
  } else if (options.kind != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat("unknown backend '", options.kind, "'; expected cpu or cuda"));
  }
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
    const model::WeightFormat* quantize = nullptr;
    if (!options.quantize.empty()) {
      quantize = model::FindWeightFormat(options.quantize);
      if (quantize == nullptr || quantize->quantize == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("cannot quantize to '", options.quantize, "'; formats: ",
                                                       absl::StrJoin(model::QuantizableFormatNames(), ", ")));
      }
    }
    ASSIGN_OR_RETURN(auto backend, CpuExpertBackend::FromWeights(
                                       weights, {.threads = options.threads,
                                                 .f32_compute = options.cpu_f32_compute,
                                                 .small_rows = options.cpu_small_rows,
                                                 .onednn_amx = options.cpu_onednn_amx,
                                                 .quantize = quantize,
                                                 .int8_activations = options.cpu_int8_activations}));
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
