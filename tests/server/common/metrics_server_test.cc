// tests/server/common/metrics_server_test.cc
// The metrics endpoint answers real HTTP requests — also after the CUDA plugin was loaded into
// the process, which once made civetweb's threads overflow their stacks (cuda_plugin_api.h).
#include "server/common/metrics_server.h"

#include <string>

#include "experts/factory/backend_factory.h"
#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "tests/testing/http_get.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

using ::moe::testing::HttpGet;

TEST(MetricsServerTest, ServesTheRegistryAfterTheCudaPluginIsLoaded) {
  // Loads libmoe_cuda.so (and the CUDA runtime) where this build has it; fails harmlessly without a GPU.
  const absl::StatusOr<std::string> device = experts::CudaDevice(0);
  auto registry = std::make_shared<prometheus::Registry>();
  prometheus::BuildCounter().Name("moe_test_events_total").Help("test").Register(*registry).Add({}).Increment(3);
  ASSERT_OK_AND_ASSIGN(MetricsServer server, StartMetricsServer("127.0.0.1", 0, registry));
  ASSERT_GT(server.port, 0);
  for (int i = 0; i < 3; ++i) {
    const std::string response = HttpGet(server.port, "/metrics");
    EXPECT_NE(response.find("200 OK"), std::string::npos) << response;
    EXPECT_NE(response.find("moe_test_events_total 3"), std::string::npos) << response;
  }
  (void)device;
}

TEST(MetricsServerTest, ABusyPortIsUnavailable) {
  auto registry = std::make_shared<prometheus::Registry>();
  ASSERT_OK_AND_ASSIGN(MetricsServer first, StartMetricsServer("127.0.0.1", 0, registry));
  EXPECT_THAT(StartMetricsServer("127.0.0.1", first.port, registry),
              testing::StatusIs(absl::StatusCode::kUnavailable, "cannot serve metrics"));
  EXPECT_EQ(HostOf("0.0.0.0:50051"), "0.0.0.0");
  EXPECT_EQ(HostOf(":50051"), "0.0.0.0");
}

}  // namespace
}  // namespace moe::server
