// tests/router/balanced_assignment_test.cc
// Equal loads always; and on small cases the same total affinity as trying every assignment.
#include "router/balanced_assignment.h"

#include <functional>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"

namespace moe::router {
namespace {

double Total(const std::vector<float>& a, const std::vector<int32_t>& assigned, int e) {
  double sum = 0;
  for (size_t t = 0; t < assigned.size(); ++t) sum += a[t * e + assigned[t]];
  return sum;
}

double BruteForce(const std::vector<float>& a, int64_t n, int e) {
  std::vector<int64_t> cap = BalancedCapacities(n, e);
  double best = -1e30;
  std::function<void(int64_t, double)> go = [&](int64_t t, double sum) {
    if (t == n) {
      best = std::max(best, sum);
      return;
    }
    for (int x = 0; x < e; ++x) {
      if (cap[x] == 0) continue;
      --cap[x];
      go(t + 1, sum + a[t * e + x]);
      ++cap[x];
    }
  };
  go(0, 0.0);
  return best;
}

TEST(BalancedAssignmentTest, CapacitiesSplitEvenly) {
  EXPECT_EQ(BalancedCapacities(8, 4), (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(BalancedCapacities(7, 3), (std::vector<int64_t>{3, 2, 2}));
}

TEST(BalancedAssignmentTest, MatchesBruteForceOnSmallCases) {
  for (int seed = 0; seed < 40; ++seed) {
    const int64_t n = 6 + seed % 3;  // 6..8 tokens
    const int e = 2 + seed % 3;      // 2..4 experts
    const std::vector<float> a = testing::RandomVector(n * e, 1000 + seed);
    const std::vector<int32_t> assigned = BalancedAssignment(a, n, e);
    std::vector<int64_t> load(e, 0);
    for (int32_t x : assigned) {
      ASSERT_GE(x, 0);
      ++load[x];
    }
    EXPECT_EQ(load, BalancedCapacities(n, e)) << "seed " << seed;
    EXPECT_NEAR(Total(a, assigned, e), BruteForce(a, n, e), 1e-5) << "seed " << seed;
  }
}

TEST(BalancedAssignmentTest, EqualLoadsOnSkewedLargeBatches) {
  const int64_t n = 512;
  const int e = 8;
  std::vector<float> a = testing::RandomVector(n * e, 9);
  for (int64_t t = 0; t < n; ++t) a[t * e + 3] += 3.0f;  // everyone prefers expert 3
  const std::vector<int32_t> assigned = BalancedAssignment(a, n, e);
  std::vector<int64_t> load(e, 0);
  for (int32_t x : assigned) ++load[x];
  for (int x = 0; x < e; ++x) EXPECT_EQ(load[x], 64);
  // Greedy by token order is a feasible assignment; the optimum is at least as good.
  std::vector<int64_t> cap(e, 64);
  std::vector<int32_t> greedy(n);
  for (int64_t t = 0; t < n; ++t) {
    int best = -1;
    for (int x = 0; x < e; ++x) {
      if (cap[x] > 0 && (best < 0 || a[t * e + x] > a[t * e + best])) best = x;
    }
    greedy[t] = best;
    --cap[best];
  }
  EXPECT_GE(Total(a, assigned, e), Total(a, greedy, e) - 1e-3);
}

TEST(BalancedAssignmentTest, ForbiddenPairsAreNeverChosen) {
  const int64_t n = 6;
  const int e = 3;
  std::vector<float> a = testing::RandomVector(n * e, 11);
  a[0 * e + 0] = -INFINITY;
  a[1 * e + 0] = -INFINITY;
  const std::vector<int32_t> assigned = BalancedAssignment(a, n, e);
  EXPECT_NE(assigned[0], 0);
  EXPECT_NE(assigned[1], 0);
}

}  // namespace
}  // namespace moe::router
