// experts/expert_weights.h
// The three weight tensors of one SwiGLU expert, and the loader that takes them (and only them)
// from a checkpoint with their shapes checked. Backends convert them to their own layout.
// Plain values; thread-compatible.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/checkpoint.h"
#include "experts/expert_backend.h"
#include "experts/tensor.h"

namespace moe::experts {

struct ExpertWeights {
  ExpertKey key;
  Tensor w1;  // [I, H] gate projection
  Tensor w3;  // [I, H] up projection
  Tensor w2;  // [H, I] down projection
};

// Borrowed views of the weights of `key`. NOT_FOUND if the layer or expert is outside the
// config or a tensor is missing; INVALID_ARGUMENT for a wrong shape or unservable dtype.
absl::StatusOr<ExpertWeights> LoadExpertWeights(const Checkpoint& checkpoint, ExpertKey key);

// Every expert of every layer of the checkpoint's config, sorted.
std::vector<ExpertKey> AllExperts(const ModelConfig& config);
// Experts [first, last] (inclusive) of every layer, sorted.
std::vector<ExpertKey> ExpertRange(const ModelConfig& config, int first, int last);

}  // namespace moe::experts
