// tests/testing/random_data.cc
#include "tests/testing/random_data.h"

#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"

namespace moe::testing {

std::vector<float> RandomVector(size_t count, uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<float> v(count);
  for (float& x : v) x = normal(rng);
  return v;
}

std::vector<uint8_t> RandomBytes(size_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(count);
  for (uint8_t& b : v) b = static_cast<uint8_t>(rng() >> 56);
  return v;
}

experts::ExpertWeights RandomExpert(experts::ExpertKey key, int hidden, int inter, uint64_t seed) {
  experts::ExpertWeights w;
  w.key = key;
  const float sh = 1.0f / std::sqrt(float(hidden)), si = 1.0f / std::sqrt(float(inter));
  w.w1 = model::Tensor::FromF32(RandomVector(size_t(inter) * hidden, seed * 3 + 1, sh), {inter, hidden});
  w.w3 = model::Tensor::FromF32(RandomVector(size_t(inter) * hidden, seed * 3 + 2, sh), {inter, hidden});
  w.w2 = model::Tensor::FromF32(RandomVector(size_t(hidden) * inter, seed * 3 + 3, si), {hidden, inter});
  return w;
}

std::string MakeTempDir(const std::string& prefix) {
  static std::atomic<int> counter{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::filesystem::path root = base != nullptr ? base : std::filesystem::temp_directory_path();
  std::filesystem::path dir =
      root / absl::StrCat("moe-", prefix, "-", ::getpid(), "-", counter.fetch_add(1));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

model::ModelConfig SmallConfig(int hidden, int inter, int experts, int top_k, int layers) {
  return model::DefaultConfig("mixtral", hidden, inter, experts, top_k, layers).value();
}

}  // namespace moe::testing
