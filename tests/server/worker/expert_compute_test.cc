// tests/server/worker/expert_compute_test.cc
// Decoding and batched compute of ExpertService requests: requests merged into one backend step
// (shared experts, different layers, empty groups) give what each gives alone; the decoder
// refuses what the backend does not host, so one bad request cannot fail a step; a merged step
// that fails is retried request by request; the each-token-once form answers one weighted sum per
// token, equal to the per-expert form combined, and refuses inconsistent pairs.
#include "server/worker/expert_compute.h"

#include <cmath>

#include "experts/cpu/cpu_backend.h"
#include "gtest/gtest.h"
#include "proto/tensor_codec.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

using model::DType;
using experts::ExpertKey;

constexpr int kHidden = 48;

// A request for `layer` whose groups are (expert, rows) in order, with seeded random tokens.
moe::v1::ExpertRequest MakeRequest(int layer, std::vector<std::pair<int, int>> groups, uint64_t seed, DType dtype) {
  moe::v1::ExpertRequest r;
  r.set_layer(layer);
  int64_t rows = 0;
  for (auto [expert, n] : groups) {
    moe::v1::ExpertGroup* g = r.add_groups();
    g->set_expert(expert);
    g->set_num_rows(n);
    rows += n;
  }
  proto::EncodeF32(testing::RandomVector(rows * kHidden, seed), {rows, kHidden}, dtype, r.mutable_tokens());
  return r;
}

class ExpertComputeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::vector<experts::ExpertWeights> weights;
    for (int layer : {0, 1}) {
      for (int e = 0; e < 3; ++e) weights.push_back(testing::RandomExpert({layer, e}, kHidden, 40, 10 * layer + e));
    }
    auto b = experts::CpuExpertBackend::FromWeights(weights, {});
    ASSERT_TRUE(b.ok()) << b.status();
    backend_ = *std::move(b);
  }
  std::unique_ptr<experts::CpuExpertBackend> backend_;
};

TEST_F(ExpertComputeTest, ABatchGivesWhatEachRequestGivesAlone) {
  const std::vector<moe::v1::ExpertRequest> requests = {
      MakeRequest(0, {{0, 3}, {2, 1}}, 1, DType::kF32),
      MakeRequest(0, {{2, 4}, {1, 0}, {0, 2}}, 2, DType::kF32),  // expert 2 before 0; an empty group
      MakeRequest(1, {{0, 5}}, 3, DType::kBF16),                  // another layer, another dtype
      MakeRequest(0, {{1, 1}}, 4, DType::kF32),
  };
  std::vector<DecodedExpertRequest> alone, batched;
  for (const auto& r : requests) {
    ASSERT_OK_AND_ASSIGN(DecodedExpertRequest d, DecodeExpertRequest(*backend_, 1000, r));
    batched.push_back(d);
    DecodedExpertRequest* one = &d;
    ASSERT_OK(RunExpertBatch(*backend_, absl::MakeConstSpan(&one, 1)));
    alone.push_back(std::move(d));
  }
  std::vector<DecodedExpertRequest*> batch;
  for (DecodedExpertRequest& d : batched) {
    std::fill(d.out.begin(), d.out.end(), std::nanf(""));  // poison: every row must be written
    batch.push_back(&d);
  }
  ASSERT_OK(RunExpertBatch(*backend_, batch));
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_EQ(batched[i].out.size(), alone[i].out.size());
    for (size_t j = 0; j < alone[i].out.size(); ++j) {
      ASSERT_FALSE(std::isnan(batched[i].out[j])) << "request " << i << " element " << j;
      EXPECT_NEAR(batched[i].out[j], alone[i].out[j], 1e-5f * (1 + std::abs(alone[i].out[j]))) << i << "/" << j;
    }
  }
  // And the response carries the request's dtype.
  moe::v1::ExpertResponse response;
  EncodeExpertResponse(batched[2], kHidden, &response);
  ASSERT_OK_AND_ASSIGN(model::Tensor out, proto::ViewTensor(response.outputs(), "outputs"));
  EXPECT_EQ(out.dtype(), DType::kBF16);
  EXPECT_EQ(out.shape(), (std::vector<int64_t>{5, kHidden}));
}

TEST_F(ExpertComputeTest, TheDecoderRefusesWhatABatchCouldNotRun) {
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, MakeRequest(0, {{7, 1}}, 5, DType::kF32)),
              testing::StatusIs(absl::StatusCode::kNotFound, "expert 7 of layer 0 is not hosted"));
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, MakeRequest(4, {{0, 1}}, 5, DType::kF32)),
              testing::StatusIs(absl::StatusCode::kNotFound, "expert 0 of layer 4 is not hosted"));
  EXPECT_THAT(DecodeExpertRequest(*backend_, 2, MakeRequest(0, {{0, 3}}, 5, DType::kF32)),
              testing::StatusIs(absl::StatusCode::kResourceExhausted, "at most 2"));
  moe::v1::ExpertRequest short_groups = MakeRequest(0, {{0, 3}}, 5, DType::kF32);
  short_groups.mutable_groups(0)->set_num_rows(2);
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, short_groups),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "groups cover 2 rows; expected all 3"));
}

// The each-token-once form: 3 tokens, token 0 → experts 2 (0.75) and 0 (0.25), token 1 → expert 1
// (1.0), token 2 → experts 0 (0.5) and 1 (2.0). The answer is one weighted sum per token, equal
// (up to f32 rounding) to the per-expert form's rows combined with the same weights.
TEST_F(ExpertComputeTest, EachTokenOnceAnswersOneWeightedSumPerToken) {
  const std::vector<float> x = testing::RandomVector(3 * kHidden, 21);
  moe::v1::ExpertRequest once;
  once.set_layer(0);
  proto::EncodeF32(x, {3, kHidden}, DType::kF32, once.mutable_tokens());
  const std::vector<std::pair<int, float>> pairs[3] = {{{2, 0.75f}, {0, 0.25f}}, {{1, 1.0f}}, {{0, 0.5f}, {1, 2.0f}}};
  for (const auto& token : pairs) {
    once.add_pair_counts(static_cast<int>(token.size()));
    for (auto [e, w] : token) {
      once.add_pair_experts(e);
      once.add_pair_weights(w);
    }
  }
  moe::v1::ExpertResponse response;
  ASSERT_OK(RunExpertRequest(*backend_, 1000, once, &response));
  ASSERT_OK_AND_ASSIGN(model::Tensor got, proto::ViewTensor(response.outputs(), "outputs"));
  ASSERT_EQ(got.shape(), (std::vector<int64_t>{3, kHidden}));
  // The same pairs in the per-expert form, one row each, combined here.
  for (int t = 0; t < 3; ++t) {
    std::vector<double> want(kHidden, 0.0);
    for (auto [e, w] : pairs[t]) {
      moe::v1::ExpertRequest one;
      one.set_layer(0);
      moe::v1::ExpertGroup* g = one.add_groups();
      g->set_expert(e);
      g->set_num_rows(1);
      proto::EncodeF32(absl::MakeConstSpan(x).subspan(t * kHidden, kHidden), {1, kHidden}, DType::kF32,
                       one.mutable_tokens());
      moe::v1::ExpertResponse r;
      ASSERT_OK(RunExpertRequest(*backend_, 1000, one, &r));
      ASSERT_OK_AND_ASSIGN(model::Tensor row, proto::ViewTensor(r.outputs(), "outputs"));
      for (int j = 0; j < kHidden; ++j) want[j] += w * row.f32()[j];
    }
    for (int j = 0; j < kHidden; ++j) {
      EXPECT_NEAR(got.f32()[t * kHidden + j], want[j], 1e-5 * (1 + std::abs(want[j]))) << t << "/" << j;
    }
  }
  // In a batch with a per-expert request, each gets its own form back.
  ASSERT_OK_AND_ASSIGN(DecodedExpertRequest a, DecodeExpertRequest(*backend_, 1000, once));
  ASSERT_OK_AND_ASSIGN(DecodedExpertRequest b, DecodeExpertRequest(*backend_, 1000, MakeRequest(0, {{0, 2}}, 22, DType::kF32)));
  EXPECT_EQ(a.rows, 5);  // expanded: one row per pair
  DecodedExpertRequest* both[] = {&a, &b};
  ASSERT_OK(RunExpertBatch(*backend_, both));
  moe::v1::ExpertResponse ra, rb;
  EncodeExpertResponse(a, kHidden, &ra);
  EncodeExpertResponse(b, kHidden, &rb);
  ASSERT_OK_AND_ASSIGN(model::Tensor oa, proto::ViewTensor(ra.outputs(), "outputs"));
  ASSERT_OK_AND_ASSIGN(model::Tensor ob, proto::ViewTensor(rb.outputs(), "outputs"));
  EXPECT_EQ(oa.shape(), (std::vector<int64_t>{3, kHidden}));
  EXPECT_EQ(ob.shape(), (std::vector<int64_t>{2, kHidden}));
  for (int j = 0; j < 3 * kHidden; ++j) EXPECT_NEAR(oa.f32()[j], got.f32()[j], 1e-5 * (1 + std::abs(got.f32()[j])));
}

TEST_F(ExpertComputeTest, EachTokenOnceRefusesInconsistentPairs) {
  const auto request = [](std::vector<int> counts, std::vector<int> experts, std::vector<float> weights) {
    moe::v1::ExpertRequest r;
    r.set_layer(0);
    proto::EncodeF32(testing::RandomVector(2 * kHidden, 23), {2, kHidden}, DType::kF32, r.mutable_tokens());
    for (int c : counts) r.add_pair_counts(c);
    for (int e : experts) r.add_pair_experts(e);
    for (float w : weights) r.add_pair_weights(w);
    return r;
  };
  using testing::StatusIs;
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, request({1}, {0}, {1})),
              StatusIs(absl::StatusCode::kInvalidArgument, "pair_counts has 1 entries; expected one per token (2)"));
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, request({1, 1}, {0}, {1})),
              StatusIs(absl::StatusCode::kInvalidArgument, "pair_counts add up to 2"));
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, request({1, -1}, {0}, {1})),
              StatusIs(absl::StatusCode::kInvalidArgument, "negative"));
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, request({1, 1}, {0, 7}, {1, 1})),
              StatusIs(absl::StatusCode::kNotFound, "expert 7 of layer 0 is not hosted"));
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, request({1, 1}, {0, 1}, {1, std::nanf("")})),
              StatusIs(absl::StatusCode::kInvalidArgument, "pair_weights[1] is not finite"));
  moe::v1::ExpertRequest both = request({1, 1}, {0, 1}, {1, 1});
  both.add_groups()->set_expert(0);
  EXPECT_THAT(DecodeExpertRequest(*backend_, 1000, both),
              StatusIs(absl::StatusCode::kInvalidArgument, "two forms of a request"));
}

// The CPU backend, refusing any step of more than `max_rows` rows (as a GPU out of memory would).
class SmallStepsOnly final : public experts::ExpertBackend {
 public:
  SmallStepsOnly(experts::ExpertBackend& inner, int64_t max_rows) : inner_(inner), max_rows_(max_rows) {}
  std::string name() const override { return "small"; }
  std::string device() const override { return "test"; }
  int hidden_size() const override { return inner_.hidden_size(); }
  int intermediate_size() const override { return inner_.intermediate_size(); }
  const std::vector<ExpertKey>& hosted() const override { return inner_.hosted(); }
  bool Hosts(const ExpertKey& key) const override { return inner_.Hosts(key); }
  absl::Status Run(absl::Span<const experts::ExpertGroup> groups, absl::Span<const float> in,
                   absl::Span<float> out) override {
    if (static_cast<int64_t>(in.size()) > max_rows_ * hidden_size()) return absl::ResourceExhaustedError("too big");
    return inner_.Run(groups, in, out);
  }

 private:
  experts::ExpertBackend& inner_;
  const int64_t max_rows_;
};

TEST_F(ExpertComputeTest, AFailedMergedStepIsRetriedRequestByRequest) {
  SmallStepsOnly small(*backend_, 4);
  std::vector<DecodedExpertRequest> decoded;
  for (auto [rows, seed] : {std::pair{3, 7}, std::pair{2, 8}, std::pair{5, 9}}) {
    ASSERT_OK_AND_ASSIGN(DecodedExpertRequest d,
                         DecodeExpertRequest(small, 1000, MakeRequest(0, {{1, rows}}, seed, DType::kF32)));
    decoded.push_back(std::move(d));
  }
  std::vector<DecodedExpertRequest*> batch = {&decoded[0], &decoded[1], &decoded[2]};
  const std::vector<absl::Status> statuses = RunExpertBatchOrEach(small, batch);  // 10 rows: too big merged
  ASSERT_EQ(statuses.size(), 3u);
  EXPECT_OK(statuses[0]);
  EXPECT_OK(statuses[1]);
  EXPECT_THAT(statuses[2], testing::StatusIs(absl::StatusCode::kResourceExhausted, "too big"));  // 5 rows alone
  for (int i : {0, 1}) {
    DecodedExpertRequest* one = &decoded[i];
    std::vector<float> got = decoded[i].out;
    ASSERT_OK(RunExpertBatch(*backend_, absl::MakeConstSpan(&one, 1)));
    EXPECT_EQ(got, decoded[i].out) << i;
  }
}

}  // namespace
}  // namespace moe::server
