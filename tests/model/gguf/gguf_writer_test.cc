// tests/model/gguf/gguf_writer_test.cc
// moe-make-checkpoint --format=gguf's writer: for every family it writes, the file opens as a
// Checkpoint whose config equals the one written (dims and routing: the metadata round trip), every
// expert and always-on MLP loads in the chosen type, and a family, type or shape it cannot write is
// refused. (gguf-py reading these files, and the served numbers: tests/golden/gguf_parity_test.py.)
#include "model/gguf/gguf_writer.h"

#include "experts/expert_weights.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::StatusIs;

TEST(GgufWriterTest, EveryFamilyRoundTripsThroughTheReader) {
  const std::string dir = testing::MakeTempDir("gguf-writer");
  for (const char* family :
       {"qwen2_moe", "qwen3_moe", "mixtral", "deepseek_v2", "deepseek_v3", "glm4_moe"}) {
    for (const char* type : {"q8_0", "q4_k", "f16"}) {
      // (Two layers: DeepSeek's and GLM's first is dense, the second MoE with shared experts.)
      ASSERT_OK_AND_ASSIGN(ModelConfig c, DefaultConfig(family, 256, 256, 8, 2, 2));
      const std::string path = dir + "/" + family + "-" + type + ".gguf";
      ASSERT_OK(WriteRandomGguf(path, {.config = c, .type = type, .seed = 7}));
      ASSERT_OK_AND_ASSIGN(auto ckpt, Checkpoint::Open(path));
      const ModelConfig& r = ckpt->config();
      const std::string what = std::string(family) + " " + type;
      EXPECT_EQ(r.model_type, c.model_type) << what;
      EXPECT_EQ(r.num_layers, c.num_layers) << what;
      EXPECT_EQ(r.num_experts, c.num_experts) << what;
      EXPECT_EQ(r.top_k, c.top_k) << what;
      EXPECT_EQ(r.moe_intermediate_size, c.moe_intermediate_size) << what;
      EXPECT_EQ(r.norm_topk_prob, c.norm_topk_prob) << what;
      EXPECT_EQ(r.scoring_func, c.scoring_func) << what;
      EXPECT_EQ(r.n_group, c.n_group) << what;
      EXPECT_EQ(r.topk_group, c.topk_group) << what;
      EXPECT_EQ(r.routed_scaling_factor, c.routed_scaling_factor) << what;
      EXPECT_EQ(r.first_k_dense_replace, c.first_k_dense_replace) << what;
      for (int layer = 0; layer < r.num_layers; ++layer) {
        EXPECT_EQ(r.IsMoeLayer(layer), c.IsMoeLayer(layer)) << what << " layer " << layer;
        EXPECT_EQ(r.HasAlwaysOn(layer), c.HasAlwaysOn(layer)) << what << " layer " << layer;
        if (r.HasAlwaysOn(layer)) {
          EXPECT_EQ(r.AlwaysOnIntermediate(layer), c.AlwaysOnIntermediate(layer))
              << what << " layer " << layer;
          ASSERT_OK(
              experts::LoadExpertWeights(*ckpt, {layer, r.AlwaysOnId()}, {.keep_quantized = true})
                  .status())
              << what;
        }
      }
      const int moe_layer = r.num_layers - 1;
      ASSERT_OK_AND_ASSIGN(
          const experts::ExpertWeights w,
          experts::LoadExpertWeights(*ckpt, {moe_layer, 3}, {.keep_quantized = true}));
      EXPECT_EQ(w.quantized(), std::string(type) != "f16") << what;
      if (w.quantized()) {
        EXPECT_EQ(w.q1->format().name, std::string(type)) << what;
      }
    }
  }
}

TEST(GgufWriterTest, WhatItCannotWriteIsRefused) {
  const std::string dir = testing::MakeTempDir("gguf-writer-bad");
  ASSERT_OK_AND_ASSIGN(ModelConfig olmoe, DefaultConfig("olmoe", 256, 256, 8, 2, 2));
  EXPECT_THAT(
      WriteRandomGguf(dir + "/a.gguf", {.config = olmoe}),
      StatusIs(absl::StatusCode::kInvalidArgument, "family olmoe has no GGUF architecture"));
  ASSERT_OK_AND_ASSIGN(ModelConfig qwen, DefaultConfig("qwen3_moe", 96, 96, 8, 2, 2));
  EXPECT_THAT(WriteRandomGguf(dir + "/b.gguf", {.config = qwen, .type = "q2_k"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "GGUF type 'q2_k'"));
  EXPECT_THAT(WriteRandomGguf(dir + "/c.gguf", {.config = qwen, .type = "q4_k"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "multiple of 256"));
  EXPECT_THAT(WriteRandomGguf("/nonexistent-dir/d.gguf", {.config = qwen}),
              StatusIs(absl::StatusCode::kInternal, ""));
}

}  // namespace
}  // namespace moe::model
