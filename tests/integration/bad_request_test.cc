// tests/integration/bad_request_test.cc
// Every malformed request kind gets its status code from a real router and worker, and nothing
// is lost: the servers keep answering valid requests afterwards.
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/moe_client.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "proto/channel.h"
#include "proto/status_convert.h"
#include "proto/tensor_codec.h"
#include "server/cluster/local_cluster.h"
#include "tests/testing/cluster_env.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::testing {
namespace {

using model::DType;
using model::Tensor;
using ::absl::StatusCode;

constexpr int kHidden = 64;
constexpr int kMaxTokens = 64;

class BadRequestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new std::string(WriteCheckpoint(SmallConfig(kHidden, 32, 4, 2, 2), DType::kBF16, 9));
    server::ClusterOptions options = ClusterFor(*checkpoint_, 2);
    options.router_flags = {absl::StrCat("--max_tokens=", kMaxTokens)};
    options.worker_flags.push_back("--max_rows=100");
    auto started = server::LocalCluster::Start(options);
    ASSERT_TRUE(started.ok()) << started.status();
    cluster_ = started->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    delete checkpoint_;
  }
  void SetUp() override { client_ = client::MoeClient::Connect(cluster_->router_address()); }

  moe::v1::ForwardRequest Valid(int64_t tokens = 3) {
    moe::v1::ForwardRequest r;
    r.set_layer(1);
    proto::EncodeTensor(Tensor::FromF32(RandomVector(tokens * kHidden, tokens), {tokens, kHidden}),
                        r.mutable_hidden_states());
    return r;
  }
  absl::Status Send(const moe::v1::ForwardRequest& r) {
    moe::v1::ForwardResponse response;
    return client_->ForwardRaw(r, &response);
  }
  void TearDown() override { EXPECT_OK(Send(Valid())) << "the router stopped serving valid requests"; }

  static std::string* checkpoint_;
  static server::LocalCluster* cluster_;
  std::unique_ptr<client::MoeClient> client_;
};
std::string* BadRequestTest::checkpoint_ = nullptr;
server::LocalCluster* BadRequestTest::cluster_ = nullptr;

TEST_F(BadRequestTest, ValidRequestWorksInEveryDtype) {
  for (DType d : {DType::kF32, DType::kBF16, DType::kF16}) {
    ASSERT_OK_AND_ASSIGN(auto r, client_->Forward(0, Tensor::FromF32(RandomVector(5 * kHidden, 1), {5, kHidden}).ConvertTo(d)));
    EXPECT_EQ(r.output.dtype(), d);
  }
}

TEST_F(BadRequestTest, WrongDtype) {
  auto r = Valid();
  r.mutable_hidden_states()->set_dtype(moe::v1::DTYPE_UNSPECIFIED);
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "hidden_states.dtype is 0; expected DTYPE_F32"));
  r.mutable_hidden_states()->set_dtype(static_cast<moe::v1::DType>(42));
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "hidden_states.dtype is 42"));
}

TEST_F(BadRequestTest, ShapeOfWrongRank) {
  auto r = Valid();
  r.mutable_hidden_states()->clear_shape();
  r.mutable_hidden_states()->add_shape(3 * kHidden);
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "expected rank 2: [tokens, 64]"));
  r.mutable_hidden_states()->clear_shape();
  for (int64_t d : {1, 3, kHidden}) r.mutable_hidden_states()->add_shape(d);
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "expected rank 2"));
}

TEST_F(BadRequestTest, WrongHiddenSize) {
  moe::v1::ForwardRequest r;
  proto::EncodeTensor(Tensor::FromF32(RandomVector(2 * 63, 3), {2, 63}), r.mutable_hidden_states());
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "hidden_states.shape[1] is 63; expected the hidden size 64"));
}

TEST_F(BadRequestTest, ByteCountDisagreesWithShape) {
  auto r = Valid();
  r.mutable_hidden_states()->mutable_data()->resize(3 * kHidden * 4 - 1);
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "hidden_states.data has 767 bytes; expected 768"));
}

TEST_F(BadRequestTest, NegativeDimension) {
  auto r = Valid();
  r.mutable_hidden_states()->set_shape(0, -3);
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "hidden_states.shape[0] is -3"));
}

TEST_F(BadRequestTest, EmptyBatchAndMissingTensor) {
  auto r = Valid();
  r.mutable_hidden_states()->set_shape(0, 0);
  r.mutable_hidden_states()->clear_data();
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "expected at least 1 token"));
  r.clear_hidden_states();
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "hidden_states is missing"));
}

TEST_F(BadRequestTest, UnknownLayerAndModel) {
  auto r = Valid();
  r.set_layer(2);
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kNotFound, "layer 2 not found"));
  r.set_layer(-1);
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kNotFound, "layer -1 not found"));
  r = Valid();
  r.set_model("llama");
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kNotFound, "model 'llama' not found"));
  // A 20 KB name is quoted shortened: the caller sees NOT_FOUND, not a metadata-size error.
  r.set_model(std::string(20000, 'm'));
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kNotFound, "... (20000 bytes)' not found"));
}

TEST_F(BadRequestTest, FiniteInputsThatOverflowAreRefusedNotAnsweredWithInf) {
  std::vector<float> x = RandomVector(3 * kHidden, 8);
  for (float& v : x) v *= 1e20f;
  moe::v1::ForwardRequest r;
  r.set_layer(1);
  proto::EncodeTensor(Tensor::FromF32(x, {3, kHidden}), r.mutable_hidden_states());
  EXPECT_THAT(Send(r), StatusIs(StatusCode::kOutOfRange, "overflow f32 arithmetic"));
}

TEST_F(BadRequestTest, NanAndInfAreRefused) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    std::vector<float> x = RandomVector(3 * kHidden, 5);
    x[kHidden + 3] = bad;
    moe::v1::ForwardRequest r;
    proto::EncodeTensor(Tensor::FromF32(x, {3, kHidden}), r.mutable_hidden_states());
    EXPECT_THAT(Send(r), StatusIs(StatusCode::kInvalidArgument, "at token 1, column 3"));
  }
}

TEST_F(BadRequestTest, TooManyTokensAndTooLargeMessages) {
  EXPECT_THAT(Send(Valid(kMaxTokens + 1)), StatusIs(StatusCode::kResourceExhausted, "the limit is 64"));
  // Past the router's receive limit (max_tokens · hidden · 4 + 1 MiB): refused by gRPC itself.
  EXPECT_THAT(Send(Valid(6000)), StatusIs(StatusCode::kResourceExhausted, ""));
  EXPECT_OK(Send(Valid(kMaxTokens)));
}

// `bytes` sent as the request of `method` at `address` with a generic stub, as a broken client
// would send them.
absl::Status SendBytes(const std::string& address, const std::string& method, const std::string& bytes) {
  auto channel = proto::MakeChannel(address, 64 << 20);
  grpc::GenericStub stub(channel);
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  absl::Notification done;
  grpc::Status status;
  stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
    status = std::move(s);
    done.Notify();
  });
  done.WaitForNotification();
  return proto::FromGrpcStatus(status);
}

// Bytes that are not a ForwardRequest at all: INVALID_ARGUMENT saying so, not a bare code from
// gRPC.
TEST_F(BadRequestTest, BytesThatDoNotParseAreInvalidArgument) {
  auto send = [&](const std::string& bytes) {
    return SendBytes(cluster_->router_address(), "/moe.v1.MoeService/Forward", bytes);
  };
  // Field 3 (hidden_states) as length-delimited with a length past the end; then a wire type 7.
  EXPECT_THAT(send(std::string("\x1a\xff\x01\x00", 4)),
              StatusIs(StatusCode::kInvalidArgument, "(4 bytes) does not parse as moe.v1.ForwardRequest"));
  EXPECT_THAT(send(std::string("\x0f\x01", 2)), StatusIs(StatusCode::kInvalidArgument, "does not parse"));
  // The empty message parses (every field default): it is then refused for what it lacks.
  EXPECT_THAT(send(""), StatusIs(StatusCode::kInvalidArgument, "hidden_states is missing"));
  // A valid request through the same generic path is answered.
  std::string valid;
  ASSERT_TRUE(Valid().SerializeToString(&valid));
  EXPECT_OK(send(valid));
}

// The worker's Forward too (it answered UNIMPLEMENTED before it parsed its own bytes: found by an
// independent check, issue 29).
TEST_F(BadRequestTest, BytesThatDoNotParseAreInvalidArgumentAtTheWorker) {
  const std::string worker = cluster_->worker_addresses()[0];
  EXPECT_THAT(SendBytes(worker, "/moe.v1.ExpertService/Forward", std::string("\x1a\xff\x01\x00", 4)),
              StatusIs(StatusCode::kInvalidArgument, "(4 bytes) does not parse as moe.v1.ExpertRequest"));
  EXPECT_THAT(SendBytes(worker, "/moe.v1.ExpertService/Forward", std::string("\x0f\x01", 2)),
              StatusIs(StatusCode::kInvalidArgument, "does not parse"));
  moe::v1::ExpertRequest r;
  r.set_layer(0);
  proto::EncodeTensor(Tensor::FromF32(RandomVector(2 * kHidden, 8), {2, kHidden}), r.mutable_tokens());
  auto* g = r.add_groups();
  g->set_expert(1);
  g->set_num_rows(2);
  std::string valid;
  ASSERT_TRUE(r.SerializeToString(&valid));
  EXPECT_OK(SendBytes(worker, "/moe.v1.ExpertService/Forward", valid));
}

TEST_F(BadRequestTest, WorkerRefusesMalformedExpertRequests) {
  auto channel = proto::MakeChannel(cluster_->worker_addresses()[0], 64 << 20);
  auto stub = moe::v1::ExpertService::NewStub(channel);
  auto call = [&](const moe::v1::ExpertRequest& request) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    moe::v1::ExpertResponse response;
    return proto::FromGrpcStatus(stub->Forward(&ctx, request, &response));
  };
  moe::v1::ExpertRequest r;
  r.set_layer(0);
  proto::EncodeTensor(Tensor::FromF32(RandomVector(4 * kHidden, 6), {4, kHidden}), r.mutable_tokens());
  auto* g = r.add_groups();
  g->set_expert(1);
  g->set_num_rows(4);
  EXPECT_OK(call(r));
  g->set_num_rows(3);
  EXPECT_THAT(call(r), StatusIs(StatusCode::kInvalidArgument, "groups cover 3 rows; expected all 4"));
  g->set_num_rows(5);
  EXPECT_THAT(call(r), StatusIs(StatusCode::kInvalidArgument, "asks for 5 rows but only 4 remain"));
  g->set_num_rows(4);
  g->set_expert(3);  // worker 0 hosts experts 0-1
  EXPECT_THAT(call(r), StatusIs(StatusCode::kNotFound, "expert 3 of layer 0 is not hosted"));
  g->set_expert(1);
  r.set_layer(7);
  EXPECT_THAT(call(r), StatusIs(StatusCode::kNotFound, "expert 1 of layer 7 is not hosted"));
  r.set_layer(0);
  proto::EncodeTensor(Tensor::FromF32(RandomVector(101 * kHidden, 7), {101, kHidden}), r.mutable_tokens());
  g->set_num_rows(101);
  EXPECT_THAT(call(r), StatusIs(StatusCode::kResourceExhausted, "at most 100"));
  // NaN tokens are refused by a worker called directly, and tokens that overflow are not
  // answered with Inf.
  std::vector<float> tokens = RandomVector(4 * kHidden, 9);
  tokens[2 * kHidden + 5] = std::numeric_limits<float>::quiet_NaN();
  proto::EncodeTensor(Tensor::FromF32(tokens, {4, kHidden}), r.mutable_tokens());
  g->set_num_rows(4);
  EXPECT_THAT(call(r), StatusIs(StatusCode::kInvalidArgument, "tokens holds nan at row 2, column 5"));
  tokens[2 * kHidden + 5] = 1.0f;
  for (float& v : tokens) v *= 1e20f;
  proto::EncodeTensor(Tensor::FromF32(tokens, {4, kHidden}), r.mutable_tokens());
  EXPECT_THAT(call(r), StatusIs(StatusCode::kOutOfRange, "overflow f32 arithmetic"));
}

}  // namespace
}  // namespace moe::testing
