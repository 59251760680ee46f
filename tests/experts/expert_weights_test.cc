// tests/experts/expert_weights_test.cc
// The expert-weight loader on real checkpoints: every dtype, shards, FP8 and MXFP4, missing and misshapen tensors.
#include "experts/expert_weights.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "model/checkpoint_generator.h"
#include "model/safetensors_writer.h"
#include "model/tensor_names.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

using ::moe::testing::StatusIs;

std::string Generate(int shards, model::DType dtype, uint64_t seed = 11) {
  const std::string dir = testing::MakeTempDir("ckpt");
  model::GeneratorOptions options{.config = testing::SmallConfig(), .dtype = dtype, .num_shards = shards,
                           .seed = seed};
  EXPECT_OK(model::WriteRandomCheckpoint(dir, options));
  return dir;
}

TEST(ExpertWeightsTest, SingleFileHasEveryTensorWithRealisticScale) {
  ASSERT_OK_AND_ASSIGN(auto ckpt, model::Checkpoint::Open(Generate(1, model::DType::kBF16)));
  const model::ModelConfig& c = ckpt->config();
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  for (int layer = 0; layer < c.num_layers; ++layer) {
    ASSERT_OK_AND_ASSIGN(model::Tensor gate, ckpt->GetWithShape(model::GateWeightName(c, layer), {8, 32}));
    EXPECT_EQ(gate.dtype(), model::DType::kBF16);
    for (int e = 0; e < c.num_experts; ++e) {
      ASSERT_OK_AND_ASSIGN(ExpertWeights w, LoadExpertWeights(*ckpt, {layer, e}));
      model::Tensor w2 = w.w2.ToF32();
      double sum_sq = 0;
      for (float v : w2.f32()) sum_sq += double(v) * v;
      const double stddev = std::sqrt(sum_sq / w2.num_elements());
      EXPECT_NEAR(stddev, 1.0 / std::sqrt(48.0), 0.2 / std::sqrt(48.0));  // N(0, 1/fan_in)
    }
  }
}

TEST(ExpertWeightsTest, ShardedCheckpointMapsOnlyTheShardsItNeeds) {
  const std::string dir = Generate(4, model::DType::kBF16);
  EXPECT_TRUE(std::filesystem::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/model-00004-of-00004.safetensors"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, model::Checkpoint::Open(dir));
  EXPECT_TRUE(ckpt->OpenedFiles().empty());
  ASSERT_OK(LoadExpertWeights(*ckpt, {1, 7}).status());  // the last layer's last expert
  EXPECT_EQ(ckpt->OpenedFiles(), std::vector<std::string>{"model-00004-of-00004.safetensors"});
  for (const ExpertKey& key : AllExperts(ckpt->config())) {
    ASSERT_OK(LoadExpertWeights(*ckpt, key).status());
  }
  EXPECT_EQ(ckpt->OpenedFiles().size(), 4u);
}

TEST(ExpertWeightsTest, MissingPieces) {
  EXPECT_THAT(model::Checkpoint::Open("/nonexistent/ckpt"),
              StatusIs(absl::StatusCode::kNotFound, "/nonexistent/ckpt does not exist"));
  const std::string empty = testing::MakeTempDir("ckpt");
  EXPECT_THAT(model::Checkpoint::Open(empty), StatusIs(absl::StatusCode::kNotFound, "config.json"));
  std::ofstream(empty + "/config.json") << testing::SmallConfig().ToJson();
  EXPECT_THAT(model::Checkpoint::Open(empty),
              StatusIs(absl::StatusCode::kNotFound, "neither model.safetensors"));

  ASSERT_OK_AND_ASSIGN(auto ckpt, model::Checkpoint::Open(Generate(2, model::DType::kBF16)));
  EXPECT_THAT(ckpt->Get("model.layers.9.block_sparse_moe.gate.weight"),
              StatusIs(absl::StatusCode::kNotFound, "not in the index"));
  EXPECT_THAT(LoadExpertWeights(*ckpt, {0, 8}), StatusIs(absl::StatusCode::kNotFound, "not in the model"));
}

TEST(ExpertWeightsTest, WrongShapeNamesTheTensor) {
  const std::string dir = testing::MakeTempDir("ckpt");
  std::ofstream(dir + "/config.json") << testing::SmallConfig().ToJson();
  model::SafetensorsWriter writer;
  const std::string name = model::ExpertWeightName(testing::SmallConfig(), 0, 0, model::Projection::kGate);
  writer.Add(name, model::Tensor::FromF32(testing::RandomVector(48 * 31, 1), {48, 31}));
  ASSERT_OK(writer.Write(dir + "/model.safetensors"));
  ASSERT_OK_AND_ASSIGN(auto ckpt, model::Checkpoint::Open(dir));
  EXPECT_THAT(LoadExpertWeights(*ckpt, {0, 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, name + "' in checkpoint " + dir +
                                                               " has shape [48, 31], expected [48, 32]"));
}

// [E, A, B] -> [E, B, A].
model::Tensor Transposed(const model::Tensor& t) {
  const int64_t e = t.shape()[0], a = t.shape()[1], b = t.shape()[2];
  std::vector<float> out(t.num_elements());
  for (int64_t x = 0; x < e; ++x)
    for (int64_t i = 0; i < a; ++i)
      for (int64_t j = 0; j < b; ++j) out[(x * b + j) * a + i] = t.f32()[(x * a + i) * b + j];
  return model::Tensor::FromF32(out, {e, b, a});
}

TEST(ExpertWeightsTest, StackedExpertsInEitherLayoutByShape) {
  // Qwen3-VL-MoE: save_pretrained writes [E, 2I, H] / [E, H, I], the hub [E, H, 2I] / [E, I, H].
  const int64_t h = 16, i = 6, e = 4;
  ASSERT_OK_AND_ASSIGN(const model::ModelConfig c, model::ModelConfig::Parse(R"({"model_type": "qwen3_vl_moe_text",
    "hidden_size": 16, "num_hidden_layers": 1, "num_experts": 4, "num_experts_per_tok": 2,
    "moe_intermediate_size": 6, "intermediate_size": 8})"));
  const model::Tensor gate_up = model::Tensor::FromF32(testing::RandomVector(e * 2 * i * h, 3), {e, 2 * i, h});
  const model::Tensor down = model::Tensor::FromF32(testing::RandomVector(e * h * i, 4), {e, h, i});
  const auto write = [&](const model::Tensor& gu, const model::Tensor& dn) {
    const std::string dir = testing::MakeTempDir("ckpt");
    std::ofstream(dir + "/config.json") << c.ToJson();
    model::SafetensorsWriter writer;
    writer.Add(model::StackedGateUpName(c, 0), gu);
    writer.Add(model::StackedDownName(c, 0), dn);
    EXPECT_OK(writer.Write(dir + "/model.safetensors"));
    return dir;
  };
  ASSERT_OK_AND_ASSIGN(auto saved, model::Checkpoint::Open(write(gate_up, down)));
  ASSERT_OK_AND_ASSIGN(auto hub, model::Checkpoint::Open(write(Transposed(gate_up), Transposed(down))));
  ASSERT_OK_AND_ASSIGN(auto mixed, model::Checkpoint::Open(write(Transposed(gate_up), down)));
  for (int64_t x = 0; x < e; ++x) {
    ASSERT_OK_AND_ASSIGN(const ExpertWeights a, LoadExpertWeights(*saved, {0, static_cast<int>(x)}));
    // Gate rows first, then up: expert x's rows of the [E, 2I, H] stack.
    for (int64_t r = 0; r < i; ++r) {
      for (int64_t k = 0; k < h; ++k) {
        ASSERT_EQ(a.w1.ToF32().f32()[r * h + k], gate_up.f32()[(x * 2 * i + r) * h + k]);
        ASSERT_EQ(a.w3.ToF32().f32()[r * h + k], gate_up.f32()[(x * 2 * i + i + r) * h + k]);
      }
    }
    for (const auto* other : {hub.get(), mixed.get()}) {
      ASSERT_OK_AND_ASSIGN(const ExpertWeights b, LoadExpertWeights(*other, {0, static_cast<int>(x)}));
      EXPECT_EQ(a.w1.ToF32().f32(), b.w1.ToF32().f32());
      EXPECT_EQ(a.w3.ToF32().f32(), b.w3.ToF32().f32());
      EXPECT_EQ(a.w2.ToF32().f32(), b.w2.ToF32().f32());
    }
  }
  ASSERT_OK_AND_ASSIGN(auto wrong, model::Checkpoint::Open(write(
      model::Tensor::FromF32(testing::RandomVector(e * 2 * i * (h + 1), 5), {e, 2 * i, h + 1}), down)));
  EXPECT_THAT(LoadExpertWeights(*wrong, {0, 1}),
              StatusIs(absl::StatusCode::kInvalidArgument, "has shape [4, 12, 17], expected [4, 12, 16] or [4, 16, 12] (transposed)"));
}

TEST(ExpertWeightsTest, Fp8CheckpointLoadsAsBf16CloseToTheUnquantizedWeights) {
  // Same seed, written once in f32 and once as FP8 blocks of 128 (H 200, I 136: ragged edges).
  model::ModelConfig config = model::DefaultConfig("deepseek_v3", 200, 136, 8, 2, 2).value();
  const std::string plain = testing::MakeTempDir("ckpt-f32"), fp8 = testing::MakeTempDir("ckpt-fp8");
  ASSERT_OK(model::WriteRandomCheckpoint(plain, {.config = config, .dtype = model::DType::kF32, .num_shards = 2, .seed = 4}));
  ASSERT_OK(model::WriteRandomCheckpoint(fp8, {.config = config, .dtype = model::DType::kF32, .num_shards = 2, .seed = 4, .fp8 = true}));
  ASSERT_OK_AND_ASSIGN(auto a, model::Checkpoint::Open(plain));
  ASSERT_OK_AND_ASSIGN(auto b, model::Checkpoint::Open(fp8));
  EXPECT_EQ(b->config().fp8_block_n, 128);
  for (const ExpertKey key : {ExpertKey{1, 3}, ExpertKey{1, config.AlwaysOnId()}, ExpertKey{0, config.AlwaysOnId()}}) {
    ASSERT_OK_AND_ASSIGN(ExpertWeights want, LoadExpertWeights(*a, key));
    ASSERT_OK_AND_ASSIGN(ExpertWeights got, LoadExpertWeights(*b, key));
    for (const auto& [w, g] : {std::pair{&want.w1, &got.w1}, {&want.w3, &got.w3}, {&want.w2, &got.w2}}) {
      ASSERT_EQ(g->dtype(), model::DType::kBF16);
      const model::Tensor gf = g->ToF32();
      float amax = 0;
      for (float v : w->f32()) amax = std::max(amax, std::fabs(v));
      for (int64_t x = 0; x < w->num_elements(); ++x) {
        // e4m3 keeps 3 mantissa bits (relative error <= 2^-4), then bf16 rounds once more.
        ASSERT_NEAR(gf.f32()[x], w->f32()[x], std::fabs(w->f32()[x]) / 14 + amax / 448 / 64)
            << "layer " << key.layer << " expert " << key.expert << " value " << x;
      }
    }
  }
  // The router weights are not quantized.
  ASSERT_OK_AND_ASSIGN(model::Tensor gate, b->Get(model::GateWeightName(b->config(), 1)));
  EXPECT_EQ(gate.dtype(), model::DType::kF32);
}

TEST(ExpertWeightsTest, Mxfp4CheckpointOfGptOssLoadsEachExpertAsBf16) {
  const model::ModelConfig config = model::DefaultConfig("gpt_oss", 64, 96, 8, 2, 2).value();
  const std::string dir = testing::MakeTempDir("ckpt-mxfp4");
  ASSERT_OK(model::WriteRandomCheckpoint(dir, {.config = config, .dtype = model::DType::kF32, .num_shards = 3, .seed = 2, .mxfp4 = true}));
  ASSERT_OK_AND_ASSIGN(auto ckpt, model::Checkpoint::Open(dir));
  EXPECT_TRUE(ckpt->config().mxfp4);
  ASSERT_OK_AND_ASSIGN(ExpertWeights w, LoadExpertWeights(*ckpt, {1, 5}));
  EXPECT_EQ(w.w1.shape(), (std::vector<int64_t>{96, 64}));
  EXPECT_EQ(w.w2.shape(), (std::vector<int64_t>{64, 96}));
  EXPECT_EQ(w.w1.dtype(), model::DType::kBF16);
  EXPECT_EQ(w.b1.shape(), (std::vector<int64_t>{96}));
  // Every value is an e2m1 value times a power of two, and the stddev is the generator's.
  double sum_sq = 0;
  const model::Tensor w2 = w.w2.ToF32();
  for (float v : w2.f32()) {
    int e;
    const float m = std::fabs(std::frexp(v, &e));  // v = m · 2^e, m in [0.5, 1)
    EXPECT_TRUE(m == 0.0f || m == 0.5f || m == 0.75f) << v;
    sum_sq += double(v) * v;
  }
  EXPECT_NEAR(std::sqrt(sum_sq / w2.num_elements()), 1.0 / std::sqrt(96.0), 0.3 / std::sqrt(96.0));
  EXPECT_THAT(model::WriteRandomCheckpoint(testing::MakeTempDir("ckpt-bad"), {.config = testing::SmallConfig(), .mxfp4 = true}),
              StatusIs(absl::StatusCode::kInvalidArgument, "mxfp4 is written for gpt_oss"));
}

}  // namespace
}  // namespace moe::experts
