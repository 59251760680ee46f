// tests/experts/cuda/cuda_backend_test.cc
// The CUDA backend against the CPU backend (the reference) on fresh random inputs: 1, 7, 64 and
// 1000 tokens, uneven and empty groups, groups out of row order, groups of equal size (merged
// into one grouped-GEMM problem), every dtype, both ways of
// issuing the products (back to back, grouped GEMM), a hidden size that is not a multiple of 8
// and experts of different intermediate sizes on one worker; outputs poisoned with NaN first so
// an element the GPU did not write fails. Skips, with the reason, where no GPU is usable.
#include <cmath>
#include <limits>

#include "experts/factory/backend_factory.h"
#include "gtest/gtest.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

struct Mode {
  model::DType dtype;
  bool grouped;
};

class CudaBackendTest : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> device = CudaDevice(0);
    if (!device.ok()) GTEST_SKIP() << "no usable GPU: " << device.status().message();
  }
};

double MaxRelError(const std::vector<float>& got, const std::vector<float>& ref, int64_t begin, int64_t end) {
  double num = 0, den = 0;
  for (int64_t i = begin; i < end; ++i) {
    num = std::max(num, std::isnan(got[i]) ? std::numeric_limits<double>::infinity() : double(std::abs(got[i] - ref[i])));
    den = std::max(den, double(std::abs(ref[i])));
  }
  return num / den;
}

TEST_P(CudaBackendTest, MatchesTheCpuBackend) {
  const model::DType dtype = GetParam().dtype;
  const double tolerance = dtype == model::DType::kF32 ? 1e-5 : 1e-2;
  struct Shape {
    int hidden, inter, inter_of_expert_3;
  };
  for (const Shape& shape : {Shape{64, 96, 96}, Shape{256, 512, 512}, Shape{60, 90, 180}}) {
    SCOPED_TRACE(::testing::Message() << "H=" << shape.hidden << " I=" << shape.inter << "/" << shape.inter_of_expert_3);
    const int hidden = shape.hidden;
    std::vector<ExpertWeights> weights;
    for (int e = 0; e < 4; ++e) {
      ExpertWeights w = testing::RandomExpert({0, e}, hidden, e == 3 ? shape.inter_of_expert_3 : shape.inter, 40 + e);
      if (dtype != model::DType::kF32) {  // both backends see the same rounded weights
        w.w1 = w.w1.ConvertTo(dtype);
        w.w3 = w.w3.ConvertTo(dtype);
        w.w2 = w.w2.ConvertTo(dtype);
      }
      weights.push_back(std::move(w));
    }
    ASSERT_OK_AND_ASSIGN(auto cpu, CreateBackendFromWeights(weights, {.kind = "cpu"}));
    ASSERT_OK_AND_ASSIGN(auto gpu, CreateBackendFromWeights(weights, {.kind = "cuda",
                                                                      .cuda_dtype = dtype,
                                                                      .cuda_grouped_gemm = GetParam().grouped}));
    EXPECT_EQ(gpu->name(), "cuda");
    EXPECT_EQ(gpu->intermediate_size(), shape.inter_of_expert_3);
    for (int64_t tokens : {1, 7, 64, 1000}) {
      // Uneven groups, not in row order: expert 2 gets one row, expert 0 none, expert 3 the rest
      // but 2 (from row 1), expert 1 the last (up to) two.
      const int64_t a = 1, b = std::max<int64_t>(0, tokens - 3), c = tokens - a - b;
      const std::vector<ExpertGroup> groups = {{{0, 1}, a + b, c}, {{0, 2}, 0, a}, {{0, 0}, a, 0}, {{0, 3}, a, b}};
      const std::vector<float> in = testing::RandomVector(tokens * hidden, 1000 + tokens);
      std::vector<float> want(in.size()), got(in.size(), std::numeric_limits<float>::quiet_NaN());
      ASSERT_OK(cpu->Run(groups, in, absl::MakeSpan(want)));
      ASSERT_OK(gpu->Run(groups, in, absl::MakeSpan(got)));
      const double err = MaxRelError(got, want, 0, tokens * hidden);
      EXPECT_LE(err, tolerance) << model::DTypeName(dtype) << " tokens=" << tokens;
    }
    // Groups of equal size — the production case a grouped GEMM merges into one problem of
    // several members — 1 and 16 rows each, every expert (expert 3's I differs in one shape).
    for (int64_t r : {1, 16}) {
      const std::vector<ExpertGroup> groups = {{{0, 0}, 0, r}, {{0, 1}, r, r}, {{0, 2}, 2 * r, r}, {{0, 3}, 3 * r, r}};
      const std::vector<float> in = testing::RandomVector(4 * r * hidden, 2000 + r);
      std::vector<float> want(in.size()), got(in.size(), std::numeric_limits<float>::quiet_NaN());
      ASSERT_OK(cpu->Run(groups, in, absl::MakeSpan(want)));
      ASSERT_OK(gpu->Run(groups, in, absl::MakeSpan(got)));
      EXPECT_LE(MaxRelError(got, want, 0, 4 * r * hidden), tolerance) << model::DTypeName(dtype) << " equal groups of " << r;
    }
    // Steady state: the same call again gives the same answer (buffers reused, not reallocated).
    const std::vector<float> in = testing::RandomVector(7 * hidden, 5);
    std::vector<float> first(in.size()), second(in.size());
    ASSERT_OK(gpu->Run({{{0, 1}, 0, 7}}, in, absl::MakeSpan(first)));
    ASSERT_OK(gpu->Run({{{0, 1}, 0, 7}}, in, absl::MakeSpan(second)));
    EXPECT_EQ(first, second);
    // Rows no group covers are left as they were.
    std::vector<float> gap(3 * hidden, -7.0f);
    ASSERT_OK(gpu->Run({{{0, 0}, 0, 1}, {{0, 2}, 2, 1}}, testing::RandomVector(3 * hidden, 6), absl::MakeSpan(gap)));
    for (int i = 0; i < hidden; ++i) ASSERT_EQ(gap[hidden + i], -7.0f) << i;
    EXPECT_OK(gpu->Health());
  }
}

TEST_P(CudaBackendTest, RefusesWhatTheCpuBackendRefuses) {
  ASSERT_OK_AND_ASSIGN(auto gpu, CreateBackendFromWeights({testing::RandomExpert({0, 4}, 16, 8, 1)},
                                                          {.kind = "cuda",
                                                           .cuda_dtype = GetParam().dtype,
                                                           .cuda_grouped_gemm = GetParam().grouped}));
  std::vector<float> in(32, 1.0f), out(32);
  EXPECT_THAT(gpu->Run({{{0, 5}, 0, 1}}, in, absl::MakeSpan(out)),
              testing::StatusIs(absl::StatusCode::kNotFound, "expert 5 of layer 0 is not hosted"));
  EXPECT_THAT(gpu->Run({{{0, 4}, 1, 2}}, in, absl::MakeSpan(out)),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "outside the 2 rows"));
}

INSTANTIATE_TEST_SUITE_P(DtypesAndGemms, CudaBackendTest,
                         ::testing::Values(Mode{model::DType::kBF16, false}, Mode{model::DType::kF16, false},
                                           Mode{model::DType::kF32, false}, Mode{model::DType::kBF16, true},
                                           Mode{model::DType::kF16, true}, Mode{model::DType::kF32, true}),
                         [](const ::testing::TestParamInfo<Mode>& info) {
                           return std::string(model::DTypeName(info.param.dtype)) +
                                  (info.param.grouped ? "_grouped" : "_back_to_back");
                         });

TEST(CudaAvailabilityTest, ANonCudaBuildOrGpuLessMachineSaysWhy) {
  absl::StatusOr<std::string> device = CudaDevice(0);
  if (device.ok()) {
    EXPECT_FALSE(device->empty());
    EXPECT_THAT(CudaDevice(1 << 20), testing::StatusIs(absl::StatusCode::kFailedPrecondition, "does not exist"));
    return;
  }
  EXPECT_EQ(device.status().code(), absl::StatusCode::kFailedPrecondition) << device.status();
  EXPECT_THAT(CreateBackendFromWeights({testing::RandomExpert({0, 0}, 8, 8, 1)}, {.kind = "cuda"}),
              testing::StatusIs(absl::StatusCode::kFailedPrecondition, ""));
  EXPECT_THAT(CreateBackendFromWeights({testing::RandomExpert({0, 0}, 8, 8, 1)}, {.kind = "tpu"}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "unknown backend 'tpu'"));
}

}  // namespace
}  // namespace moe::experts
