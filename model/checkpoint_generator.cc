// model/checkpoint_generator.cc
#include "model/checkpoint_generator.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "model/fp8.h"
#include "model/safetensors_writer.h"
#include "model/tensor.h"
#include "model/tensor_names.h"
#include "nlohmann/json.hpp"

namespace moe::model {
namespace {

namespace fs = std::filesystem;

constexpr int kFp8Block = 128;  // DeepSeek-V3's weight_block_size

struct PlannedTensor {
  std::string name;
  std::vector<int64_t> shape;
  float stddev;
  uint64_t seed;
  bool force_f32 = false;
  bool mlp = false;  // an expert / shared / dense projection (quantized with GeneratorOptions::fp8)
  // A stacked expert tensor: its [E, n, k] with rows = output features (quantized with mxfp4).
  int64_t stacked_n = 0, stacked_k = 0;
  float first_row_scale = 1.0f;  // row 0 multiplied by this (a skewed gate: GeneratorOptions::skew)
};

Tensor RandomTensor(const PlannedTensor& p, DType dtype) {
  Tensor f32 = Tensor::Zeros(DType::kF32, p.shape);
  std::mt19937_64 rng(p.seed);
  std::normal_distribution<float> normal(0.0f, p.stddev);
  for (float& v : f32.mutable_f32()) v = normal(rng);
  if (p.first_row_scale != 1.0f && p.shape.size() == 2) {
    for (int64_t j = 0; j < p.shape[1]; ++j) f32.mutable_f32()[j] *= p.first_row_scale;
  }
  return dtype == DType::kF32 || p.force_f32 ? f32 : f32.ConvertTo(dtype);
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
  if (options.fp8 && (!c.names.stacked_gate_up.empty() || !c.names.flat_gate.empty())) {
    return absl::InvalidArgumentError(absl::StrCat("fp8 is written for per-expert families; ", c.model_type,
                                                   " stacks its experts"));
  }
  if (options.mxfp4 && (!c.names.gate_up_interleaved || c.hidden_size % 32 != 0 || c.moe_intermediate_size % 32 != 0)) {
    return absl::InvalidArgumentError("mxfp4 is written for gpt_oss's stacked experts with hidden and intermediate "
                                      "sizes that are multiples of 32");
  }
  if (options.num_shards < 1) {
    return absl::InvalidArgumentError(absl::StrCat("num_shards must be >= 1, got ", options.num_shards));
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));

  const int64_t h = c.hidden_size, e = c.num_experts;
  const float sh = 1.0f / std::sqrt(float(h));
  std::vector<PlannedTensor> plan;
  uint64_t seed = options.seed * 0x9E3779B97F4A7C15ull + 1;
  auto mlp = [&](auto name_of, int64_t inter) {
    plan.push_back({name_of(Projection::kGate), {inter, h}, sh, seed++, false, true});
    plan.push_back({name_of(Projection::kUp), {inter, h}, sh, seed++, false, true});
    plan.push_back({name_of(Projection::kDown), {h, inter}, 1.0f / std::sqrt(float(inter)), seed++, false, true});
  };
  for (int layer = 0; layer < c.num_layers; ++layer) {
    if (c.IsMoeLayer(layer)) {
      const int64_t scored = e + c.zero_experts;  // the gate scores zero experts too
      plan.push_back({GateWeightName(c, layer), {scored, h}, sh, seed++});
      plan.back().first_row_scale = options.skew;
      if (!c.names.router_bias.empty()) plan.push_back({RouterBiasName(c, layer), {scored}, 0.5f, seed++});
      if (c.selection_bias) {
        // Selection bias, always f32; spread enough that some biased scores go negative.
        plan.push_back({GateBiasName(c, layer), {scored}, 0.5f, seed++, /*force_f32=*/true});
      }
      const int64_t mi = c.moe_intermediate_size;
      if (!c.names.flat_gate.empty()) {  // DBRX: three [E·I, H] stacks
        for (Projection p : {Projection::kGate, Projection::kUp, Projection::kDown}) {
          plan.push_back({FlatExpertsName(c, layer, p), {e * mi, h},
                          p == Projection::kDown ? 1.0f / std::sqrt(float(mi)) : sh, seed++});
        }
      } else if (!c.names.stacked_gate_up.empty()) {  // one [E, 2I, H] and one [E, H, I] tensor (or transposed)
        const bool t = c.names.stacked_transposed;
        plan.push_back({StackedGateUpName(c, layer), t ? std::vector<int64_t>{e, h, 2 * mi} : std::vector<int64_t>{e, 2 * mi, h},
                        sh, seed++, false, false, 2 * mi, h});
        plan.push_back({StackedDownName(c, layer), t ? std::vector<int64_t>{e, mi, h} : std::vector<int64_t>{e, h, mi},
                        1.0f / std::sqrt(float(mi)), seed++, false, false, h, mi});
        if (!c.names.stacked_gate_up_bias.empty()) {
          plan.push_back({StackedGateUpBiasName(c, layer), {e, 2 * mi}, 0.1f, seed++});
          plan.push_back({StackedDownBiasName(c, layer), {e, h}, 0.1f, seed++});
        }
      } else {
        for (int x = 0; x < e; ++x) {
          mlp([&](Projection p) { return ExpertWeightName(c, layer, x, p); }, mi);
        }
      }
      if (c.HasSharedGate(layer)) plan.push_back({SharedGateName(c, layer), {1, h}, sh, seed++});
    }
    if (c.HasAlwaysOn(layer) && c.IsMoeLayer(layer) && !c.names.shared_fused_gate_up.empty()) {
      const int64_t si = c.AlwaysOnIntermediate(layer);
      plan.push_back({SharedFusedGateUpName(c, layer), {2 * si, h}, sh, seed++, false, true});
      plan.push_back({SharedFusedDownName(c, layer), {h, si}, 1.0f / std::sqrt(float(si)), seed++, false, true});
    } else if (c.HasAlwaysOn(layer)) {
      mlp([&](Projection p) { return AlwaysOnWeightName(c, layer, p); }, c.AlwaysOnIntermediate(layer));
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
      weight_map[plan[t].name] = file;
      if (options.mxfp4 && plan[t].stacked_n > 0) {
        const int64_t e = plan[t].shape[0], n = plan[t].stacked_n, k = plan[t].stacked_k;
        const Tensor w = RandomTensor({plan[t].name, {e, n, k}, plan[t].stddev, plan[t].seed}, DType::kF32);
        std::vector<uint8_t> blocks, scales;
        for (int64_t x = 0; x < e; ++x) QuantizeMxfp4Expert(w.f32().data() + x * n * k, n, k, &blocks, &scales);
        writer.AddRaw(plan[t].name + "_blocks", "U8", {e, n, k / 32, 16}, std::move(blocks));
        writer.AddRaw(plan[t].name + "_scales", "U8", {e, n, k / 32}, std::move(scales));
        weight_map.erase(plan[t].name);
        weight_map[plan[t].name + "_blocks"] = weight_map[plan[t].name + "_scales"] = file;
        continue;
      }
      if (options.fp8 && plan[t].mlp) {
        const Tensor w = RandomTensor(plan[t], DType::kF32);
        std::vector<uint8_t> codes;
        Tensor scales = QuantizeFp8Blocks(w.f32().data(), w.dim(0), w.dim(1), kFp8Block, kFp8Block, &codes);
        writer.AddRaw(plan[t].name, "F8_E4M3", plan[t].shape, std::move(codes));
        writer.Add(plan[t].name + "_scale_inv", std::move(scales));
        weight_map[plan[t].name + "_scale_inv"] = file;
        continue;
      }
      writer.Add(plan[t].name, RandomTensor(plan[t], options.dtype));
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
  if (options.fp8) written.fp8_block_n = written.fp8_block_k = kFp8Block;
  written.mxfp4 = options.mxfp4;
  written.torch_dtype = options.dtype == DType::kF32    ? "float32"
                        : options.dtype == DType::kBF16 ? "bfloat16"
                                                        : "float16";
  return WriteText(fs::path(dir) / "config.json", written.ToJson());
}

}  // namespace moe::model
