// tests/model/checkpoint_test.cc
// Checkpoint and the checkpoint generator on real files (loading experts: tests/experts/expert_weights_test.cc).
#include "model/checkpoint.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "gtest/gtest.h"
#include "model/checkpoint_generator.h"
#include "model/safetensors_writer.h"
#include "model/tensor_names.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::StatusIs;

std::string Generate(int shards, DType dtype, uint64_t seed = 11) {
  const std::string dir = testing::MakeTempDir("ckpt");
  GeneratorOptions options{.config = testing::SmallConfig(), .dtype = dtype, .num_shards = shards,
                           .seed = seed};
  EXPECT_OK(WriteRandomCheckpoint(dir, options));
  return dir;
}

TEST(CheckpointTest, SameSeedSameWeightsOtherSeedOtherWeights) {
  ASSERT_OK_AND_ASSIGN(auto a, Checkpoint::Open(Generate(1, DType::kF32, 5)));
  ASSERT_OK_AND_ASSIGN(auto b, Checkpoint::Open(Generate(3, DType::kF32, 5)));
  ASSERT_OK_AND_ASSIGN(auto c, Checkpoint::Open(Generate(1, DType::kF32, 6)));
  const std::string name = ExpertWeightName(a->config(), 1, 3, Projection::kUp);
  ASSERT_OK_AND_ASSIGN(Tensor ta, a->Get(name));
  ASSERT_OK_AND_ASSIGN(Tensor tb, b->Get(name));
  ASSERT_OK_AND_ASSIGN(Tensor tc, c->Get(name));
  EXPECT_EQ(0, std::memcmp(ta.raw_data(), tb.raw_data(), ta.num_bytes()));
  EXPECT_NE(0, std::memcmp(ta.raw_data(), tc.raw_data(), ta.num_bytes()));
}

TEST(CheckpointTest, CorruptIndex) {
  const std::string dir = testing::MakeTempDir("ckpt");
  std::ofstream(dir + "/config.json") << testing::SmallConfig().ToJson();
  std::ofstream(dir + "/model.safetensors.index.json") << R"({"weight_map": 3})";
  EXPECT_THAT(Checkpoint::Open(dir), StatusIs(absl::StatusCode::kDataLoss, "weight_map"));
}

}  // namespace
}  // namespace moe::model
