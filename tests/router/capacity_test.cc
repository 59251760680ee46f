// tests/router/capacity_test.cc
// Capacity through the Gate: never exceeded; drops and reroutes accounted exactly.
#include "router/capacity.h"

#include <map>
#include <set>

#include "gtest/gtest.h"
#include "router/gate.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::router {
namespace {

constexpr int kH = 16, kE = 4, kK = 2, kN = 64;

struct Fixture {
  model::Tensor weight = model::Tensor::FromF32(testing::RandomVector(kE * kH, 3), {kE, kH});
  // Skewed traffic: a shared direction makes a few experts hot.
  std::vector<float> x = [] {
    std::vector<float> v = testing::RandomVector(kN * kH, 4, 0.3f);
    for (int t = 0; t < kN; ++t) v[t * kH] += 2.0f;
    return v;
  }();
  Routing Route(RoutingSpec spec) const {
    auto gate = Gate::Create(spec, kH, {.weight = &weight});
    EXPECT_TRUE(gate.ok()) << gate.status();
    auto r = gate->Route(x, kN);
    EXPECT_TRUE(r.ok()) << r.status();
    return *r;
  }
};

RoutingSpec Spec(float capacity_factor, RoutingSpec::Overflow overflow) {
  RoutingSpec s;
  s.num_experts = kE;
  s.top_k = kK;
  s.capacity_factor = capacity_factor;
  s.overflow = overflow;
  return s;
}

std::vector<int64_t> Loads(const Routing& r) {
  std::vector<int64_t> load(kE, 0);
  for (int32_t e : r.experts) ++load[e];
  return load;
}

TEST(CapacityTest, CapacityFormula) {
  EXPECT_EQ(ExpertCapacity(Spec(1.0f, RoutingSpec::Overflow::kDrop), 64), 32);   // ⌈1·64·2/4⌉
  EXPECT_EQ(ExpertCapacity(Spec(0.5f, RoutingSpec::Overflow::kDrop), 64), 16);
  EXPECT_EQ(ExpertCapacity(Spec(1.25f, RoutingSpec::Overflow::kDrop), 10), 7);   // ⌈6.25⌉
}

TEST(CapacityTest, DropNeverExceedsCapacityAndAccountsEveryPair) {
  const Fixture f;
  const Routing free = f.Route(Spec(0, RoutingSpec::Overflow::kDrop));
  const Routing capped = f.Route(Spec(0.5f, RoutingSpec::Overflow::kDrop));
  const int64_t capacity = ExpertCapacity(Spec(0.5f, RoutingSpec::Overflow::kDrop), kN);
  const std::vector<int64_t> before = Loads(free), after = Loads(capped);
  int64_t dropped = 0;
  for (int e = 0; e < kE; ++e) {
    EXPECT_LE(after[e], capacity);
    EXPECT_EQ(after[e] + capped.dropped[e], before[e]) << "expert " << e;
    EXPECT_EQ(capped.rerouted[e], 0);
    dropped += capped.dropped[e];
  }
  EXPECT_GT(dropped, 0);  // the traffic is skewed enough to overflow
  EXPECT_EQ(capped.num_pairs() + dropped, kN * kK);
  // Kept pairs keep their weight (no renormalisation after a drop).
  for (int t = 0; t < kN; ++t) {
    std::map<int, float> original;
    for (size_t j = 0; j < free.ExpertsOf(t).size(); ++j) original[free.ExpertsOf(t)[j]] = free.WeightsOf(t)[j];
    for (size_t j = 0; j < capped.ExpertsOf(t).size(); ++j) {
      ASSERT_TRUE(original.count(capped.ExpertsOf(t)[j]));
      EXPECT_EQ(capped.WeightsOf(t)[j], original[capped.ExpertsOf(t)[j]]);
    }
  }
}

TEST(CapacityTest, RerouteMovesOverflowToExpertsWithRoom) {
  const Fixture f;
  const Routing free = f.Route(Spec(0, RoutingSpec::Overflow::kDrop));
  const Routing r = f.Route(Spec(0.75f, RoutingSpec::Overflow::kReroute));
  const int64_t capacity = ExpertCapacity(Spec(0.75f, RoutingSpec::Overflow::kReroute), kN);
  const std::vector<int64_t> load = Loads(r);
  int64_t rerouted = 0, dropped = 0;
  for (int e = 0; e < kE; ++e) {
    EXPECT_LE(load[e], capacity);
    rerouted += r.rerouted[e];
    dropped += r.dropped[e];
  }
  EXPECT_GT(rerouted, 0);
  EXPECT_EQ(r.num_pairs() + dropped, kN * kK);  // rerouted pairs still count; drops do not
  EXPECT_LE(r.num_pairs(), kE * capacity);
  // Rerouting keeps at least as many pairs as dropping would.
  EXPECT_GE(r.num_pairs(), f.Route(Spec(0.75f, RoutingSpec::Overflow::kDrop)).num_pairs());
  int64_t moved = 0;
  for (int t = 0; t < kN; ++t) {
    const auto ids = r.ExpertsOf(t);
    EXPECT_EQ(std::set<int32_t>(ids.begin(), ids.end()).size(), ids.size()) << "token " << t;
    const auto orig = free.ExpertsOf(t);
    for (int32_t e : ids) moved += std::find(orig.begin(), orig.end(), e) == orig.end();
  }
  EXPECT_EQ(moved, rerouted);
}

}  // namespace
}  // namespace moe::router
