// tests/experts/model_config_test.cc
#include "experts/model_config.h"

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

using ::moe::testing::StatusIs;

TEST(ModelConfigTest, ParsesMixtralConfig) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ModelConfig::Parse(R"({
    "architectures": ["MixtralForCausalLM"], "model_type": "mixtral", "hidden_size": 4096,
    "intermediate_size": 14336, "num_local_experts": 8, "num_experts_per_tok": 2,
    "num_hidden_layers": 32, "hidden_act": "silu", "torch_dtype": "bfloat16",
    "rope_theta": 1000000.0})"));
  EXPECT_EQ(c.hidden_size, 4096);
  EXPECT_EQ(c.moe_intermediate_size, 14336);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.num_layers, 32);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
}

TEST(ModelConfigTest, ToJsonRoundTrips) {
  ModelConfig c = testing::SmallConfig(64, 96, 4, 1, 3);
  ASSERT_OK_AND_ASSIGN(ModelConfig back, ModelConfig::Parse(c.ToJson()));
  EXPECT_EQ(back.hidden_size, 64);
  EXPECT_EQ(back.moe_intermediate_size, 96);
  EXPECT_EQ(back.num_experts, 4);
  EXPECT_EQ(back.top_k, 1);
  EXPECT_EQ(back.num_layers, 3);
}

TEST(ModelConfigTest, ErrorsNameTheField) {
  const std::string base = R"("model_type": "mixtral", "intermediate_size": 8, "num_local_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 1)";
  EXPECT_THAT(ModelConfig::Parse("{" + base + "}"),
              StatusIs(absl::StatusCode::kInvalidArgument, "missing field 'hidden_size'"));
  EXPECT_THAT(ModelConfig::Parse("{" + base + R"(, "hidden_size": "big"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'hidden_size' must be an integer >= 1"));
  EXPECT_THAT(ModelConfig::Parse("{" + base + R"(, "hidden_size": 0})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'hidden_size'"));
  EXPECT_THAT(ModelConfig::Parse("{" + base + R"(, "hidden_size": 8, "hidden_act": "gelu"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'hidden_act' is 'gelu'"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "llama"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'model_type' is 'llama'"));
  EXPECT_THAT(ModelConfig::Parse("{not json"),
              StatusIs(absl::StatusCode::kInvalidArgument, "not valid JSON"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "mixtral", "hidden_size": 8, "intermediate_size": 8, "num_local_experts": 2, "num_experts_per_tok": 3, "num_hidden_layers": 1})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'num_experts_per_tok' (3) exceeds"));
  EXPECT_THAT(ModelConfig::FromFile("/nonexistent/config.json"),
              StatusIs(absl::StatusCode::kNotFound, "/nonexistent/config.json"));
}

}  // namespace
}  // namespace moe::experts
