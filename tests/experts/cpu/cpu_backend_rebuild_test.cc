// tests/experts/cpu/cpu_backend_rebuild_test.cc
// CpuExpertBackend::Rebuild, what a worker's LoadExperts/UnloadExperts run on: the new backend
// hosts hosted − remove + add, computes the experts it kept bit for bit as the old one did (their
// weights are shared, not repacked) and the added ones as a backend built from them alone; the old
// backend is unchanged and keeps computing; bad changes are refused and change nothing. Also the
// resident-bytes estimate the memory budget checks before loading. bf16, f32 and q8_0 experts.
#include <cstring>
#include <vector>

#include "experts/cpu/cpu_backend.h"
#include "gtest/gtest.h"
#include "model/formats/weight_format.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::experts {
namespace {

using ::moe::testing::StatusIs;

constexpr int kHidden = 64, kInter = 96;

ExpertWeights In(model::DType dtype, ExpertKey key, uint64_t seed) {
  ExpertWeights w = testing::RandomExpert(key, kHidden, kInter, seed);
  w.w1 = w.w1.ConvertTo(dtype);
  w.w3 = w.w3.ConvertTo(dtype);
  w.w2 = w.w2.ConvertTo(dtype);
  return w;
}

// `rows` rows through `key`, for several row counts in one Run (every kernel path the backend
// picks by rows).
std::vector<float> Outputs(ExpertBackend& backend, ExpertKey key, int64_t rows) {
  const std::vector<float> in = testing::RandomVector(static_cast<size_t>(rows * kHidden), 99);
  std::vector<float> out(in.size(), 0.0f);
  const ExpertGroup group{key, 0, rows};
  EXPECT_OK(backend.Run({&group, 1}, in, absl::MakeSpan(out)));
  return out;
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct Case {
  model::DType dtype;
  const char* quantize;  // nullptr: as given
};

class RebuildTest : public ::testing::TestWithParam<Case> {
 protected:
  CpuExpertBackend::Options Options() const {
    CpuExpertBackend::Options o;
    o.threads = 2;
    if (GetParam().quantize != nullptr) o.quantize = model::FindWeightFormat(GetParam().quantize);
    return o;
  }
};

TEST_P(RebuildTest, KeepsSharedExpertsAndAddsNewOnes) {
  const model::DType dtype = GetParam().dtype;
  const ExpertKey a{0, 0}, b{0, 1}, c{1, 0};
  std::vector<ExpertWeights> first = {In(dtype, a, 1), In(dtype, b, 2)};
  ASSERT_OK_AND_ASSIGN(auto old, CpuExpertBackend::FromWeights(first, Options()));
  ASSERT_OK_AND_ASSIGN(auto alone_c, CpuExpertBackend::FromWeights({In(dtype, c, 3)}, Options()));
  std::vector<ExpertWeights> add = {In(dtype, c, 3)};
  const ExpertKey remove[] = {a};
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<ExpertBackend> rebuilt, old->Rebuild(add, remove));

  EXPECT_EQ(rebuilt->hosted(), (std::vector<ExpertKey>{b, c}));
  EXPECT_FALSE(rebuilt->Hosts(a));
  EXPECT_EQ(old->hosted(), (std::vector<ExpertKey>{a, b}));  // unchanged
  for (int64_t rows : {1, 3, 17, 80}) {
    EXPECT_TRUE(BitIdentical(Outputs(*rebuilt, b, rows), Outputs(*old, b, rows))) << rows << " rows";
    EXPECT_TRUE(BitIdentical(Outputs(*rebuilt, c, rows), Outputs(*alone_c, c, rows))) << rows << " rows";
  }
  // The old backend still computes the removed expert (calls in flight on it finish).
  const std::vector<float> still = Outputs(*old, a, 5);
  EXPECT_NE(still, std::vector<float>(still.size(), 0.0f));
  const std::vector<float> in(kHidden, 1.0f);
  std::vector<float> out(kHidden);
  const ExpertGroup gone{a, 0, 1};
  EXPECT_THAT(rebuilt->Run({&gone, 1}, in, absl::MakeSpan(out)), StatusIs(absl::StatusCode::kNotFound, "not hosted"));

  // Resident bytes: the kept expert's plus the added one's, as each backend alone reports them.
  ASSERT_OK_AND_ASSIGN(auto alone_b, CpuExpertBackend::FromWeights({In(dtype, b, 2)}, Options()));
  EXPECT_EQ(rebuilt->resident().bytes, alone_b->resident().bytes + alone_c->resident().bytes);
  EXPECT_EQ(rebuilt->resident().dtype, old->resident().dtype);
  // The estimate the memory budget checks before packing is within 10 % of what packing took.
  ASSERT_OK_AND_ASSIGN(const int64_t estimate, CpuExpertBackend::ResidentBytesOf(In(dtype, c, 3), Options()));
  EXPECT_NEAR(static_cast<double>(estimate), static_cast<double>(alone_c->resident().bytes),
              0.1 * static_cast<double>(alone_c->resident().bytes));
}

TEST_P(RebuildTest, RefusesBadChangesWithoutChangingAnything) {
  const model::DType dtype = GetParam().dtype;
  const ExpertKey a{0, 0}, b{0, 1};
  ASSERT_OK_AND_ASSIGN(auto old, CpuExpertBackend::FromWeights({In(dtype, a, 1)}, Options()));
  const ExpertKey missing[] = {b};
  EXPECT_THAT(old->Rebuild({}, missing), StatusIs(absl::StatusCode::kNotFound, "not hosted"));
  EXPECT_THAT(old->Rebuild({In(dtype, a, 5)}, {}), StatusIs(absl::StatusCode::kInvalidArgument, "given twice"));
  const ExpertKey all[] = {a};
  EXPECT_THAT(old->Rebuild({}, all), StatusIs(absl::StatusCode::kInvalidArgument, "at least one expert"));
  ExpertWeights wrong = testing::RandomExpert(b, kHidden + 32, kInter, 7);
  EXPECT_THAT(old->Rebuild({wrong}, {}), StatusIs(absl::StatusCode::kInvalidArgument, "expected w1/w3"));
  EXPECT_EQ(old->hosted(), std::vector<ExpertKey>{a});
  // Replacing an expert in one change (remove and add the same key) is allowed.
  ASSERT_OK_AND_ASSIGN(auto replaced, old->Rebuild({In(dtype, a, 5)}, all));
  ASSERT_OK_AND_ASSIGN(auto fresh, CpuExpertBackend::FromWeights({In(dtype, a, 5)}, Options()));
  EXPECT_TRUE(BitIdentical(Outputs(*replaced, a, 4), Outputs(*fresh, a, 4)));
}

INSTANTIATE_TEST_SUITE_P(Formats, RebuildTest,
                         ::testing::Values(Case{model::DType::kBF16, nullptr}, Case{model::DType::kF32, nullptr},
                                           Case{model::DType::kF32, "q8_0"}),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.quantize != nullptr ? std::string(info.param.quantize)
                                                                  : std::string(model::DTypeName(info.param.dtype));
                         });

}  // namespace
}  // namespace moe::experts
