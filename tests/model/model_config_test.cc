// tests/model/model_config_test.cc
#include "model/model_config.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
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
  // A corrupt layer count is refused before anything walks it (found by the GGUF fuzzer).
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "mixtral", "hidden_size": 8, "intermediate_size": 8, "num_local_experts": 2, "num_experts_per_tok": 1, "num_hidden_layers": 603979777})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'num_hidden_layers' (603979777) exceeds the 4096 layers"));
  EXPECT_THAT(ModelConfig::FromFile("/nonexistent/config.json"),
              StatusIs(absl::StatusCode::kNotFound, "/nonexistent/config.json"));
}

}  // namespace
}  // namespace moe::model

namespace moe::model {
namespace {

TEST(ModelConfigFamiliesTest, ParsesEachFamilysOwnFieldNames) {
  ASSERT_OK_AND_ASSIGN(ModelConfig q2, ModelConfig::Parse(R"({"model_type": "qwen2_moe", "hidden_size": 2048,
    "intermediate_size": 5632, "moe_intermediate_size": 1408, "shared_expert_intermediate_size": 5632,
    "num_experts": 60, "num_experts_per_tok": 4, "num_hidden_layers": 24, "norm_topk_prob": false,
    "decoder_sparse_step": 1, "mlp_only_layers": [0, 5]})"));
  EXPECT_EQ(q2.model_type, "qwen2_moe");
  EXPECT_EQ(q2.num_experts, 60);
  EXPECT_FALSE(q2.IsMoeLayer(0));
  EXPECT_TRUE(q2.IsMoeLayer(1));
  EXPECT_TRUE(q2.HasSharedGate(1));
  EXPECT_EQ(q2.AlwaysOnIntermediate(1), 5632);
  EXPECT_EQ(q2.AlwaysOnIntermediate(0), 5632);  // the dense MLP of layer 0

  ASSERT_OK_AND_ASSIGN(ModelConfig v3, ModelConfig::Parse(R"({"model_type": "deepseek_v3", "hidden_size": 7168,
    "intermediate_size": 18432, "moe_intermediate_size": 2048, "n_routed_experts": 256, "n_shared_experts": 1,
    "num_experts_per_tok": 8, "n_group": 8, "topk_group": 4, "routed_scaling_factor": 2.5,
    "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": true,
    "first_k_dense_replace": 3, "moe_layer_freq": 1, "num_hidden_layers": 61})"));
  EXPECT_FALSE(v3.IsMoeLayer(2));
  EXPECT_TRUE(v3.IsMoeLayer(3));
  EXPECT_EQ(v3.AlwaysOnIntermediate(3), 2048);
  EXPECT_FALSE(v3.HasSharedGate(3));
  // Published figure: 671B total, 37B active — of which the MoE/MLP blocks here are most.
  EXPECT_GT(v3.TotalParameters(), 600'000'000'000);
  EXPECT_LT(v3.ActiveParameters(), 40'000'000'000);

  ASSERT_OK_AND_ASSIGN(ModelConfig olmoe, ModelConfig::Parse(R"({"model_type": "olmoe", "hidden_size": 2048,
    "intermediate_size": 1024, "num_experts": 64, "num_experts_per_tok": 8, "num_hidden_layers": 16})"));
  EXPECT_EQ(olmoe.moe_intermediate_size, 1024);
  EXPECT_FALSE(olmoe.norm_topk_prob);
}

TEST(ModelConfigFamiliesTest, EveryDefaultConfigRoundTrips) {
  for (const std::string& type : ServedModelTypes()) {
    const int top_k = type == "switch_moe" ? 1 : 2;
    ASSERT_OK_AND_ASSIGN(const ModelConfig c, DefaultConfig(type, 32, 16, 8, top_k, 3));
    ASSERT_OK_AND_ASSIGN(ModelConfig back, ModelConfig::Parse(c.ToJson()));
    EXPECT_EQ(back.family, c.family) << type;
    EXPECT_EQ(back.ToJson(), c.ToJson()) << type;
    for (int l = 0; l < 3; ++l) {
      EXPECT_EQ(back.IsMoeLayer(l), c.IsMoeLayer(l)) << type << " layer " << l;
      EXPECT_EQ(back.AlwaysOnIntermediate(l), c.AlwaysOnIntermediate(l)) << type << " layer " << l;
    }
    EXPECT_EQ(back.selection_bias, c.selection_bias) << type;
    EXPECT_EQ(back.norm_topk_prob, c.norm_topk_prob) << type;
  }
}

TEST(ModelConfigFamiliesTest, MultimodalWrapperReadsItsTextConfigAndPrefixesTheNames) {
  // Qwen3.5-MoE as the hub ships it: the decoder's config under text_config, its weights under
  // model.language_model.
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::Parse(R"({"model_type": "qwen3_5_moe",
    "text_config": {"hidden_size": 16, "num_hidden_layers": 2, "num_experts": 4, "num_experts_per_tok": 2,
                    "moe_intermediate_size": 8, "shared_expert_intermediate_size": 8},
    "vision_config": {"depth": 1}})"));
  EXPECT_EQ(c.model_type, "qwen3_5_moe_text");  // what transformers' get_text_config() says
  EXPECT_EQ(c.hidden_size, 16);
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_EQ(c.names.gate, "model.language_model.layers.{L}.mlp.gate.weight");
  EXPECT_EQ(c.names.shared_gate, "model.language_model.layers.{L}.mlp.shared_expert_gate.weight");
}

TEST(ModelConfigFamiliesTest, Qwen3VlMoeIsItsTextDecoderWithStackedExpertsInEitherLayout) {
  ASSERT_OK_AND_ASSIGN(const ModelConfig c, ModelConfig::Parse(R"({"model_type": "qwen3_vl_moe",
    "text_config": {"model_type": "qwen3_vl_moe_text", "hidden_size": 16, "num_hidden_layers": 2,
                    "num_local_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 8,
                    "intermediate_size": 12, "mlp_only_layers": [0], "norm_topk_prob": false},
    "vision_config": {"depth": 1}})"));
  EXPECT_EQ(c.model_type, "qwen3_vl_moe_text");
  EXPECT_EQ(c.num_experts, 4);
  EXPECT_TRUE(c.norm_topk_prob);  // its router always renormalises
  EXPECT_FALSE(c.IsMoeLayer(0));
  EXPECT_TRUE(c.IsMoeLayer(1));
  EXPECT_EQ(c.names.stacked_gate_up, "model.language_model.layers.{L}.mlp.experts.gate_up_proj");
  EXPECT_EQ(c.names.dense, "model.language_model.layers.{L}.mlp.{P}.weight");
  EXPECT_TRUE(c.names.stacked_layout_by_shape);
}

TEST(ModelConfigFamiliesTest, RefusesWhatWeCannotServeNamingTheField) {
  using ::moe::testing::StatusIs;
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "switch_transformers"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'model_type' is 'switch_transformers'"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "qwen3_5_moe"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'text_config' is needed"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "qwen3_5_moe", "text_config": {"model_type": "mixtral"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "wraps qwen3_5_moe_text"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "llama4"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "model_type llama4_text"));
  // Known families not served name their reason; an unknown type names what is served.
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "deepseek_v4", "hidden_size": 8})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "does not serve yet: it scores experts by sqrt(softplus"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "doge"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "does not serve (by design): its product-key routing"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "zaya"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "(by design): its router carries state"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "no_such_family"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "supported: mixtral"));
  const std::string v3 = R"("model_type": "deepseek_v3", "hidden_size": 8, "intermediate_size": 8,
    "moe_intermediate_size": 4, "n_routed_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2)";
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "fp8"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'quantization_config'"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "topk_method": "random"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'topk_method' is 'random'"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "scoring_func": "relu"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'scoring_func' is 'relu'"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "n_group": 3})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'n_group' (3) does not divide"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "qwen3_moe", "hidden_size": 8, "moe_intermediate_size": 4,
    "num_experts": 4, "num_experts_per_tok": 2, "num_hidden_layers": 2, "decoder_sparse_step": 2})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'intermediate_size' is needed: layer 0 is a dense"));
}

// Every alias HF's config classes accept (attribute_map, renamed fields) reads the same value.
TEST(ModelConfigFamiliesTest, EveryAliasReadsTheSameField) {
  struct Alias {
    const char* model_type;
    const char* field;  // the alias, or the canonical name
    const char* rest;   // the other required fields
  };
  const Alias aliases[] = {
      {"mixtral", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"mixtral", "num_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"qwen2_moe", "num_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"qwen2_moe", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"qwen3_moe", "num_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"qwen3_moe", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"qwen3_next", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"olmoe", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"flex_olmo", "num_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"granitemoehybrid", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2, "shared_intermediate_size": 8)"},
      {"deepseek_v2", "num_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"deepseek_v3", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1)"},
      {"kimi_k2", "n_routed_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2, "n_group": 1, "topk_group": 1)"},
      {"glm4_moe", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2, "intermediate_size": 8)"},
      {"dots1", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"minimax_m2", "num_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"hunyuan_v1_moe", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"jamba", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"ernie4_5_moe", "moe_num_experts", R"("moe_intermediate_size": 8, "moe_k": 2, "intermediate_size": 8)"},
      {"ernie4_5_moe", "num_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2, "intermediate_size": 8)"},
      {"gpt_oss", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"gpt_oss", "num_experts", R"("intermediate_size": 8, "experts_per_token": 2)"},
      {"llama4_text", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2, "intermediate_size_mlp": 8)"},
      {"phimoe", "num_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"granitemoe", "num_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"afmoe", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2, "intermediate_size": 8)"},
      {"qwen3_5_moe_text", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"minimax", "num_local_experts", R"("intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"bailing_moe", "num_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2)"},
      {"bailing_moe_v2", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_token": 2, "score_function": "sigmoid", "moe_router_enable_expert_bias": true)"},
      {"bailing_hybrid", "num_experts", R"("moe_intermediate_size": 8, "num_experts_per_token": 2, "intermediate_size": 8, "num_expert_group": 2, "topk_group": 1)"},
      {"bailing_hybrid", "num_local_experts", R"("moe_intermediate_size": 8, "num_experts_per_tok": 2, "intermediate_size": 8, "n_group": 2, "topk_group": 1)"},
  };
  for (const Alias& a : aliases) {
    const std::string json = absl::StrCat(R"({"model_type": ")", a.model_type, R"(", "hidden_size": 8, "num_hidden_layers": 2, ")",
                                          a.field, R"(": 6, )", a.rest, "}");
    ASSERT_OK_AND_ASSIGN(ModelConfig c, ModelConfig::Parse(json));
    EXPECT_EQ(c.num_experts, 6) << a.model_type << " " << a.field;
    EXPECT_EQ(c.top_k, 2) << a.model_type;
  }
  // Hunyuan's own name for top-k, and transformers 5.x's "dtype" for "torch_dtype".
  ASSERT_OK_AND_ASSIGN(ModelConfig hy, ModelConfig::Parse(R"({"model_type": "hunyuan_v1_moe", "hidden_size": 8,
    "num_hidden_layers": 1, "num_experts": 4, "moe_topk": 3, "intermediate_size": 8, "dtype": "float32"})"));
  EXPECT_EQ(hy.top_k, 3);
  EXPECT_EQ(hy.torch_dtype, "float32");
  // A missing field names its aliases.
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "qwen3_moe", "hidden_size": 8, "num_hidden_layers": 1,
    "moe_intermediate_size": 8, "num_experts_per_tok": 2})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "missing field 'num_experts' (or its alias 'num_local_experts')"));
}

// DBRX keeps its MoE fields in a nested ffn_config and names the model's d_model and n_layers.
TEST(ModelConfigFamiliesTest, DbrxNestedFfnConfigAndPNorm) {
  using ::moe::testing::StatusIs;
  const auto dbrx = [](const std::string& ffn) {
    return ModelConfig::Parse(absl::StrCat(R"({"model_type": "dbrx", "d_model": 16, "n_layers": 3,
      "ffn_config": {"moe_num_experts": 6, "ffn_hidden_size": 12)", ffn, "}}"));
  };
  ASSERT_OK_AND_ASSIGN(ModelConfig c, dbrx(R"(, "moe_top_k": 2, "ffn_act_fn": {"name": "silu"})"));
  EXPECT_EQ(c.hidden_size, 16);
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_experts, 6);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.moe_intermediate_size, 12);
  EXPECT_TRUE(c.norm_topk_prob);  // moe_normalize_expert_weights absent: 1.0, the sum
  EXPECT_EQ(c.norm_p, 1.0f);
  ASSERT_OK_AND_ASSIGN(ModelConfig p2, dbrx(R"(, "moe_normalize_expert_weights": 2.0)"));
  EXPECT_EQ(p2.top_k, 1);  // DbrxFFNConfig's default
  EXPECT_EQ(p2.norm_p, 2.0f);
  ASSERT_OK_AND_ASSIGN(ModelConfig none, dbrx(R"(, "moe_normalize_expert_weights": null)"));
  EXPECT_FALSE(none.norm_topk_prob);
  // What ToJson writes reads back the same.
  ASSERT_OK_AND_ASSIGN(ModelConfig again, ModelConfig::Parse(p2.ToJson()));
  EXPECT_EQ(again.norm_p, 2.0f);
  EXPECT_EQ(again.num_experts, 6);
  ASSERT_OK_AND_ASSIGN(ModelConfig again_none, ModelConfig::Parse(none.ToJson()));
  EXPECT_FALSE(again_none.norm_topk_prob);
  EXPECT_THAT(dbrx(R"(, "ffn_act_fn": {"name": "gelu"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'hidden_act' is 'gelu'"));
  EXPECT_THAT(dbrx(R"(, "moe_normalize_expert_weights": 0)"),
              StatusIs(absl::StatusCode::kInvalidArgument, "expected a p > 0"));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "dbrx", "d_model": 16, "n_layers": 3})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'ffn_config'"));
}

// LongCat-Flash counts its decoder layers in num_layers and scores zero experts beside the routed.
TEST(ModelConfigFamiliesTest, LongcatFlashLayersAndZeroExperts) {
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ModelConfig::Parse(R"({"model_type": "longcat_flash", "hidden_size": 16,
    "num_layers": 3, "n_routed_experts": 8, "moe_topk": 2, "expert_ffn_hidden_size": 12, "zero_expert_num": 4,
    "routed_scaling_factor": 1.5, "router_bias": true})"));
  EXPECT_EQ(c.num_layers, 3);
  EXPECT_EQ(c.num_experts, 8);
  EXPECT_EQ(c.zero_experts, 4);
  EXPECT_EQ(c.top_k, 2);
  EXPECT_EQ(c.names.router_bias, "model.layers.{L}.mlp.router.classifier.bias");
  ASSERT_OK_AND_ASSIGN(ModelConfig again, ModelConfig::Parse(c.ToJson()));
  EXPECT_EQ(again.zero_experts, 4);
  EXPECT_EQ(again.num_layers, 3);
  EXPECT_FALSE(again.names.router_bias.empty());
  // top-k may reach into the zero experts, not past them.
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "longcat_flash", "hidden_size": 16, "num_layers": 1,
    "n_routed_experts": 2, "moe_topk": 5, "expert_ffn_hidden_size": 12, "zero_expert_num": 2})"),
              ::moe::testing::StatusIs(absl::StatusCode::kInvalidArgument, "exceeds the number of experts (4)"));
}

TEST(ModelConfigFamiliesTest, LayerRulesOfTheNewFamilies) {
  ASSERT_OK_AND_ASSIGN(ModelConfig v32, ModelConfig::Parse(R"({"model_type": "deepseek_v32", "hidden_size": 8,
    "num_hidden_layers": 3, "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 4,
    "intermediate_size": 8, "n_group": 1, "topk_group": 1, "mlp_layer_types": ["sparse", "dense", "sparse"]})"));
  EXPECT_TRUE(v32.IsMoeLayer(0));
  EXPECT_FALSE(v32.IsMoeLayer(1));
  EXPECT_TRUE(v32.IsMoeLayer(2));
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "deepseek_v32", "hidden_size": 8, "num_hidden_layers": 3,
    "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 4, "intermediate_size": 8,
    "n_group": 1, "topk_group": 1, "mlp_layer_types": ["sparse"]})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'mlp_layer_types' has 1 entries for 3 layers"));
  ASSERT_OK_AND_ASSIGN(ModelConfig jamba, ModelConfig::Parse(R"({"model_type": "jamba", "hidden_size": 8,
    "num_hidden_layers": 4, "num_experts": 4, "num_experts_per_tok": 2, "intermediate_size": 8})"));
  EXPECT_FALSE(jamba.IsMoeLayer(0));  // period 2, offset 1
  EXPECT_TRUE(jamba.IsMoeLayer(1));
  EXPECT_EQ(jamba.AlwaysOnIntermediate(0), 8);
  EXPECT_FALSE(jamba.HasAlwaysOn(1));
  ASSERT_OK_AND_ASSIGN(ModelConfig glm, ModelConfig::Parse(R"({"model_type": "glm4_moe", "hidden_size": 8,
    "num_hidden_layers": 2, "n_routed_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 4,
    "intermediate_size": 8, "n_shared_experts": 1})"));
  EXPECT_FALSE(glm.IsMoeLayer(0));  // first_k_dense_replace defaults to 1
  EXPECT_TRUE(glm.selection_bias);
  EXPECT_FALSE(glm.norm_needs_topk_above_one);
  EXPECT_EQ(glm.AlwaysOnIntermediate(1), 4);
  // One value for every layer is served; per-layer lists are refused by name.
  EXPECT_THAT(ModelConfig::Parse(R"({"model_type": "hunyuan_v1_moe", "hidden_size": 8, "num_hidden_layers": 2,
    "num_experts": 4, "moe_topk": [2, 2], "intermediate_size": 8})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "'moe_topk' is a per-layer list"));
}

TEST(ModelConfigFamiliesTest, Fp8BlockQuantizationIsReadOthersRefusedByMethod) {
  const std::string v3 = R"("model_type": "deepseek_v3", "hidden_size": 8, "intermediate_size": 8,
    "moe_intermediate_size": 4, "n_routed_experts": 8, "num_experts_per_tok": 2, "num_hidden_layers": 2,
    "n_group": 1, "topk_group": 1)";
  ASSERT_OK_AND_ASSIGN(ModelConfig c, ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {
    "quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic", "weight_block_size": [128, 64]}})"));
  EXPECT_EQ(c.fp8_block_n, 128);
  EXPECT_EQ(c.fp8_block_k, 64);
  ASSERT_OK_AND_ASSIGN(ModelConfig back, ModelConfig::Parse(c.ToJson()));
  EXPECT_EQ(back.fp8_block_k, 64);
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "bitsandbytes"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "quant_method 'bitsandbytes'"));
  // AWQ and GPTQ: 4 bits in groups of 128, the layouts we unpack; the rest refused by name.
  ASSERT_OK_AND_ASSIGN(ModelConfig awq, ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {
    "quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": true, "version": "gemm"}})"));
  EXPECT_EQ(awq.int4_method, "awq");
  ASSERT_OK_AND_ASSIGN(ModelConfig awq_back, ModelConfig::Parse(awq.ToJson()));
  EXPECT_EQ(awq_back.int4_method, "awq");
  ASSERT_OK_AND_ASSIGN(ModelConfig gptq, ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {
    "quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": false}})"));
  EXPECT_EQ(gptq.int4_method, "gptq");
  ASSERT_OK_AND_ASSIGN(ModelConfig gptq_back, ModelConfig::Parse(gptq.ToJson()));
  EXPECT_EQ(gptq_back.int4_method, "gptq");
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "awq", "bits": 4}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "group_size 0; served: 4 bits in groups of 128"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "gptq", "bits": 8, "group_size": 128}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "bits 8"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "awq version 'gemv'"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": true}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "desc_act"));
  // compressed-tensors: the schemes we keep resident; the rest refused naming what is not served.
  const auto ct = [&](const std::string& format, const std::string& weights) {
    return ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "compressed-tensors", "format": ")" +
                              format + R"(", "config_groups": {"group_0": {"targets": ["Linear"], "weights": )" + weights +
                              "}}}}");
  };
  ASSERT_OK_AND_ASSIGN(ModelConfig w4, ct("pack-quantized", R"({"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128})"));
  EXPECT_FALSE(w4.compressed_tensors.empty());
  ASSERT_OK_AND_ASSIGN(ModelConfig w4_back, ModelConfig::Parse(w4.ToJson()));
  EXPECT_EQ(w4_back.compressed_tensors, w4.compressed_tensors);
  EXPECT_OK(ct("float-quantized", R"({"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 128]})").status());
  EXPECT_OK(ct("int-quantized", R"({"num_bits": 8, "type": "int", "strategy": "channel"})").status());
  EXPECT_THAT(ct("pack-quantized", R"({"num_bits": 4, "type": "int", "strategy": "group", "group_size": 64})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "group_size 64; served: 128"));
  EXPECT_THAT(ct("pack-quantized", R"({"num_bits": 2, "type": "int", "strategy": "group", "group_size": 128})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "served: int4 (pack-quantized), int8, fp8 e4m3"));
  EXPECT_THAT(ct("int-quantized", R"({"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": false})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "asymmetric"));
  EXPECT_THAT(ct("nvfp4-pack-quantized", R"({"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "format 'nvfp4-pack-quantized'"));
  EXPECT_THAT(ct("pack-quantized", R"({"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "actorder": "group"})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "actorder 'group'"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "compressed-tensors", "format": "pack-quantized"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "without config_groups"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "mxfp4"}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "mxfp4, served for stacked experts (gpt_oss) only"));
  EXPECT_THAT(ModelConfig::Parse("{" + v3 + R"(, "quantization_config": {"quant_method": "fp8", "fmt": "e5m2", "weight_block_size": [128, 128]}})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "fmt \"e5m2\""));
}

}  // namespace
}  // namespace moe::model
