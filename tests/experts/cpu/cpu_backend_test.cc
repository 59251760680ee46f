// tests/experts/cpu/cpu_backend_test.cc
// The CPU backend against a naive loop in double precision, on every kernel path: the many-row
// product for every row count (our AMX product on AMX CPUs, oneDNN elsewhere), oneDNN for every
// row count, our streaming kernels for every row count, and the default split between them; f32, bf16 and f16 weights; row counts across every crossover. ctest runs this binary
// once per MOE_CPU_ISA level (tests/CMakeLists.txt); a level this CPU lacks skips, saying so, and so
// does the CPU's own level (the plain run runs it; testing/isa_cap.h).
#include "experts/cpu/cpu_backend.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>

#include "gtest/gtest.h"
#include "tests/testing/isa_cap.h"
#include "tests/testing/naive_expert.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

const auto* const kOwnLevel = ::testing::AddGlobalTestEnvironment(new testing::SkipTheCpusOwnLevel);

using ::moe::testing::StatusIs;

using testing::NaiveExpert;

double MaxRelError(const std::vector<double>& expected, const float* got) {
  double num = 0, den = 0;
  for (size_t j = 0; j < expected.size(); ++j) {
    if (!std::isfinite(got[j])) return std::numeric_limits<double>::infinity();  // unwritten (poison)
    num = std::max(num, std::abs(expected[j] - got[j]));
    den = std::max(den, std::abs(expected[j]));
  }
  return num / den;
}

// ‖got − expected‖₂ ÷ ‖expected‖₂ over one row.
double L2RelError(const std::vector<double>& expected, const float* got) {
  double num = 0, den = 0;
  for (size_t j = 0; j < expected.size(); ++j) {
    if (!std::isfinite(got[j])) return std::numeric_limits<double>::infinity();
    num += (expected[j] - got[j]) * (expected[j] - got[j]);
    den += expected[j] * expected[j];
  }
  return std::sqrt(num / den);
}

// f32 paths: the worst element within 1e-5 of the row's largest. bf16 paths (inputs and the
// activation rounded to bf16's 8 bits): the row within 1e-2 in L2; single elements of a row can
// reach ~1.1e-2 of its largest (seen at 513 rows, on every path alike).
double RowError(model::DType weights, const std::vector<double>& expected, const float* got) {
  return weights == model::DType::kBF16 ? L2RelError(expected, got) : MaxRelError(expected, got);
}
double Tolerance(model::DType weights) { return weights == model::DType::kBF16 ? 1e-2 : 1e-5; }

ExpertWeights ExpertIn(model::DType dtype, ExpertKey key, int hidden, int inter, uint64_t seed) {
  ExpertWeights w = testing::RandomExpert(key, hidden, inter, seed);
  w.w1 = w.w1.ConvertTo(dtype);
  w.w3 = w.w3.ConvertTo(dtype);
  w.w2 = w.w2.ConvertTo(dtype);
  return w;
}

// The ISA this process was asked to test (ctest sets MOE_CPU_ISA), or "" for the CPU's best.
std::string RequestedIsa() {
  const char* isa = std::getenv("MOE_CPU_ISA");
  return isa == nullptr ? "" : isa;
}

// Skips unless the backend runs the ISA this process is meant to test.
#define SKIP_UNLESS_REQUESTED_ISA(backend)                                                              \
  do {                                                                                                  \
    const std::string wanted = RequestedIsa();                                                          \
    if (!wanted.empty() && base::CpuIsaName((backend)->isa()) != wanted) {                                    \
      GTEST_SKIP() << "MOE_CPU_ISA=" << wanted << " is not available here: " << (backend)->device();    \
    }                                                                                                   \
  } while (0)

// kManyRows: every row count on the many-row product (ours on AMX CPUs for bf16, else oneDNN);
// kOneDnn: the same with oneDNN also on AMX CPUs.
enum class Path { kManyRows, kOneDnn, kOwn, kDefault };
constexpr int kOwnEverywhere = 1 << 30;

struct Case {
  model::DType dtype;
  Path path;
};

class CpuBackendPathTest : public ::testing::TestWithParam<Case> {
 protected:
  CpuExpertBackend::Options OptionsFor(Path path) {
    CpuExpertBackend::Options options;
    options.small_rows = path == Path::kOneDnn || path == Path::kManyRows ? 0
                         : path == Path::kOwn                              ? kOwnEverywhere
                                                                           : -1;
    options.onednn_amx = path == Path::kOneDnn;
    // Slices of 32 rows of w1 and w3: I = 84 is 32 + 32 + 20 and I = 52 is 32 + 20, so every
    // path runs several slices, the last one ragged.
    options.gate_up_slice = 32;
    return options;
  }
};

// H and I not multiples of 16, 32 or 64: every tile and pair has a tail.
constexpr int kHidden = 100, kInter = 84;

TEST_P(CpuBackendPathTest, EveryRowCountMatchesNaiveLoop) {
  const auto [dtype, path] = GetParam();
  const ExpertWeights w = ExpertIn(dtype, {0, 0}, kHidden, kInter, 77);
  ASSERT_OK_AND_ASSIGN(auto backend, CpuExpertBackend::FromWeights({w}, OptionsFor(path)));
  SKIP_UNLESS_REQUESTED_ISA(backend);
  const int small = backend->small_rows();
  // Crossovers ±1: our kernels' row tile (4), the default split, the bucket steps (16; 32 past
  // 256), and the chunk size (512: 511, 512, 513, and 1000 = 512 + 488).
  std::vector<int> counts = {1, 2, 3, 4, 5, 8, 15, 16, 17, 33, 255, 256, 257, 289, 511, 512, 513, 1000};
  if (small > 0 && small < kOwnEverywhere) counts.insert(counts.end(), {small - 1, small, small + 1});
  double worst_of_all = 0;
  for (int rows : counts) {
    if (rows <= 0) continue;
    const std::vector<float> in = testing::RandomVector(static_cast<size_t>(rows) * kHidden, 300 + rows);
    std::vector<float> out(in.size(), std::numeric_limits<float>::quiet_NaN());  // poison
    ASSERT_OK(backend->Run({{{0, 0}, 0, rows}}, in, absl::MakeSpan(out)));
    double worst = 0;
    for (int r = 0; r < rows; ++r) {
      worst = std::max(worst, RowError(dtype, NaiveExpert(w, &in[r * kHidden]), &out[r * kHidden]));
    }
    EXPECT_LE(worst, Tolerance(dtype)) << rows << " rows on " << backend->device();
    worst_of_all = std::max(worst_of_all, worst);
  }
  // The measured error of this path, for docs/ARCHITECTURE.md's numerics.
  std::printf("worst row error %.3g (%s) on %s\n", worst_of_all, dtype == model::DType::kBF16 ? "L2" : "max",
              backend->device().c_str());
}

TEST_P(CpuBackendPathTest, UnevenAndEmptyGroupsOfSeveralExperts) {
  const auto [dtype, path] = GetParam();
  std::vector<ExpertWeights> weights;
  // Two intermediate sizes in one backend: the scratch layouts change between groups.
  for (int e = 0; e < 4; ++e) weights.push_back(ExpertIn(dtype, {1, e}, kHidden, e % 2 ? 52 : kInter, 100 + e));
  ASSERT_OK_AND_ASSIGN(auto backend, CpuExpertBackend::FromWeights(weights, OptionsFor(path)));
  SKIP_UNLESS_REQUESTED_ISA(backend);
  // expert 2: 1 row, expert 0: none, expert 1: 37, expert 3: 1025 (2 chunks + 1), expert 2
  // again: 3; then 2 rows no group covers.
  const std::vector<ExpertGroup> groups = {
      {{1, 2}, 0, 1}, {{1, 0}, 1, 0}, {{1, 1}, 1, 37}, {{1, 3}, 38, 1025}, {{1, 2}, 1063, 3}};
  const int rows = 1068;
  const std::vector<float> in = testing::RandomVector(static_cast<size_t>(rows) * kHidden, 9);
  std::vector<float> out(in.size(), 12345.0f);  // poison: unwritten rows stay so
  ASSERT_OK(backend->Run(groups, in, absl::MakeSpan(out)));
  for (const ExpertGroup& g : groups) {
    for (int64_t r = g.row_begin; r < g.row_begin + g.num_rows; ++r) {
      ASSERT_LE(RowError(dtype, NaiveExpert(weights[g.key.expert], &in[r * kHidden]), &out[r * kHidden]),
                Tolerance(dtype))
          << "expert " << g.key.expert << " row " << r;
    }
  }
  for (int r = 1066; r < rows; ++r) EXPECT_EQ(out[r * kHidden], 12345.0f);
}

TEST_P(CpuBackendPathTest, BiasesAndTheClampedActivationOfGptOss) {
  const auto [dtype, path] = GetParam();
  ExpertWeights w = ExpertIn(dtype, {0, 0}, kHidden, kInter, 91);
  // Scaled so that gate and up go past the clamp at ±2.
  w.w1 = model::Tensor::FromF32(testing::RandomVector(kInter * kHidden, 92, 0.5f), {kInter, kHidden}).ConvertTo(dtype);
  w.b1 = model::Tensor::FromF32(testing::RandomVector(kInter, 93, 0.5f), {kInter});
  w.b3 = model::Tensor::FromF32(testing::RandomVector(kInter, 94, 0.5f), {kInter});
  w.b2 = model::Tensor::FromF32(testing::RandomVector(kHidden, 95, 0.5f), {kHidden});
  w.activation = {.alpha = 1.702f, .limit = 2.0f};
  ASSERT_OK_AND_ASSIGN(auto backend, CpuExpertBackend::FromWeights({w}, OptionsFor(path)));
  SKIP_UNLESS_REQUESTED_ISA(backend);
  for (int rows : {1, 3, 17, 300}) {
    const std::vector<float> in = testing::RandomVector(static_cast<size_t>(rows) * kHidden, 96 + rows);
    std::vector<float> out(in.size(), std::numeric_limits<float>::quiet_NaN());
    ASSERT_OK(backend->Run({{{0, 0}, 0, rows}}, in, absl::MakeSpan(out)));
    int clamped = 0;
    for (int r = 0; r < rows; ++r) {
      ASSERT_LE(RowError(dtype, NaiveExpert(w, &in[r * kHidden]), &out[r * kHidden]), Tolerance(dtype))
          << rows << " rows, row " << r << " on " << backend->device();
      // The clamp is exercised: some gate of this row is past the limit.
      const model::Tensor w1 = w.w1.ToF32();
      for (int i = 0; i < kInter; ++i) {
        double g = w.b1.f32()[i];
        for (int j = 0; j < kHidden; ++j) g += double(w1.f32()[i * kHidden + j]) * in[r * kHidden + j];
        clamped += g > 2.0;
      }
    }
    EXPECT_GT(clamped, 0) << rows;
  }
  // Biases of the wrong shape are refused, naming the expert.
  w.b2 = model::Tensor::FromF32(testing::RandomVector(3, 97), {3});
  EXPECT_THAT(CpuExpertBackend::FromWeights({w}, OptionsFor(path)),
              StatusIs(absl::StatusCode::kInvalidArgument, "expected [I], [I], [H]"));
}

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  const char* path = info.param.path == Path::kOneDnn     ? "OneDnn"
                     : info.param.path == Path::kManyRows ? "ManyRows"
                     : info.param.path == Path::kOwn      ? "Own"
                                                          : "Default";
  return absl::StrCat(model::DTypeName(info.param.dtype), "_", path);
}

INSTANTIATE_TEST_SUITE_P(
    DtypesAndPaths, CpuBackendPathTest,
    ::testing::Values(Case{model::DType::kF32, Path::kOneDnn}, Case{model::DType::kF32, Path::kOwn}, Case{model::DType::kF32, Path::kDefault},
                      Case{model::DType::kBF16, Path::kManyRows}, Case{model::DType::kBF16, Path::kOneDnn},
                      Case{model::DType::kBF16, Path::kOwn},
                      Case{model::DType::kBF16, Path::kDefault}, Case{model::DType::kF16, Path::kDefault}),
    CaseName);

TEST(CpuBackendResidentTest, Bf16StaysBf16AndF32ComputeWidens) {
  const int hidden = 1024, inter = 640;  // multiples of the tiles: no padding
  const ExpertWeights w = ExpertIn(model::DType::kBF16, {0, 0}, hidden, inter, 5);
  ASSERT_OK_AND_ASSIGN(auto bf16, CpuExpertBackend::FromWeights({w}, {}));
  EXPECT_EQ(bf16->resident().dtype, "bf16");
  EXPECT_EQ(bf16->resident().bytes, int64_t{3} * hidden * inter * 2);
  ASSERT_OK_AND_ASSIGN(auto f32, CpuExpertBackend::FromWeights({w}, {.f32_compute = true}));
  EXPECT_EQ(f32->resident().dtype, "f32");
  EXPECT_EQ(f32->resident().bytes, int64_t{3} * hidden * inter * 4);
  // f32 compute on bf16 weights is the f32 path: within 1e-5 of the double loop.
  const std::vector<float> in = testing::RandomVector(3 * hidden, 6);
  std::vector<float> out(in.size(), std::numeric_limits<float>::quiet_NaN());
  ASSERT_OK(f32->Run({{{0, 0}, 0, 3}}, in, absl::MakeSpan(out)));
  for (int r = 0; r < 3; ++r) EXPECT_LE(MaxRelError(NaiveExpert(w, &in[r * hidden]), &out[r * hidden]), 1e-5);
  EXPECT_NE(bf16->device().find("weights bf16"), std::string::npos) << bf16->device();
  EXPECT_NE(bf16->device().find("kernels"), std::string::npos) << bf16->device();
}

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
