// tests/server/common/server_runtime_test.cc
// The health mirror: a plaintext port with only grpc.health.v1 that follows what SetReady sets on
// the main server (for probes that cannot speak TLS), and refuses to start twice.
#include "server/common/server_runtime.h"

#include "absl/strings/str_cat.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "moe/v1/moe.grpc.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

grpc::health::v1::HealthCheckResponse::ServingStatus Check(int port, const std::string& service) {
  auto stub = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return response.status();
}

TEST(HealthMirrorTest, FollowsTheMainServersReadiness) {
  int port = 0, health_port = 0;
  moe::v1::ExpertService::CallbackService unimplemented;  // any service: the main server needs one
  ASSERT_OK_AND_ASSIGN(auto server, StartServer({&unimplemented}, {.listen = "127.0.0.1:0"}, &port));
  ASSERT_OK(StartHealthMirror("127.0.0.1:0", &health_port));
  ASSERT_GT(health_port, 0);
  EXPECT_NE(health_port, port);
  using Status = grpc::health::v1::HealthCheckResponse;
  EXPECT_EQ(Check(health_port, ""), Status::NOT_SERVING);  // loading
  EXPECT_EQ(Check(health_port, "liveness"), Status::SERVING);
  SetReady(*server, {"moe.v1.ExpertService"}, true);
  EXPECT_EQ(Check(health_port, ""), Status::SERVING);
  EXPECT_EQ(Check(health_port, "moe.v1.ExpertService"), Status::SERVING);
  EXPECT_EQ(Check(port, "moe.v1.ExpertService"), Status::SERVING);
  SetReady(*server, {"moe.v1.ExpertService"}, false);
  EXPECT_EQ(Check(health_port, "moe.v1.ExpertService"), Status::NOT_SERVING);
  int again = 0;
  EXPECT_THAT(StartHealthMirror("127.0.0.1:0", &again), testing::StatusIs(absl::StatusCode::kFailedPrecondition, "already running"));
  server->Shutdown();
}

}  // namespace
}  // namespace moe::server
