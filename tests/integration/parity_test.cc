// tests/integration/parity_test.cc
// A real cluster (router + workers as separate processes on loopback) against the in-process
// MoeLayer: f32 within 1e-5 (in fact bitwise), bf16 within bf16 rounding, replicas identical,
// batches from 1 token to more than gRPC's default 4 MiB message, and many clients at once
// (their requests may be batched together on the workers) each getting its own answer.
#include <memory>
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

class ParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // hidden 256: 4100 tokens of f32 are 4.2 MB, past gRPC's default 4 MiB limit.
    checkpoint_ = new std::string(WriteCheckpoint(SmallConfig(256, 96, 8, 2, 2), DType::kF32, 21));
  }
  static void TearDownTestSuite() { delete checkpoint_; }
  static std::string* checkpoint_;
};
std::string* ParityTest::checkpoint_ = nullptr;

TEST_F(ParityTest, F32MatchesInProcessForEveryBatchSizeAndLayer) {
  ASSERT_OK_AND_ASSIGN(auto cluster, server::LocalCluster::Start(ClusterFor(*checkpoint_, 4)));
  ASSERT_OK_AND_ASSIGN(auto ref, Reference::Load(*checkpoint_));
  auto client = client::MoeClient::Connect(cluster->router_address());
  ASSERT_OK_AND_ASSIGN(bool serving, client->IsServing());
  EXPECT_TRUE(serving);
  for (int64_t n : {1, 7, 256, 4100}) {
    for (int layer = 0; layer < 2; ++layer) {
      const std::vector<float> x = RandomVector(n * 256, 100 * n + layer);
      ASSERT_OK_AND_ASSIGN(client::ForwardResult got,
                           client->Forward(layer, Tensor::FromF32(x, {n, 256}), /*return_routing=*/true));
      router::Routing routing;
      ASSERT_OK_AND_ASSIGN(std::vector<float> expected, ref->Forward(layer, x, n, &routing));
      ASSERT_EQ(got.output.dtype(), DType::kF32);
      ASSERT_EQ(got.output.shape(), (std::vector<int64_t>{n, 256}));
      const std::vector<float> out(got.output.f32().begin(), got.output.f32().end());
      EXPECT_LE(MaxRelError(out, expected), 1e-5) << n << " tokens, layer " << layer;
      ASSERT_EQ(got.experts.size(), static_cast<size_t>(n));
      for (int64_t t = 0; t < n; ++t) {
        const auto chosen = routing.ExpertsOf(t);
        ASSERT_EQ(got.experts[t], std::vector<int>(chosen.begin(), chosen.end())) << "token " << t;
      }
    }
  }
  EXPECT_OK(cluster->Stop());
}

TEST_F(ParityTest, Bf16WireStaysWithinBf16Rounding) {
  ASSERT_OK_AND_ASSIGN(auto cluster, server::LocalCluster::Start(ClusterFor(*checkpoint_, 2)));
  ASSERT_OK_AND_ASSIGN(auto ref, Reference::Load(*checkpoint_));
  auto client = client::MoeClient::Connect(cluster->router_address());
  const int64_t n = 64;
  const Tensor x = Tensor::FromF32(RandomVector(n * 256, 5), {n, 256}).ConvertTo(DType::kBF16);
  ASSERT_OK_AND_ASSIGN(client::ForwardResult got, client->Forward(1, x));
  ASSERT_EQ(got.output.dtype(), DType::kBF16);
  const Tensor in = x.ToF32();
  ASSERT_OK_AND_ASSIGN(std::vector<float> expected,
                       ref->Forward(1, std::vector<float>(in.f32().begin(), in.f32().end()), n));
  const Tensor out = got.output.ToF32();
  const double err = MaxRelError(std::vector<float>(out.f32().begin(), out.f32().end()), expected);
  // Expert outputs and the result are each rounded to bf16 (2^-9 relative): a few roundings.
  EXPECT_LE(err, 4 * 0x1p-9);
  EXPECT_GT(err, 0.0);  // it did go through bf16
}

TEST_F(ParityTest, ReplicasGiveTheSameResult) {
  ASSERT_OK_AND_ASSIGN(auto single, server::LocalCluster::Start(ClusterFor(*checkpoint_, 2)));
  ASSERT_OK_AND_ASSIGN(auto replicated, server::LocalCluster::Start(ClusterFor(*checkpoint_, 2, 2)));
  ASSERT_EQ(replicated->num_workers(), 4);
  auto a = client::MoeClient::Connect(single->router_address());
  auto b = client::MoeClient::Connect(replicated->router_address());
  ASSERT_OK_AND_ASSIGN(auto info, b->GetModelInfo());
  for (const auto& placement : info.placement()) EXPECT_EQ(placement.workers_size(), 2);
  const int64_t n = 300;
  const Tensor x = Tensor::FromF32(RandomVector(n * 256, 8), {n, 256});
  ASSERT_OK_AND_ASSIGN(client::ForwardResult ra, a->Forward(0, x));
  for (int i = 0; i < 3; ++i) {  // several calls spread over the replicas
    ASSERT_OK_AND_ASSIGN(client::ForwardResult rb, b->Forward(0, x));
    ASSERT_EQ(0, std::memcmp(ra.output.raw_data(), rb.output.raw_data(), ra.output.num_bytes()));
  }
}

// Concurrent Forwards may be batched twice: in the router (same layer and dtype) and in the
// workers (or, with no workers, on the router's own backend). Each must still get its own rows,
// its own routing, in its own dtype.
void ExpectConcurrentClientsGetTheirOwnAnswers(const std::string& checkpoint, int workers) {
  ASSERT_OK_AND_ASSIGN(auto cluster, server::LocalCluster::Start(ClusterFor(checkpoint, workers)));
  ASSERT_OK_AND_ASSIGN(auto ref, Reference::Load(checkpoint));
  auto client = client::MoeClient::Connect(cluster->router_address());
  constexpr int kClients = 12;
  constexpr int kRounds = 4;
  std::vector<std::vector<float>> inputs;
  std::vector<int64_t> tokens;
  for (int c = 0; c < kClients * kRounds; ++c) {
    tokens.push_back(1 + c % 5);
    inputs.push_back(RandomVector(tokens.back() * 256, 5000 + c));
  }
  auto bf16 = [](size_t i) { return i % 4 == 1; };
  auto with_routing = [](size_t i) { return i % 3 == 0; };
  std::vector<absl::StatusOr<client::ForwardResult>> got(inputs.size(), absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      for (int r = 0; r < kRounds; ++r) {
        const size_t i = r * kClients + c;
        Tensor x = Tensor::FromF32(inputs[i], {tokens[i], 256});
        if (bf16(i)) x = x.ConvertTo(DType::kBF16);
        got[i] = client->Forward(i % 2, x, with_routing(i));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (size_t i = 0; i < inputs.size(); ++i) {
    ASSERT_OK(got[i].status()) << "request " << i;
    std::vector<float> x = inputs[i];
    if (bf16(i)) {  // the reference sees what the router saw
      const Tensor rounded = Tensor::FromF32(x, {tokens[i], 256}).ConvertTo(DType::kBF16).ToF32();
      x.assign(rounded.f32().begin(), rounded.f32().end());
    }
    router::Routing routing;
    ASSERT_OK_AND_ASSIGN(std::vector<float> expected, ref->Forward(i % 2, x, tokens[i], &routing));
    ASSERT_EQ(got[i]->output.dtype(), bf16(i) ? DType::kBF16 : DType::kF32) << "request " << i;
    const Tensor out32 = got[i]->output.ToF32();
    const std::vector<float> out(out32.f32().begin(), out32.f32().end());
    EXPECT_LE(MaxRelError(out, expected), bf16(i) ? 1e-2 : 1e-5) << "request " << i;
    ASSERT_EQ(got[i]->experts.size(), with_routing(i) ? static_cast<size_t>(tokens[i]) : 0u) << "request " << i;
    for (size_t t = 0; t < got[i]->experts.size(); ++t) {
      const auto chosen = routing.ExpertsOf(t);
      EXPECT_EQ(got[i]->experts[t], std::vector<int>(chosen.begin(), chosen.end())) << i << "/" << t;
    }
  }
  EXPECT_OK(cluster->Stop());
}

TEST_F(ParityTest, ConcurrentClientsEachGetTheirOwnAnswerNetworked) {
  ExpectConcurrentClientsGetTheirOwnAnswers(*checkpoint_, 2);
}

TEST_F(ParityTest, ConcurrentClientsEachGetTheirOwnAnswerLocal) {
  ExpectConcurrentClientsGetTheirOwnAnswers(*checkpoint_, 0);
}

}  // namespace
}  // namespace moe::testing
