// tests/server/worker/expert_service_live_test.cc
// ExpertServiceImpl's live placement, in process so that a call can be held inside the backend:
// UnloadExperts of an expert a Forward is computing on answers only after that Forward has been
// answered — and that Forward succeeds, on the weights it started with — while new Forwards see
// the expert gone at once. Also a batch spanning a placement change: each request runs on the
// backend it was decoded against.
#include <atomic>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "base/status_macros.h"
#include "experts/cpu/cpu_backend.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/status_convert.h"
#include "proto/tensor_codec.h"
#include "server/worker/expert_service.h"
#include "tests/testing/random_data.h"
#include "tests/testing/status_matchers.h"

namespace moe::server {
namespace {

using ::absl::StatusCode;
using ::moe::testing::StatusIs;
using experts::ExpertKey;

constexpr int kHidden = 32, kInter = 64;
constexpr char kToken[] = "token";

// Holds every Run while `hold` is set, until the test opens the gate.
struct Gate {
  absl::Mutex mu;
  bool hold = false;
  bool open = false;
  int entered = 0;
};

class GatedBackend : public experts::ExpertBackend {
 public:
  GatedBackend(std::shared_ptr<experts::ExpertBackend> inner, std::shared_ptr<Gate> gate)
      : inner_(std::move(inner)), gate_(std::move(gate)) {}
  std::string name() const override { return inner_->name(); }
  std::string device() const override { return inner_->device(); }
  experts::ResidentWeights resident() const override { return inner_->resident(); }
  int hidden_size() const override { return inner_->hidden_size(); }
  int intermediate_size() const override { return inner_->intermediate_size(); }
  const std::vector<ExpertKey>& hosted() const override { return inner_->hosted(); }
  bool Hosts(const ExpertKey& key) const override { return inner_->Hosts(key); }
  absl::Status Run(absl::Span<const experts::ExpertGroup> groups, absl::Span<const float> in,
                   absl::Span<float> out) override {
    {
      absl::MutexLock lock(&gate_->mu);
      ++gate_->entered;
      if (gate_->hold) gate_->mu.Await(absl::Condition(&gate_->open));
    }
    return inner_->Run(groups, in, out);
  }
  absl::StatusOr<std::unique_ptr<experts::ExpertBackend>> Rebuild(absl::Span<const experts::ExpertWeights> add,
                                                                  absl::Span<const ExpertKey> remove) const override {
    ASSIGN_OR_RETURN(std::unique_ptr<experts::ExpertBackend> rebuilt, inner_->Rebuild(add, remove));
    return std::unique_ptr<experts::ExpertBackend>(new GatedBackend(std::move(rebuilt), gate_));
  }

 private:
  std::shared_ptr<experts::ExpertBackend> inner_;
  std::shared_ptr<Gate> gate_;
};

experts::ExpertWeights Weights(ExpertKey key) { return testing::RandomExpert(key, kHidden, kInter, 100 + key.expert); }

class ExpertServiceLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    token_file_ = testing::MakeTempDir("live") + "/token";
    FILE* f = std::fopen(token_file_.c_str(), "w");
    std::fputs(kToken, f);
    std::fclose(f);
    ASSERT_OK_AND_ASSIGN(admin_, TokenAuth::FromFile(token_file_));
    gate_ = std::make_shared<Gate>();
    service_ = std::make_unique<ExpertServiceImpl>(ExpertServiceOptions{.inline_when_idle = false});
    service_->EnableLivePlacement(
        {.change =
             [this](const experts::ExpertBackend* current, absl::Span<const ExpertKey> add,
                    absl::Span<const ExpertKey> remove,
                    int64_t, int64_t*) -> absl::StatusOr<std::shared_ptr<experts::ExpertBackend>> {
               std::vector<experts::ExpertWeights> weights;
               for (const ExpertKey& k : add) weights.push_back(Weights(k));
               ASSIGN_OR_RETURN(std::unique_ptr<experts::ExpertBackend> next, current->Rebuild(weights, remove));
               return std::shared_ptr<experts::ExpertBackend>(std::move(next));
             },
         .admin = admin_.get()});
    ASSERT_OK_AND_ASSIGN(auto cpu, experts::CpuExpertBackend::FromWeights({Weights({0, 0}), Weights({0, 1})}, {.threads = 1}));
    reference_ = std::shared_ptr<experts::ExpertBackend>(std::move(cpu));
    moe::v1::GetWorkerInfoResponse info;
    info.set_num_layers(1);
    info.set_num_experts(4);
    service_->SetBackend(std::make_shared<GatedBackend>(reference_, gate_), info);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = moe::v1::ExpertService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    {
      absl::MutexLock lock(&gate_->mu);
      gate_->open = true;
    }
    server_->Shutdown();
  }

  moe::v1::ExpertRequest Request(ExpertKey key) {
    moe::v1::ExpertRequest r;
    r.set_layer(key.layer);
    moe::v1::ExpertGroup* g = r.add_groups();
    g->set_expert(key.expert);
    g->set_num_rows(2);
    proto::EncodeTensor(model::Tensor::FromF32(input_, {2, kHidden}), r.mutable_tokens());
    return r;
  }
  absl::StatusOr<std::vector<float>> Forward(ExpertKey key) {
    grpc::ClientContext context;
    moe::v1::ExpertResponse response;
    RETURN_IF_ERROR(proto::FromGrpcStatus(stub_->Forward(&context, Request(key), &response)));
    ASSIGN_OR_RETURN(const model::Tensor out, proto::ViewTensor(response.outputs(), "outputs"));
    return std::vector<float>(out.f32().begin(), out.f32().end());
  }
  std::vector<float> Expected(ExpertKey key) {
    std::vector<float> out(input_.size());
    const experts::ExpertGroup g{key, 0, 2};
    EXPECT_OK(reference_->Run({&g, 1}, input_, absl::MakeSpan(out)));
    return out;
  }
  absl::Status Unload(ExpertKey key) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", std::string("Bearer ") + kToken);
    moe::v1::UnloadExpertsRequest request;
    moe::v1::HostedExpert* e = request.add_experts();
    e->set_layer(key.layer);
    e->set_expert(key.expert);
    moe::v1::PlacementChangeResponse response;
    return proto::FromGrpcStatus(stub_->UnloadExperts(&context, request, &response));
  }
  int64_t Generation() {
    grpc::ClientContext context;
    moe::v1::GetWorkerInfoResponse info;
    EXPECT_TRUE(stub_->GetWorkerInfo(&context, {}, &info).ok());
    return info.placement_generation();
  }

  std::string token_file_;
  std::unique_ptr<TokenAuth> admin_;
  std::shared_ptr<Gate> gate_;
  std::shared_ptr<experts::ExpertBackend> reference_;
  std::unique_ptr<ExpertServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<moe::v1::ExpertService::Stub> stub_;
  const std::vector<float> input_ = testing::RandomVector(2 * kHidden, 3);
};

TEST_F(ExpertServiceLiveTest, UnloadAnswersAfterTheCallsInFlightOnTheExpert) {
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->hold = true;
  }
  absl::StatusOr<std::vector<float>> held;
  std::thread forward([&] {
    held = Forward({0, 1});
  });
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->mu.Await(absl::Condition(+[](Gate* g) ABSL_NO_THREAD_SAFETY_ANALYSIS { return g->entered == 1; }, gate_.get()));
  }
  absl::Status unloaded;
  absl::Notification unload_returned;
  std::thread unload([&] {
    unloaded = Unload({0, 1});
    unload_returned.Notify();
  });
  // The change is published (new calls no longer find the expert) while the held call computes,
  // and UnloadExperts has not answered (a round trip after the publication gives an Unload that
  // did not wait the time to answer; one that waits cannot have answered yet).
  while (Generation() != 1) {
  }
  EXPECT_THAT(Forward({0, 1}).status(), StatusIs(StatusCode::kNotFound, "not hosted"));
  EXPECT_FALSE(unload_returned.HasBeenNotified()) << "UnloadExperts answered with a call still computing on the expert";
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->open = true;
  }
  forward.join();
  unload.join();
  EXPECT_OK(unloaded);
  ASSERT_OK(held.status());
  EXPECT_EQ(*held, Expected({0, 1}));  // the weights it started with
  ASSERT_OK_AND_ASSIGN(const std::vector<float> kept, Forward({0, 0}));
  EXPECT_EQ(kept, Expected({0, 0}));
}

TEST_F(ExpertServiceLiveTest, QueuedCallsRunOnTheBackendTheyWereDecodedAgainst) {
  // One call holds the compute thread; two more queue behind it, one on either side of a load.
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->hold = true;
  }
  absl::StatusOr<std::vector<float>> first, before, after;
  std::thread t1([&] { first = Forward({0, 0}); });
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->mu.Await(absl::Condition(+[](Gate* g) ABSL_NO_THREAD_SAFETY_ANALYSIS { return g->entered == 1; }, gate_.get()));
  }
  std::thread t2([&] { before = Forward({0, 1}); });
  while (service_->queue_depth() < 1) {  // decoded against the backend before the load
  }
  grpc::ClientContext context;
  context.AddMetadata("authorization", std::string("Bearer ") + kToken);
  moe::v1::LoadExpertsRequest request;
  moe::v1::HostedExpert* e = request.add_experts();
  e->set_layer(0);
  e->set_expert(2);
  moe::v1::PlacementChangeResponse response;
  ASSERT_TRUE(stub_->LoadExperts(&context, request, &response).ok());
  std::thread t3([&] { after = Forward({0, 2}); });
  // Both are decoded (t3 after the load) before the gate opens: wait until the queue holds them.
  while (service_->queue_depth() < 2) {
  }
  {
    absl::MutexLock lock(&gate_->mu);
    gate_->open = true;
  }
  t1.join();
  t2.join();
  t3.join();
  ASSERT_OK(first.status());
  ASSERT_OK(before.status());
  ASSERT_OK(after.status());
  EXPECT_EQ(*before, Expected({0, 1}));
  ASSERT_OK_AND_ASSIGN(auto alone, experts::CpuExpertBackend::FromWeights({Weights({0, 2})}, {.threads = 1}));
  std::vector<float> expected(input_.size());
  const experts::ExpertGroup g{{0, 2}, 0, 2};
  ASSERT_OK(alone->Run({&g, 1}, input_, absl::MakeSpan(expected)));
  EXPECT_EQ(*after, expected);
}

}  // namespace
}  // namespace moe::server
