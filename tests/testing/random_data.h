// tests/testing/random_data.h
// Seeded random test data (never zeros) and temporary folders. Test-only; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "experts/expert_weights.h"
#include "model/model_config.h"

namespace moe::testing {

// `count` values from N(0, stddev²), deterministic for `seed`.
std::vector<float> RandomVector(size_t count, uint64_t seed, float stddev = 1.0f);
// `count` uniformly random bytes, deterministic for `seed` (raw quantized blocks).
std::vector<uint8_t> RandomBytes(size_t count, uint64_t seed);
// Random f32 weights of a SwiGLU expert of dims (hidden, inter), scaled like an initialisation.
experts::ExpertWeights RandomExpert(experts::ExpertKey key, int hidden, int inter, uint64_t seed);
// A fresh, empty folder under the test's temporary directory (unique per call).
std::string MakeTempDir(const std::string& prefix);
// A small Mixtral-family config for tests.
model::ModelConfig SmallConfig(int hidden = 32, int inter = 48, int experts = 8, int top_k = 2,
                                 int layers = 2);

}  // namespace moe::testing
