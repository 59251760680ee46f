// tests/router/routing_test.cc
// router::Concatenate: tokens renumbered in order, pairs kept, per-expert statistics summed.
// router::Slice: a token range as its own routing; slicing and concatenating again gives back the pairs.
#include "router/routing.h"

#include "gtest/gtest.h"

namespace moe::router {
namespace {

TEST(ConcatenateTest, RenumbersTokensAndSumsStatistics) {
  Routing a{.num_tokens = 2, .num_experts = 3, .token_offsets = {0, 2, 3}, .experts = {0, 2, 1},
            .weights = {0.5f, 0.5f, 1.0f}, .dropped = {1, 0, 0}, .rerouted = {0, 1, 0},
            .score_sums = {0.25, 0.5, 0.25}};
  Routing b{.num_tokens = 1, .num_experts = 3, .token_offsets = {0, 1}, .experts = {3},  // always-on only
            .weights = {1.0f}, .dropped = {0, 0, 2}, .rerouted = {0, 0, 0}, .score_sums = {0.1, 0.2, 0.7}};
  Routing empty{.num_tokens = 0, .num_experts = 3, .token_offsets = {0}};
  const Routing* parts[] = {&a, &empty, &b};
  const Routing all = Concatenate(parts);
  EXPECT_EQ(all.num_tokens, 3);
  EXPECT_EQ(all.num_experts, 3);
  EXPECT_EQ(all.token_offsets, (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_EQ(all.experts, (std::vector<int32_t>{0, 2, 1, 3}));
  EXPECT_EQ(all.weights, (std::vector<float>{0.5f, 0.5f, 1.0f, 1.0f}));
  EXPECT_EQ(all.dropped, (std::vector<int64_t>{1, 0, 2}));
  EXPECT_EQ(all.rerouted, (std::vector<int64_t>{0, 1, 0}));
  ASSERT_EQ(all.score_sums.size(), 3u);
  EXPECT_DOUBLE_EQ(all.score_sums[2], 0.95);
  EXPECT_EQ(all.ExpertsOf(2).size(), 1u);
  EXPECT_EQ(all.ExpertsOf(2)[0], 3);
}

TEST(ConcatenateTest, IdentityWeightsLineUpWithTheirTokens) {
  // LongCat-Flash's zero experts: a part without identity weights contributes zeros.
  Routing a{.num_tokens = 2, .num_experts = 2, .token_offsets = {0, 1, 1}, .experts = {0}, .weights = {0.5f}};
  Routing b{.num_tokens = 2, .num_experts = 2, .token_offsets = {0, 1, 2}, .experts = {1, 0},
            .weights = {0.25f, 1.0f}, .identity_weights = {0.75f, 0.0f}};
  const Routing* parts[] = {&a, &b, &a};
  const Routing all = Concatenate(parts);
  EXPECT_EQ(all.identity_weights, (std::vector<float>{0, 0, 0.75f, 0, 0, 0}));
  const Routing* none[] = {&a, &a};
  EXPECT_TRUE(Concatenate(none).identity_weights.empty());
}

TEST(SliceTest, ATokenRangeKeepsItsPairsAndIdentityWeights) {
  Routing all{.num_tokens = 3, .num_experts = 3, .token_offsets = {0, 2, 3, 5}, .experts = {0, 2, 1, 3, 0},
              .weights = {0.5f, 0.5f, 1.0f, 1.0f, 0.25f}, .weight_on_input = true,
              .identity_weights = {0.1f, 0.2f, 0.3f}, .dropped = {1, 0, 0}};
  const Routing mid = Slice(all, 1, 3);
  EXPECT_EQ(mid.num_tokens, 2);
  EXPECT_EQ(mid.num_experts, 3);
  EXPECT_TRUE(mid.weight_on_input);
  EXPECT_EQ(mid.token_offsets, (std::vector<int64_t>{0, 1, 3}));
  EXPECT_EQ(mid.experts, (std::vector<int32_t>{1, 3, 0}));
  EXPECT_EQ(mid.weights, (std::vector<float>{1.0f, 1.0f, 0.25f}));
  EXPECT_EQ(mid.identity_weights, (std::vector<float>{0.2f, 0.3f}));
  EXPECT_TRUE(mid.dropped.empty());  // statistics stay with the whole gating
  const Routing none = Slice(all, 2, 2);
  EXPECT_EQ(none.num_tokens, 0);
  EXPECT_EQ(none.token_offsets, (std::vector<int64_t>{0}));

  const Routing head = Slice(all, 0, 1);
  const Routing* parts[] = {&head, &mid};
  const Routing again = Concatenate(parts);
  EXPECT_EQ(again.token_offsets, all.token_offsets);
  EXPECT_EQ(again.experts, all.experts);
  EXPECT_EQ(again.weights, all.weights);
  EXPECT_EQ(again.identity_weights, all.identity_weights);
}

}  // namespace
}  // namespace moe::router
