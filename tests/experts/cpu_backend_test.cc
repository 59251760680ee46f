// tests/experts/cpu_backend_test.cc
// The CPU backend against a naive triple loop in double precision.
#include "experts/cpu_backend.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

using ::moe::testing::StatusIs;

// y = W2·(silu(W1·x) ⊙ W3·x) for one row, in double.
std::vector<double> NaiveExpert(const ExpertWeights& w, const float* x) {
  const Tensor w1 = w.w1.ToF32(), w3 = w.w3.ToF32(), w2 = w.w2.ToF32();
  const int64_t inter = w1.dim(0), hidden = w1.dim(1);
  std::vector<double> act(inter);
  for (int64_t i = 0; i < inter; ++i) {
    double g = 0, u = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      g += double(w1.f32()[i * hidden + j]) * x[j];
      u += double(w3.f32()[i * hidden + j]) * x[j];
    }
    act[i] = g / (1.0 + std::exp(-g)) * u;
  }
  std::vector<double> y(hidden, 0.0);
  for (int64_t j = 0; j < hidden; ++j) {
    for (int64_t i = 0; i < inter; ++i) y[j] += double(w2.f32()[j * inter + i]) * act[i];
  }
  return y;
}

double MaxRelError(const std::vector<double>& expected, const float* got) {
  double num = 0, den = 0;
  for (size_t j = 0; j < expected.size(); ++j) {
    if (std::isnan(got[j])) return std::numeric_limits<double>::infinity();  // an unwritten element
    num = std::max(num, std::abs(expected[j] - got[j]));
    den = std::max(den, std::abs(expected[j]));
  }
  return num / den;
}

class CpuBackendTest : public ::testing::TestWithParam<DType> {};

TEST_P(CpuBackendTest, MatchesNaiveLoopOnUnevenGroups) {
  const int hidden = 64, inter = 96;
  std::vector<ExpertWeights> weights;
  for (int e = 0; e < 3; ++e) {
    ExpertWeights w = testing::RandomExpert({1, e}, hidden, inter, 100 + e);
    w.w1 = w.w1.ConvertTo(GetParam());
    w.w3 = w.w3.ConvertTo(GetParam());
    w.w2 = w.w2.ConvertTo(GetParam());
    weights.push_back(std::move(w));
  }
  ASSERT_OK_AND_ASSIGN(auto backend, CpuExpertBackend::FromWeights(weights, {}));
  EXPECT_EQ(backend->hidden_size(), hidden);
  EXPECT_EQ(backend->intermediate_size(), inter);
  EXPECT_EQ(backend->hosted().size(), 3u);

  // Rows: 1 for expert 2, none for expert 0, 37 for expert 1, then 2 rows no group covers.
  const int rows = 40;
  const std::vector<float> in = testing::RandomVector(rows * hidden, 9);
  std::vector<float> out(rows * hidden, 12345.0f);  // poison: unwritten rows stay so
  const std::vector<ExpertGroup> groups = {{{1, 2}, 0, 1}, {{1, 0}, 1, 0}, {{1, 1}, 1, 37}};
  ASSERT_OK(backend->Run(groups, in, absl::MakeSpan(out)));
  for (int r = 0; r < 38; ++r) {
    const ExpertWeights& w = weights[r == 0 ? 2 : 1];
    EXPECT_LE(MaxRelError(NaiveExpert(w, &in[r * hidden]), &out[r * hidden]), 1e-5) << "row " << r;
  }
  for (int r = 38; r < rows; ++r) EXPECT_EQ(out[r * hidden], 12345.0f);

  // Steady state: a second, smaller call reuses the scratch and gives the same rows (to f32
  // rounding: BLAS may block a 5-row product differently from a 37-row one).
  std::vector<float> again(rows * hidden, 0.0f);
  ASSERT_OK(backend->Run({{{{1, 1}, 1, 5}}}, in, absl::MakeSpan(again)));
  for (int j = hidden; j < 6 * hidden; ++j) EXPECT_NEAR(again[j], out[j], 1e-5f * std::abs(out[j]) + 1e-6f);
}

// Few rows stream the weights block by block (several blocks here, the last one partial), more
// rows go to sgemm: every row count on both sides of the switch matches the naive loop.
TEST(CpuBackendRowCountsTest, SmallAndLargeGroupsMatchNaiveLoop) {
  const int hidden = 1024, inter = 640;
  const ExpertWeights w = testing::RandomExpert({0, 0}, hidden, inter, 77);
  ASSERT_OK_AND_ASSIGN(auto backend, CpuExpertBackend::FromWeights({w}, {}));
  for (int rows : {1, 2, 5, 8, 12, 13, 20}) {
    const std::vector<float> in = testing::RandomVector(rows * hidden, 300 + rows);
    std::vector<float> out(in.size(), std::numeric_limits<float>::quiet_NaN());
    ASSERT_OK(backend->Run({{{0, 0}, 0, rows}}, in, absl::MakeSpan(out)));
    for (int r = 0; r < rows; ++r) {
      EXPECT_LE(MaxRelError(NaiveExpert(w, &in[r * hidden]), &out[r * hidden]), 1e-5) << rows << " rows, row " << r;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(WeightDtypes, CpuBackendTest,
                         ::testing::Values(DType::kF32, DType::kBF16, DType::kF16));

TEST(CpuBackendErrorsTest, RefusesBadGroupsAndUnknownExperts) {
  ASSERT_OK_AND_ASSIGN(auto backend,
                       CpuExpertBackend::FromWeights({testing::RandomExpert({0, 4}, 16, 8, 1)}, {}));
  std::vector<float> in(32, 1.0f), out(32);
  EXPECT_THAT(backend->Run({{{0, 5}, 0, 1}}, in, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kNotFound, "expert 5 of layer 0 is not hosted"));
  EXPECT_THAT(backend->Run({{{0, 4}, 1, 2}}, in, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument, "outside the 2 rows"));
  EXPECT_THAT(backend->Run({{{0, 4}, -1, 1}}, in, absl::MakeSpan(out)),
              StatusIs(absl::StatusCode::kInvalidArgument, "rows [-1, 0)"));
  std::vector<float> odd(30);
  EXPECT_THAT(backend->Run({}, odd, absl::MakeSpan(odd)),
              StatusIs(absl::StatusCode::kInvalidArgument, "hidden size 16"));
}

TEST(CpuBackendErrorsTest, RefusesInconsistentWeights) {
  EXPECT_THAT(CpuExpertBackend::FromWeights({}, {}), StatusIs(absl::StatusCode::kInvalidArgument, "at least one"));
  ExpertWeights bad = testing::RandomExpert({0, 1}, 16, 8, 2);
  bad.w2 = testing::RandomExpert({0, 1}, 8, 16, 3).w2;
  EXPECT_THAT(CpuExpertBackend::FromWeights({testing::RandomExpert({0, 0}, 16, 8, 1), bad}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "expert 1 of layer 0 has shapes"));
  EXPECT_THAT(CpuExpertBackend::FromWeights({testing::RandomExpert({0, 0}, 16, 8, 1),
                                             testing::RandomExpert({0, 0}, 16, 8, 2)}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "given twice"));
}

}  // namespace
}  // namespace moe::experts
