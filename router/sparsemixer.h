// router/sparsemixer.h
// PhiMoE's SparseMixer top-2 at inference (Liu et al. 2024; Hugging Face's `sparsemixer` with
// training off): expert 1 is the argmax of the logits s; its weight is the softmax, at expert 1,
// of the logits with every s_j masked to −∞ where (max − s_j) / max(|s_j|, max) > 2ε. Expert 2
// is the argmax with expert 1 excluded, weighed the same way against the second maximum (the
// mask is computed on all logits, expert 1 excluded from the softmax). No renormalisation.
// Called by Gate; a pure function, thread-safe.
#pragma once

#include <cstdint>

#include "absl/types/span.h"

namespace moe::router {

// `logits` of one token (at least 2 experts). Writes the two experts and their weights.
void SparseMixerTop2(absl::Span<const float> logits, float eps, int32_t experts[2], float weights[2]);

}  // namespace moe::router
