// tests/testing/naive_expert.h
// The reference every expert backend is tested against: one SwiGLU expert (with biases and
// gpt-oss's clamped activation when the weights have them) on one row, in double precision, from
// the weights' f32 values. Test-only; pure.
#pragma once

#include <vector>

#include "experts/expert_weights.h"

namespace moe::testing {

// y = W2·(silu(W1·x) ⊙ W3·x) for the row x (hidden values). REQUIRES: w1, w3, w2 set (not only
// q1, q3, q2: pass testing::Dequantized(w) for quantized experts).
std::vector<double> NaiveExpert(const experts::ExpertWeights& w, const float* x);

}  // namespace moe::testing
