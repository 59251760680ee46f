// tests/integration/cuda_cluster_test.cc
// moe-expert --backend=cuda: without a usable GPU it must refuse to start with a clear message;
// with one, a cluster of CUDA workers must match the in-process CPU path (bf16 tolerance), with
// either way of issuing the GEMMs (--cuda_gemm).
#include <signal.h>

#include "absl/strings/str_cat.h"
#include "client/moe_client.h"
#include "experts/factory/backend_factory.h"
#include "gtest/gtest.h"
#include "server/cluster/local_cluster.h"
#include "tests/testing/cluster_env.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::testing {
namespace {

TEST(CudaClusterTest, WorkerWithoutAGpuRefusesToStart) {
  if (experts::CudaDevice(0).ok()) GTEST_SKIP() << "a GPU is present: the refusal cannot be shown here";
  const std::string ckpt = WriteCheckpoint(SmallConfig(32, 16, 4, 2, 1), model::DType::kBF16, 1);
  EXPECT_THAT(server::SpawnServer({BinDir() + "/moe-expert", "--checkpoint=" + ckpt, "--backend=cuda",
                                   "--listen=127.0.0.1:0", "--metrics_port=-1"},
                                  absl::Seconds(60)),
              StatusIs(absl::StatusCode::kUnavailable, "moe-expert exited with code 1"));
}

TEST(CudaClusterTest, WorkerRefusesAnUnknownGemmMode) {
  const std::string ckpt = WriteCheckpoint(SmallConfig(32, 16, 4, 2, 1), model::DType::kBF16, 1);
  EXPECT_THAT(server::SpawnServer({BinDir() + "/moe-expert", "--checkpoint=" + ckpt, "--cuda_gemm=fastest",
                                   "--listen=127.0.0.1:0", "--metrics_port=-1"},
                                  absl::Seconds(60)),
              StatusIs(absl::StatusCode::kUnavailable, "moe-expert exited with code 2"));
}

class CudaWorkersTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaWorkersTest, MatchTheInProcessCpuPath) {
  absl::StatusOr<std::string> device = experts::CudaDevice(0);
  if (!device.ok()) GTEST_SKIP() << "no usable GPU: " << device.status().message();
  const std::string ckpt = WriteCheckpoint(SmallConfig(256, 512, 8, 2, 2), model::DType::kBF16, 2);
  server::ClusterOptions options = ClusterFor(ckpt, 2);
  options.worker_flags.push_back("--backend=cuda");
  options.worker_flags.push_back("--cuda_gemm=" + GetParam());
  ASSERT_OK_AND_ASSIGN(auto cluster, server::LocalCluster::Start(options));
  ASSERT_OK_AND_ASSIGN(auto ref, Reference::Load(ckpt));
  auto client = client::MoeClient::Connect(cluster->router_address());
  for (int64_t n : {1, 64, 700}) {
    const std::vector<float> x = RandomVector(n * 256, 7 + n);
    ASSERT_OK_AND_ASSIGN(client::ForwardResult got, client->Forward(1, model::Tensor::FromF32(x, {n, 256})));
    ASSERT_OK_AND_ASSIGN(std::vector<float> want, ref->Forward(1, x, n));
    EXPECT_LE(MaxRelError(std::vector<float>(got.output.f32().begin(), got.output.f32().end()), want), 1e-2) << n;
  }
  EXPECT_OK(cluster->Stop());
}

INSTANTIATE_TEST_SUITE_P(Gemms, CudaWorkersTest, ::testing::Values("back_to_back", "grouped"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace moe::testing
