// experts/expert_weights.h
// The three weight tensors of one SwiGLU MLP (a routed expert, or a layer's always-on MLP), and
// the loader that takes them (and only them) from a checkpoint with their shapes checked.
// Backends convert them to their own layout. Plain values; thread-compatible.
#pragma once

#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "model/checkpoint.h"
#include "model/quantized_matrix.h"
#include "model/tensor.h"

namespace moe::experts {

// The activation between an expert's products: SwiGLU silu(g)·u, or, when alpha > 0, gpt-oss's
// clamped variant g = min(g, limit), u = clamp(u, ±limit), (u + 1)·g·σ(alpha·g).
struct ExpertActivation {
  float alpha = 0.0f;
  float limit = 0.0f;
};

struct ExpertWeights {
  ExpertKey key;
  model::Tensor w1;  // [I, H] gate projection
  model::Tensor w3;  // [I, H] up projection
  model::Tensor w2;  // [H, I] down projection
  model::Tensor b1, b3, b2;  // biases [I], [I], [H] (gpt-oss); empty when the family has none
  ExpertActivation activation;
  // The same three weights resident in a low-bit format (FP8, MXFP4 as a checkpoint stores them,
  // or quantized at load); w1, w3 and w2 are then empty (rank 0). Shared, immutable.
  std::shared_ptr<const model::QuantizedMatrix> q1 = nullptr, q3 = nullptr, q2 = nullptr;
  bool quantized() const { return q1 != nullptr; }
};

struct LoadOptions {
  // FP8 and MXFP4 weights as stored (q1, q3, q2) instead of widened to bf16 (w1, w3, w2).
  bool keep_quantized = false;
};

// Borrowed views of the weights of `key`: a routed expert (expert < num_experts of an MoE
// layer) or the always-on MLP (expert == config.AlwaysOnId()). NOT_FOUND if the key is outside
// the model or a tensor is missing; INVALID_ARGUMENT naming the tensor for a wrong shape or a
// dtype we cannot serve.
absl::StatusOr<ExpertWeights> LoadExpertWeights(const model::Checkpoint& checkpoint, ExpertKey key,
                                                LoadOptions options = {});

// The weights of `w` quantized to `format` (from their f32 values); w itself when it is already
// quantized. INVALID_ARGUMENT if the format has no quantizer or a dimension is not a multiple of
// its block. Used by the backends' --quantize.
absl::StatusOr<ExpertWeights> QuantizeExpertWeights(const ExpertWeights& w, const model::WeightFormat& format);

// Every routed expert of every MoE layer, sorted: what workers host.
std::vector<ExpertKey> AllExperts(const model::ModelConfig& config);
// Routed experts [first, last] of every MoE layer, sorted.
std::vector<ExpertKey> ExpertRange(const model::ModelConfig& config, int first, int last);
// The always-on MLP of every layer that has one (shared experts, dense layers), sorted.
std::vector<ExpertKey> AlwaysOnExperts(const model::ModelConfig& config);

}  // namespace moe::experts
