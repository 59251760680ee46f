// tests/model/gguf/gguf_model_test.cc
// A GGUF model through Checkpoint: the config translated from the metadata, the router's gate,
// experts sliced from the stacked tensors and kept as stored (resident bytes = the file's bytes),
// or dequantized exactly; and the refusals: an architecture we do not serve (named, with the
// served list), a missing or mistyped key, an expert type we do not serve, a model without experts.
// (The numbers of every architecture against a reference: tests/golden/gguf_parity_test.py.)
#include "model/gguf/gguf_model.h"

#include <cstring>

#include "experts/expert_weights.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "tests/testing/gguf_bytes.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::StatusIs;

std::string Write(const std::vector<uint8_t>& bytes, const std::string& name = "model.gguf") {
  const std::string path = testing::MakeTempDir("gguf-model") + "/" + name;
  testing::WriteBytes(path, bytes);
  return path;
}

TEST(GgufModelTest, Qwen3MoeConfigGateAndExpertsAsStored) {
  const std::string path = Write(testing::TinyGgufModel("qwen3moe", 64, 32, 4, 2));
  ASSERT_OK_AND_ASSIGN(auto ckpt, Checkpoint::Open(path));
  const ModelConfig& c = ckpt->config();
  EXPECT_EQ(c.model_type, "qwen3_moe");
  EXPECT_EQ(c.hidden_size, 64);
  EXPECT_EQ(c.num_layers, 2);
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.moe_intermediate_size, 32);
  EXPECT_TRUE(c.norm_topk_prob);  // llama.cpp renormalises qwen3moe's top-k
  ASSERT_OK_AND_ASSIGN(const Tensor gate, ckpt->GetWithShape("blk.1.ffn_gate_inp.weight", {4, 64}));
  EXPECT_EQ(gate.dtype(), DType::kF32);

  ASSERT_OK_AND_ASSIGN(auto file, GgufFile::Open(path));
  for (const int expert : {0, 3}) {
    ASSERT_OK_AND_ASSIGN(const experts::ExpertWeights q,
                         experts::LoadExpertWeights(*ckpt, {1, expert}, {.keep_quantized = true}));
    ASSERT_TRUE(q.quantized());
    EXPECT_EQ(q.q1->format().name, std::string("q8_0"));
    EXPECT_EQ(q.q2->n(), 64);
    EXPECT_EQ(q.q2->k(), 32);
    // Resident bytes are the file's bytes of this expert's slice, byte for byte.
    const GgufTensor* down = file->Find("blk.1.ffn_down_exps.weight");
    const size_t slice = down->bytes / 4;
    ASSERT_EQ(q.q2->bytes(), slice);
    EXPECT_EQ(std::memcmp(q.q2->row(0), file->Data(*down) + slice * expert, slice), 0);
    // Without keep_quantized: the same values, dequantized to f32.
    ASSERT_OK_AND_ASSIGN(const experts::ExpertWeights f,
                         experts::LoadExpertWeights(*ckpt, {1, expert}));
    ASSERT_FALSE(f.quantized());
    std::vector<float> row(32);
    q.q2->DequantizeRow(5, row.data());
    for (int i = 0; i < 32; ++i) ASSERT_EQ(f.w2.f32()[5 * 32 + i], row[i]);
  }
  EXPECT_THAT(experts::LoadExpertWeights(*ckpt, {1, 4}),
              StatusIs(absl::StatusCode::kNotFound, "not in the model"));
}

TEST(GgufModelTest, UnservedArchitecturesAreNamed) {
  std::vector<uint8_t> bytes = testing::TinyGgufModel("falcon");
  EXPECT_THAT(Checkpoint::Open(Write(bytes)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "GGUF architecture 'falcon' is not served (served: qwen2moe"));
  testing::GgufBytes dense;
  dense.String("general.architecture", "llama")
      .U32("llama.block_count", 1)
      .U32("llama.embedding_length", 8);
  EXPECT_THAT(Checkpoint::Open(Write(dense.Build())),
              StatusIs(absl::StatusCode::kInvalidArgument, "without experts"));
}

TEST(GgufModelTest, MissingAndMistypedKeysAreNamed) {
  testing::GgufBytes missing;
  missing.String("general.architecture", "qwen3moe").U32("qwen3moe.block_count", 1);
  EXPECT_THAT(Checkpoint::Open(Write(missing.Build())),
              StatusIs(absl::StatusCode::kNotFound, "no metadata key 'qwen3moe.embedding_length'"));
  testing::GgufBytes mistyped;
  mistyped.String("general.architecture", "qwen3moe").String("qwen3moe.block_count", "two");
  EXPECT_THAT(Checkpoint::Open(Write(mistyped.Build())),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "'qwen3moe.block_count' is \"two\", not an integer"));
  testing::GgufBytes none;
  none.U32("x", 1);
  EXPECT_THAT(Checkpoint::Open(Write(none.Build())),
              StatusIs(absl::StatusCode::kNotFound, "general.architecture"));
}

TEST(GgufModelTest, ExpertTypesWeDoNotServeAreRefusedByName) {
  // IQ4_NL (id 20): a real ggml type, not one of ours.
  const std::string path =
      Write(testing::TinyGgufModel("qwen3moe", 64, 32, 4, 1, /*expert_type=*/20));
  ASSERT_OK_AND_ASSIGN(auto ckpt, Checkpoint::Open(path));
  EXPECT_THAT(
      experts::LoadExpertWeights(*ckpt, {0, 1}, {.keep_quantized = true}),
      StatusIs(absl::StatusCode::kInvalidArgument, "is IQ4_NL, a type moe-serve does not serve"));
  EXPECT_THAT(
      experts::LoadExpertWeights(*ckpt, {0, 1}),
      StatusIs(absl::StatusCode::kInvalidArgument, "is IQ4_NL, a type moe-serve does not serve"));
}

TEST(GgufModelTest, AQuantizedRouterGateIsReadDequantized) {
  // llama-quantize keeps ffn_gate_inp in F32, but a file re-quantized by other tools may not: the
  // router then reads the gate's exact dequantized values.
  const std::string path = Write(testing::TinyGgufModel("qwen3moe", 64, 32, 4, 1, 8, /*q8_0_gate=*/true));
  ASSERT_OK_AND_ASSIGN(auto ckpt, Checkpoint::Open(path));
  ASSERT_OK_AND_ASSIGN(const Tensor gate, ckpt->GetWithShape("blk.0.ffn_gate_inp.weight", {4, 64}));
  ASSERT_EQ(gate.dtype(), DType::kF32);
  const std::vector<float> values = testing::RandomVector(4 * 64, 100, 0.1f);
  ASSERT_OK_AND_ASSIGN(const QuantizedMatrix q, QuantizedMatrix::Quantize(kQ8_0, values.data(), 4, 64));
  std::vector<float> row(64);
  for (int r = 0; r < 4; ++r) {
    q.DequantizeRow(r, row.data());
    for (int c = 0; c < 64; ++c) ASSERT_EQ(gate.f32()[r * 64 + c], row[c]) << r << "," << c;
  }
}

TEST(GgufModelTest, SplitSetsOpenEveryShardAndAMissingShardIsNamed) {
  const std::string dir = testing::MakeTempDir("gguf-split");
  // The same model twice: the second shard's tensors are never looked up (the first holds them
  // all), but it must exist and parse.
  testing::WriteBytes(dir + "/m-00001-of-00002.gguf", testing::TinyGgufModel());
  EXPECT_THAT(Checkpoint::Open(dir + "/m-00001-of-00002.gguf"),
              StatusIs(absl::StatusCode::kNotFound, "m-00002-of-00002.gguf"));
  testing::GgufBytes second;
  second.U32("split.no", 1);
  testing::WriteBytes(dir + "/m-00002-of-00002.gguf", second.Build());
  ASSERT_OK_AND_ASSIGN(auto ckpt, Checkpoint::Open(dir + "/m-00001-of-00002.gguf"));
  EXPECT_EQ(ckpt->OpenedFiles().size(), 2u);
  EXPECT_THAT(ckpt->Get("blk.9.ffn_gate_inp.weight"),
              StatusIs(absl::StatusCode::kNotFound, "or its 1 other shards"));
}

}  // namespace
}  // namespace moe::model
