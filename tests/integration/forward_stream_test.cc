// tests/integration/forward_stream_test.cc
// MoeService.ForwardStream with real processes: a sequence of steps on one stream (layers and
// dtypes mixed, as a decoder would send them) answers each exactly as a unary Forward does — f32
// bit-identical to the in-process path — in order; a bad step ends the stream with its own status
// while the router keeps serving; a half-close ends it OK; concurrent streams each get their own
// answers.
#include <thread>
#include <vector>

#include "client/moe_client.h"
#include "gtest/gtest.h"
#include "server/cluster/local_cluster.h"
#include "tests/testing/cluster_env.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::testing {
namespace {

using model::DType;
using model::Tensor;
constexpr int kHidden = 64;

class ForwardStreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new std::string(WriteCheckpoint(SmallConfig(kHidden, 48, 8, 2, 3), DType::kF32, 21));
    auto started = server::LocalCluster::Start(ClusterFor(*checkpoint_, 2));
    ASSERT_OK(started.status());
    cluster_ = started->release();
    auto ref = Reference::Load(*checkpoint_);
    ASSERT_OK(ref.status());
    ref_ = ref->release();
  }
  static void TearDownTestSuite() {
    delete ref_;
    delete cluster_;
    delete checkpoint_;
  }
  static std::string* checkpoint_;
  static server::LocalCluster* cluster_;
  static Reference* ref_;
};
std::string* ForwardStreamTest::checkpoint_ = nullptr;
server::LocalCluster* ForwardStreamTest::cluster_ = nullptr;
Reference* ForwardStreamTest::ref_ = nullptr;

std::vector<float> F32(const client::ForwardResult& r) { return {r.output.f32().begin(), r.output.f32().end()}; }

TEST_F(ForwardStreamTest, StepsAreAnsweredInOrderAsUnaryForwardsAre) {
  auto client = client::MoeClient::Connect(cluster_->router_address());
  auto stream = client->OpenStream();
  for (int step = 0; step < 9; ++step) {
    const int layer = step % 3;
    const int64_t n = 1 + step;
    const std::vector<float> x = RandomVector(n * kHidden, 100 + step);
    router::Routing routing;
    ASSERT_OK_AND_ASSIGN(std::vector<float> expected, ref_->Forward(layer, x, n, &routing));
    ASSERT_OK_AND_ASSIGN(client::ForwardResult got, stream->Forward(layer, Tensor::FromF32(x, {n, kHidden}), true));
    EXPECT_EQ(F32(got), expected) << "step " << step;  // alone on the stream: same sum order
    ASSERT_EQ(got.experts.size(), static_cast<size_t>(n));
    EXPECT_EQ(got.experts[0], std::vector<int>(routing.ExpertsOf(0).begin(), routing.ExpertsOf(0).end()));
    if (step == 4) {  // a bf16 step in between
      ASSERT_OK_AND_ASSIGN(client::ForwardResult half,
                           stream->Forward(layer, Tensor::FromF32(x, {n, kHidden}).ConvertTo(DType::kBF16)));
      EXPECT_EQ(half.output.dtype(), DType::kBF16);
      EXPECT_LE(MaxRelError(F32({.output = half.output.ToF32()}), expected), 2e-2);
    }
  }
  EXPECT_OK(stream->Close());
}

TEST_F(ForwardStreamTest, ABadStepEndsTheStreamWithItsStatusAndNothingElse) {
  auto client = client::MoeClient::Connect(cluster_->router_address());
  auto stream = client->OpenStream();
  const std::vector<float> x = RandomVector(2 * kHidden, 7);
  ASSERT_OK(stream->Forward(0, Tensor::FromF32(x, {2, kHidden})).status());
  EXPECT_THAT(stream->Forward(9, Tensor::FromF32(x, {2, kHidden})),
              StatusIs(absl::StatusCode::kNotFound, "layer 9 not found"));
  EXPECT_THAT(stream->Forward(0, Tensor::FromF32(x, {2, kHidden})), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_THAT(stream->Close(), StatusIs(absl::StatusCode::kNotFound, ""));
  auto fresh = client->OpenStream();  // the router serves on
  EXPECT_OK(fresh->Forward(1, Tensor::FromF32(x, {2, kHidden})).status());
  EXPECT_OK(fresh->Close());
  EXPECT_OK(client->Forward(1, Tensor::FromF32(x, {2, kHidden})).status());
}

TEST_F(ForwardStreamTest, ConcurrentStreamsEachGetTheirOwnAnswers) {
  auto client = client::MoeClient::Connect(cluster_->router_address());
  constexpr int kStreams = 6, kSteps = 10;
  std::vector<int> wrong(kStreams, 0), failed(kStreams, 0);
  std::vector<std::thread> threads;
  for (int s = 0; s < kStreams; ++s) {
    threads.emplace_back([&, s] {
      auto stream = client->OpenStream();
      for (int step = 0; step < kSteps; ++step) {
        const std::vector<float> x = RandomVector(3 * kHidden, 1000 * s + step);
        auto expected = ref_->Forward(step % 3, x, 3);
        auto got = stream->Forward(step % 3, Tensor::FromF32(x, {3, kHidden}));
        if (!got.ok() || !expected.ok()) {
          ++failed[s];
          continue;
        }
        if (!(MaxRelError(F32(*got), *expected) <= 1e-5)) ++wrong[s];  // batched with others: f32 rounding
      }
      if (!stream->Close().ok()) ++failed[s];
    });
  }
  for (std::thread& t : threads) t.join();
  for (int s = 0; s < kStreams; ++s) {
    EXPECT_EQ(failed[s], 0) << "stream " << s;
    EXPECT_EQ(wrong[s], 0) << "stream " << s;
  }
}

}  // namespace
}  // namespace moe::testing
