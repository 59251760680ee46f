// tests/router/gate_families_test.cc
// Each family's gate math on hand-made logits: the gate weight is the identity (H = E), so the
// input x *is* the logit vector and every expected value is computed by hand from routing.md.
#include <cmath>
#include <numeric>

#include "gtest/gtest.h"
#include "router/gate.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

using model::Tensor;

double Sigmoid(double z) { return 1.0 / (1.0 + std::exp(-z)); }

Tensor Identity(int e) {
  std::vector<float> w(e * e, 0.0f);
  for (int i = 0; i < e; ++i) w[i * e + i] = 1.0f;
  return Tensor::FromF32(w, {e, e});
}

std::vector<int> Ids(const Routing& r, int64_t t) {
  std::vector<int> ids;
  for (int32_t e : r.ExpertsOf(t)) ids.push_back(e);
  return ids;
}

TEST(GateFamiliesTest, DeepSeekV3MasksDroppedGroupsWithMinusInfinity) {
  // E = 4 in 2 groups {0,1} {2,3}; keep 1 group; top-2. Biased scores are all negative, and
  // group {0,1} wins (top-2 sum −0.85 vs −2.9). A 0.0 mask (the HF port) would pick the masked
  // experts 2 and 3 (0.0 > −0.4); −∞ keeps the choice inside group {0,1}.
  RoutingSpec spec;
  spec.num_experts = 4;
  spec.top_k = 2;
  spec.scoring = RoutingSpec::Scoring::kSigmoid;
  spec.selection_bias = true;
  spec.n_group = 2;
  spec.topk_group = 1;
  spec.group_score = RoutingSpec::GroupScore::kTop2Sum;
  spec.norm_topk_prob = true;
  spec.norm_needs_topk_above_one = true;
  spec.norm_epsilon = 1e-20f;
  spec.routed_scaling_factor = 2.5f;
  const Tensor w = Identity(4);
  const std::vector<float> logits = {0.0f, 0.0f, 0.0f, 0.0f};  // every sigmoid score is 0.5
  const Tensor bias = Tensor::FromF32(std::vector<float>{-0.9f, -0.95f, -1.5f, -1.9f}, {4});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 4, {.weight = &w, .bias = &bias}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(logits, 1));
  EXPECT_EQ(Ids(r, 0), (std::vector<int>{0, 1}));
  // Weights come from the unbiased scores (0.5 each), renormalised, then × 2.5.
  EXPECT_NEAR(r.WeightsOf(0)[0], 1.25, 1e-6);
  EXPECT_NEAR(r.WeightsOf(0)[1], 1.25, 1e-6);
}

TEST(GateFamiliesTest, DeepSeekV3SelectsByBiasButWeighsWithoutIt) {
  RoutingSpec spec;
  spec.num_experts = 4;
  spec.top_k = 2;
  spec.scoring = RoutingSpec::Scoring::kSigmoid;
  spec.selection_bias = true;
  spec.norm_topk_prob = false;
  spec.routed_scaling_factor = 2.0f;
  const Tensor w = Identity(4);
  const Tensor bias = Tensor::FromF32(std::vector<float>{0.0f, 0.0f, 1.0f, 0.0f}, {4});
  const std::vector<float> logits = {2.0f, 1.0f, -1.0f, 0.5f};  // bias lifts expert 2 to the top
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 4, {.weight = &w, .bias = &bias}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(logits, 1));
  EXPECT_EQ(Ids(r, 0), (std::vector<int>{2, 0}));  // s' = 0.881, 0.731, 1.269, 0.622
  EXPECT_NEAR(r.WeightsOf(0)[0], 2.0 * Sigmoid(-1.0), 1e-6);
  EXPECT_NEAR(r.WeightsOf(0)[1], 2.0 * Sigmoid(2.0), 1e-6);
}

TEST(GateFamiliesTest, DeepSeekV2GroupMaxAndScalingOnlyWithoutNorm) {
  RoutingSpec spec;
  spec.num_experts = 4;
  spec.top_k = 2;
  spec.n_group = 2;
  spec.topk_group = 1;
  spec.group_score = RoutingSpec::GroupScore::kMax;
  spec.norm_needs_topk_above_one = true;
  spec.norm_epsilon = 1e-20f;
  spec.scale_only_without_norm = true;
  spec.routed_scaling_factor = 16.0f;
  const Tensor w = Identity(4);
  // Group {2,3} holds the single best expert (3.0), so it wins on max though {0,1} has more mass.
  const std::vector<float> logits = {2.5f, 2.5f, 3.0f, 0.0f};
  std::vector<double> p = {std::exp(2.5), std::exp(2.5), std::exp(3.0), 1.0};
  const double z = std::accumulate(p.begin(), p.end(), 0.0);
  for (bool norm : {false, true}) {
    spec.norm_topk_prob = norm;
    ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 4, {.weight = &w}));
    ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(logits, 1));
    EXPECT_EQ(Ids(r, 0), (std::vector<int>{2, 3}));
    if (norm) {  // renormalised, not scaled
      EXPECT_NEAR(r.WeightsOf(0)[0], p[2] / (p[2] + p[3]), 1e-6);
    } else {     // scaled, not renormalised
      EXPECT_NEAR(r.WeightsOf(0)[0], 16.0 * p[2] / z, 1e-5);
      EXPECT_NEAR(r.WeightsOf(0)[1], 16.0 * p[3] / z, 1e-5);
    }
  }
}

TEST(GateFamiliesTest, DeepSeekDoesNotRenormaliseASingleExpert) {
  RoutingSpec spec;
  spec.num_experts = 3;
  spec.top_k = 1;
  spec.norm_topk_prob = true;
  spec.norm_needs_topk_above_one = true;
  spec.routed_scaling_factor = 2.0f;
  const Tensor w = Identity(3);
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 3, {.weight = &w}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(std::vector<float>{0.0f, 1.0f, 0.0f}, 1));
  const double e = std::exp(1.0);
  EXPECT_NEAR(r.WeightsOf(0)[0], 2.0 * e / (e + 2.0), 1e-6);
}

TEST(GateFamiliesTest, Qwen2SharedExpertIsGatedBySigmoid) {
  RoutingSpec spec;
  spec.num_experts = 3;
  spec.top_k = 1;
  spec.norm_topk_prob = false;
  spec.always_on = true;
  spec.shared_gate = true;
  const Tensor w = Identity(3);
  const Tensor shared = Tensor::FromF32(std::vector<float>{0.5f, -1.0f, 2.0f}, {1, 3});
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 3, {.weight = &w, .shared_gate = &shared}));
  const std::vector<float> x = {1.0f, 0.2f, 0.3f};
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(x, 1));
  ASSERT_EQ(Ids(r, 0), (std::vector<int>{0, 3}));  // expert 0, then the always-on id E = 3
  const double z = std::exp(1.0) + std::exp(0.2) + std::exp(0.3);
  EXPECT_NEAR(r.WeightsOf(0)[0], std::exp(1.0) / z, 1e-6);
  EXPECT_NEAR(r.WeightsOf(0)[1], Sigmoid(0.5 - 0.2 + 0.6), 1e-6);
}

TEST(GateFamiliesTest, DenseLayerSendsEveryTokenToItsMlpOnly) {
  RoutingSpec spec;
  spec.moe = false;
  spec.num_experts = 8;
  spec.always_on = true;
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 5, {}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(testing::RandomVector(3 * 5, 1), 3));
  for (int t = 0; t < 3; ++t) {
    EXPECT_EQ(Ids(r, t), (std::vector<int>{8}));
    EXPECT_EQ(r.WeightsOf(t)[0], 1.0f);
  }
}

TEST(GateFamiliesTest, MissingTensorsAreNamed) {
  RoutingSpec spec;
  spec.num_experts = 2;
  spec.top_k = 1;
  spec.selection_bias = true;
  const Tensor w = Identity(2);
  EXPECT_THAT(Gate::Create(spec, 2, {.weight = &w}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "e_score_correction_bias"));
  spec.selection_bias = false;
  spec.shared_gate = true;
  EXPECT_THAT(Gate::Create(spec, 2, {.weight = &w}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "shared expert gate is missing"));
}

TEST(GateFamiliesTest, ErnieFloorsTheRenormalisationAndLlama4WeighsTheInput) {
  // ERNIE: w = p / max(Σp, moe_norm_min). With sigmoid scores summing to 0.5 + 0.27 < 1 and a
  // floor of 1, the chosen scores come back unnormalised; without the floor they sum to 1.
  RoutingSpec spec;
  spec.num_experts = 3;
  spec.top_k = 2;
  spec.scoring = RoutingSpec::Scoring::kSigmoid;
  spec.norm_topk_prob = true;
  spec.norm_floor = 1.0f;
  const Tensor w = Identity(3);
  const std::vector<float> logits = {0.0f, -1.0f, -3.0f};
  ASSERT_OK_AND_ASSIGN(Gate floored, Gate::Create(spec, 3, {.weight = &w}));
  ASSERT_OK_AND_ASSIGN(Routing r, floored.Route(logits, 1));
  EXPECT_EQ(Ids(r, 0), (std::vector<int>{0, 1}));
  EXPECT_NEAR(r.WeightsOf(0)[0], 0.5, 1e-6);
  EXPECT_NEAR(r.WeightsOf(0)[1], Sigmoid(-1.0), 1e-6);
  spec.norm_floor = 0.0f;
  ASSERT_OK_AND_ASSIGN(Gate plain, Gate::Create(spec, 3, {.weight = &w}));
  ASSERT_OK_AND_ASSIGN(Routing p, plain.Route(logits, 1));
  EXPECT_NEAR(p.WeightsOf(0)[0] + p.WeightsOf(0)[1], 1.0, 1e-6);
  EXPECT_FALSE(p.weight_on_input);
  // Llama 4: σ of the chosen logits, not renormalised, marked to scale the experts' inputs.
  spec.norm_topk_prob = false;
  spec.weight_on_input = true;
  ASSERT_OK_AND_ASSIGN(Gate llama4, Gate::Create(spec, 3, {.weight = &w}));
  ASSERT_OK_AND_ASSIGN(Routing l, llama4.Route(logits, 1));
  EXPECT_TRUE(l.weight_on_input);
  EXPECT_NEAR(l.WeightsOf(0)[1], Sigmoid(-1.0), 1e-6);
}

TEST(GateFamiliesTest, DbrxDividesByThePNorm) {
  // Softmax of (0, -1, -3); the top-2 p = (0.705, 0.259) divided by (Σ pᵢ²)^½ with p = 2, by
  // their sum with p = 1.
  RoutingSpec spec;
  spec.num_experts = 3;
  spec.top_k = 2;
  spec.norm_topk_prob = true;
  spec.norm_p = 2.0f;
  const Tensor w = Identity(3);
  const std::vector<float> logits = {0.0f, -1.0f, -3.0f};
  const double z = 1 + std::exp(-1.0) + std::exp(-3.0), p0 = 1 / z, p1 = std::exp(-1.0) / z;
  ASSERT_OK_AND_ASSIGN(Gate l2, Gate::Create(spec, 3, {.weight = &w}));
  ASSERT_OK_AND_ASSIGN(Routing r, l2.Route(logits, 1));
  EXPECT_EQ(Ids(r, 0), (std::vector<int>{0, 1}));
  EXPECT_NEAR(r.WeightsOf(0)[0], p0 / std::hypot(p0, p1), 1e-6);
  EXPECT_NEAR(r.WeightsOf(0)[1], p1 / std::hypot(p0, p1), 1e-6);
  spec.norm_p = 1.0f;
  ASSERT_OK_AND_ASSIGN(Gate l1, Gate::Create(spec, 3, {.weight = &w}));
  ASSERT_OK_AND_ASSIGN(Routing s, l1.Route(logits, 1));
  EXPECT_NEAR(s.WeightsOf(0)[0], p0 / (p0 + p1), 1e-6);
  EXPECT_EQ(RoutingSpec(spec).DebugString().find("-norm"), std::string::npos);
  spec.norm_p = 2.0f;
  EXPECT_NE(spec.DebugString().find("renormalised by the 2-norm"), std::string::npos) << spec.DebugString();
}

TEST(GateFamiliesTest, LongcatZeroExpertsBecomeIdentityWeights) {
  // 2 routed + 2 zero experts, softmax over all 4 of (2, 0, 0, 3) (the identity weight makes x
  // the logits); top-2 = zero expert 3 and routed expert 0, × 1.5, not renormalised.
  RoutingSpec spec;
  spec.num_experts = 2;
  spec.zero_experts = 2;
  spec.top_k = 2;
  spec.norm_topk_prob = false;
  spec.routed_scaling_factor = 1.5f;
  const Tensor w = Identity(4);
  std::vector<float> x = {2.0f, 0.0f, 0.0f, 3.0f};
  const double z = std::exp(2.0) + 2 + std::exp(3.0);
  ASSERT_OK_AND_ASSIGN(Gate gate, Gate::Create(spec, 4, {.weight = &w}));
  ASSERT_OK_AND_ASSIGN(Routing r, gate.Route(x, 1));
  EXPECT_EQ(Ids(r, 0), (std::vector<int>{0}));
  EXPECT_NEAR(r.WeightsOf(0)[0], 1.5 * std::exp(2.0) / z, 1e-6);
  ASSERT_EQ(r.identity_weights.size(), 1u);
  EXPECT_NEAR(r.identity_weights[0], 1.5 * std::exp(3.0) / z, 1e-6);
  ASSERT_OK_AND_ASSIGN(std::vector<float> scores, gate.Scores(x, 1));
  EXPECT_EQ(scores.size(), 2u);  // the routed experts' columns only
  EXPECT_NEAR(scores[0], std::exp(2.0) / z, 1e-6);
  EXPECT_NE(spec.DebugString().find("2 zero (identity) experts"), std::string::npos) << spec.DebugString();
  // Both zero experts chosen: no pair at all, the weights summed.
  x = {0.0f, 0.0f, 3.0f, 3.0f};
  ASSERT_OK_AND_ASSIGN(Routing only_zero, gate.Route(x, 1));
  EXPECT_TRUE(Ids(only_zero, 0).empty());
  EXPECT_NEAR(only_zero.identity_weights[0], 1.5 * 2 * std::exp(3.0) / (2 + 2 * std::exp(3.0)), 1e-6);
  // Policies that need every expert to be real are refused.
  spec.n_group = 2;
  spec.topk_group = 1;
  spec.group_score = RoutingSpec::GroupScore::kTop2Sum;
  EXPECT_THAT(Gate::Create(spec, 4, {.weight = &w}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "token-choice top-k routing only"));
}

}  // namespace
}  // namespace moe::router
