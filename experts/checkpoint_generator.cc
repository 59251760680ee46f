// experts/checkpoint_generator.cc
#include "experts/checkpoint_generator.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "experts/safetensors_writer.h"
#include "experts/status_macros.h"
#include "experts/tensor.h"
#include "experts/tensor_names.h"
#include "nlohmann/json.hpp"

namespace moe::experts {
namespace {

namespace fs = std::filesystem;

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> shape;
  float stddev;
  uint64_t seed;
};

Tensor RandomTensor(const PlannedTensor& p, DType dtype) {
  Tensor f32 = Tensor::Zeros(DType::kF32, p.shape);
  std::mt19937_64 rng(p.seed);
  std::normal_distribution<float> normal(0.0f, p.stddev);
  for (float& v : f32.mutable_f32()) v = normal(rng);
  return dtype == DType::kF32 ? f32 : f32.ConvertTo(dtype);
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path.string(), " failed"));
  return absl::OkStatus();
}

}  // namespace

absl::Status WriteRandomCheckpoint(const std::string& dir, const GeneratorOptions& options) {
  const ModelConfig& c = options.config;
  // Round-trip through the parser so we never write a config we would refuse to read.
  RETURN_IF_ERROR(ModelConfig::Parse(c.ToJson()).status());
  if (options.num_shards < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_shards must be >= 1, got ", options.num_shards));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));

  const int64_t h = c.hidden_size, i = c.intermediate_size, e = c.num_experts;
  std::vector<PlannedTensor> plan;
  uint64_t seed = options.seed * 0x9E3779B97F4A7C15ull + 1;
  for (int layer = 0; layer < c.num_layers; ++layer) {
    plan.push_back({GateWeightName(layer), {e, h}, 1.0f / std::sqrt(float(h)), seed++});
    for (int x = 0; x < e; ++x) {
      plan.push_back({ExpertWeightName(layer, x, Projection::kW1), {i, h}, 1.0f / std::sqrt(float(h)), seed++});
      plan.push_back({ExpertWeightName(layer, x, Projection::kW3), {i, h}, 1.0f / std::sqrt(float(h)), seed++});
      plan.push_back({ExpertWeightName(layer, x, Projection::kW2), {h, i}, 1.0f / std::sqrt(float(i)), seed++});
    }
  }
  const int shards = std::min<int>(options.num_shards, static_cast<int>(plan.size()));
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t total_bytes = 0;
  for (int s = 0; s < shards; ++s) {
    // Contiguous slices of the plan, so a layer's experts mostly share a shard as in real models.
    const size_t begin = plan.size() * s / shards, end = plan.size() * (s + 1) / shards;
    const std::string file = shards == 1 ? "model.safetensors"
                                         : absl::StrFormat("model-%05d-of-%05d.safetensors", s + 1, shards);
    SafetensorsWriter writer;
    for (size_t t = begin; t < end; ++t) {
      writer.Add(plan[t].name, RandomTensor(plan[t], options.dtype));
      weight_map[plan[t].name] = file;
    }
    total_bytes += writer.num_bytes();
    RETURN_IF_ERROR(writer.Write((fs::path(dir) / file).string(), metadata));
  }
  if (shards > 1) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total_bytes}};
    index["weight_map"] = weight_map;
    RETURN_IF_ERROR(WriteText(fs::path(dir) / "model.safetensors.index.json", index.dump(2) + "\n"));
  }
  ModelConfig written = c;
  written.torch_dtype = options.dtype == DType::kF32    ? "float32"
                        : options.dtype == DType::kBF16 ? "bfloat16"
                                                        : "float16";
  return WriteText(fs::path(dir) / "config.json", written.ToJson());
}

}  // namespace moe::experts
