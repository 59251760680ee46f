// tests/router/expert_placement_test.cc
// The placement planner: even load stays even with one replica each; a hot expert gets the
// redundant replicas and the predicted imbalance falls to what packing allows; a placement that is
// already balanced is kept (no moves); memory slots and unusable workers are respected; too few
// slots is an error, not a partial plan; the imbalance measure itself on a hand-worked case.
#include "router/expert_placement.h"

#include <set>

#include "gtest/gtest.h"

namespace moe::router {
namespace {

// Per expert, one worker: experts 0-1 on worker 0, 2-3 on worker 1, ... (moe-expert --shard).
std::vector<std::vector<int>> Sharded(int experts, int workers) {
  std::vector<std::vector<int>> now(experts);
  for (int e = 0; e < experts; ++e) now[e] = {e * workers / experts};
  return now;
}

TEST(ExpertPlacementTest, ImbalanceByHand) {
  // Worker 0: 6 + 2/2 = 7; worker 1: 2/2 = 1 → max 7, mean 4.
  EXPECT_DOUBLE_EQ(PlacementImbalance({{6, 2}}, {{{0}, {0, 1}}}, 2), 7.0 / 4.0);
  EXPECT_DOUBLE_EQ(PlacementImbalance({{0, 0}}, {{{0}, {1}}}, 2), 1.0);  // nothing loaded
  // Two layers weighted by their load: (10·2 + 2·1) / 12.
  EXPECT_DOUBLE_EQ(PlacementImbalance({{10, 0}, {1, 1}}, {{{0}, {1}}, {{0}, {1}}}, 2), 22.0 / 12.0);
}

TEST(ExpertPlacementTest, EvenLoadStaysEvenAndPut) {
  PlacementProblem p;
  p.num_workers = 4;
  p.load = {std::vector<double>(8, 100.0), std::vector<double>(8, 50.0)};
  p.current = {Sharded(8, 4), Sharded(8, 4)};
  const PlacementResult r = PlanPlacement(p);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_DOUBLE_EQ(r.imbalance_before, 1.0);
  EXPECT_DOUBLE_EQ(r.imbalance_after, 1.0);
  EXPECT_EQ(r.moves, 0);  // already balanced: kept as it is
  EXPECT_EQ(r.replicas[0], Sharded(8, 4));
}

TEST(ExpertPlacementTest, HotExpertGetsTheRedundantReplicas) {
  PlacementProblem p;
  p.num_workers = 4;
  std::vector<double> skewed(8, 1.0);
  skewed[0] = 8.0;  // half the load
  p.load = {skewed};
  p.current = {Sharded(8, 4)};
  p.redundant = 3;
  const PlacementResult r = PlanPlacement(p);
  ASSERT_TRUE(r.error.empty()) << r.error;
  EXPECT_EQ(r.replicas[0][0], (std::vector<int>{0, 1, 2, 3}));  // 8/4 = 2 per replica
  for (int e = 1; e < 8; ++e) EXPECT_EQ(r.replicas[0][e].size(), 1u) << e;
  // Before: worker 0 has 8 + 1 of 15 (mean 3.75); after: at best 4 (2 + two of the others).
  EXPECT_DOUBLE_EQ(r.imbalance_before, 9.0 / 3.75);
  EXPECT_DOUBLE_EQ(r.imbalance_after, 4.0 / 3.75);
  EXPECT_GT(r.moves, 0);
  // Every expert still has a replica; no worker holds one expert twice.
  for (const auto& workers : r.replicas[0]) {
    EXPECT_FALSE(workers.empty());
    EXPECT_EQ(std::set<int>(workers.begin(), workers.end()).size(), workers.size());
  }
}

TEST(ExpertPlacementTest, RespectsSlotsAndUnusableWorkers) {
  PlacementProblem p;
  p.num_workers = 3;
  p.load = {{5, 1, 1, 1}};
  p.current = {{{0}, {0}, {1}, {1}}};
  p.slots = {1, 10, 10};
  p.usable = {true, true, false};  // worker 2 is down
  p.redundant = 2;
  const PlacementResult r = PlanPlacement(p);
  ASSERT_TRUE(r.error.empty()) << r.error;
  int on_worker0 = 0;
  for (const auto& workers : r.replicas[0]) {
    for (int w : workers) {
      EXPECT_NE(w, 2);
      on_worker0 += w == 0;
    }
  }
  EXPECT_EQ(on_worker0, 1);
  // Expert 0 is hottest: it got a second replica (only two usable workers: no third).
  EXPECT_EQ(r.replicas[0][0].size(), 2u);
}

TEST(ExpertPlacementTest, TooFewSlotsIsAnError) {
  PlacementProblem p;
  p.num_workers = 2;
  p.load = {{1, 1, 1, 1, 1}};
  p.slots = {2, 2};
  const PlacementResult r = PlanPlacement(p);
  EXPECT_NE(r.error.find("no worker has a free slot"), std::string::npos) << r.error;
  EXPECT_TRUE(r.replicas.empty());
}

}  // namespace
}  // namespace moe::router
