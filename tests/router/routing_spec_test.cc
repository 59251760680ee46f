// tests/router/routing_spec_test.cc
#include "router/routing_spec.h"

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

using model::DefaultConfig;
using ::moe::testing::StatusIs;

TEST(RoutingSpecTest, FamiliesMapToTheirMath) {
  const RoutingSpec mixtral = RoutingSpec::FromConfig(DefaultConfig("mixtral", 8, 8, 8, 2, 2).value(), 0);
  EXPECT_TRUE(mixtral.norm_topk_prob);
  EXPECT_FALSE(mixtral.always_on);
  EXPECT_EQ(mixtral.scoring, RoutingSpec::Scoring::kSoftmax);

  const auto v3 = DefaultConfig("deepseek_v3", 8, 8, 8, 2, 3).value();
  const RoutingSpec dense = RoutingSpec::FromConfig(v3, 0);  // first_k_dense_replace = 1
  EXPECT_FALSE(dense.moe);
  EXPECT_TRUE(dense.always_on);
  EXPECT_FALSE(dense.selection_bias);  // no gate tensors to load for a dense layer
  EXPECT_EQ(dense.group_score, RoutingSpec::GroupScore::kNone);
  const RoutingSpec moe = RoutingSpec::FromConfig(v3, 1);
  EXPECT_TRUE(moe.moe);
  EXPECT_EQ(moe.scoring, RoutingSpec::Scoring::kSigmoid);
  EXPECT_TRUE(moe.selection_bias);
  EXPECT_EQ(moe.group_score, RoutingSpec::GroupScore::kTop2Sum);
  EXPECT_FLOAT_EQ(moe.routed_scaling_factor, 2.5f);
  EXPECT_TRUE(moe.always_on);
  EXPECT_FALSE(moe.shared_gate);
  EXPECT_FALSE(moe.scale_only_without_norm);

  const RoutingSpec v2 = RoutingSpec::FromConfig(DefaultConfig("deepseek_v2", 8, 8, 8, 2, 2).value(), 1);
  EXPECT_EQ(v2.group_score, RoutingSpec::GroupScore::kMax);
  EXPECT_TRUE(v2.scale_only_without_norm);
  EXPECT_FALSE(v2.selection_bias);

  const RoutingSpec qwen2 = RoutingSpec::FromConfig(DefaultConfig("qwen2_moe", 8, 8, 8, 2, 2).value(), 0);
  EXPECT_TRUE(qwen2.shared_gate);
  EXPECT_FALSE(qwen2.norm_topk_prob);

  const RoutingSpec sw = RoutingSpec::FromConfig(DefaultConfig("switch_moe", 8, 8, 8, 2, 2).value(), 0);
  EXPECT_EQ(sw.top_k, 1);
  EXPECT_FLOAT_EQ(sw.capacity_factor, 1.25f);
  EXPECT_FALSE(sw.norm_topk_prob);
}

TEST(RoutingSpecTest, OverridesApplyToMoeLayersAndAreChecked) {
  RoutingSpec spec = RoutingSpec::FromConfig(DefaultConfig("mixtral", 8, 8, 8, 2, 2).value(), 0);
  RoutingOverrides o;
  o.dense = true;
  o.capacity_factor = 1.5f;
  o.overflow = RoutingSpec::Overflow::kReroute;
  ASSERT_OK(o.ApplyTo(spec));
  EXPECT_EQ(spec.top_k, 8);
  EXPECT_FLOAT_EQ(spec.capacity_factor, 1.5f);
  EXPECT_EQ(spec.overflow, RoutingSpec::Overflow::kReroute);
  EXPECT_NE(spec.DebugString().find("reroute"), std::string::npos);

  RoutingOverrides bad;
  bad.top_k = 9;
  EXPECT_THAT(bad.ApplyTo(spec), StatusIs(absl::StatusCode::kInvalidArgument, "--top_k must be in [1, 8]"));
  bad = {};
  bad.capacity_factor = -1.0f;
  EXPECT_THAT(bad.ApplyTo(spec), StatusIs(absl::StatusCode::kInvalidArgument, "--capacity_factor"));
  EXPECT_THAT(ParsePolicy("random"), StatusIs(absl::StatusCode::kInvalidArgument, "token_choice"));
  EXPECT_THAT(ParseOverflow("spill"), StatusIs(absl::StatusCode::kInvalidArgument, "drop or reroute"));

  RoutingSpec dense_layer;
  dense_layer.moe = false;
  ASSERT_OK(bad.ApplyTo(dense_layer));  // overrides do not touch dense layers
}

}  // namespace
}  // namespace moe::router
