// tests/integration/live_experts_test.cc
// A real moe-expert changing what it hosts while it serves (LoadExperts/UnloadExperts): a worker
// started with no experts gets some, computes them bit for bit as an in-process backend of the same
// checkpoint does (f32), gives them back; the admin token is required (missing or wrong:
// UNAUTHENTICATED; a worker without --admin_token_file: FAILED_PRECONDITION); the memory budget
// refuses a load past it with RESOURCE_EXHAUSTED; bad keys are refused; a refused change changes
// nothing; and Forwards running the whole time on an expert that stays never fail or change while
// others are loaded and unloaded around them.
#include <atomic>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "experts/factory/backend_factory.h"
#include "gtest/gtest.h"
#include "model/checkpoint.h"
#include "moe/v1/moe.grpc.pb.h"
#include "base/status_macros.h"
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

constexpr int kHidden = 64, kInter = 128, kExperts = 8, kLayers = 2;
constexpr int64_t kRows = 4;
constexpr char kToken[] = "live-placement-test-token";
// One f32 expert: w1, w3 [I, H] and w2 [H, I].
constexpr int64_t kExpertBytes = 3 * kHidden * kInter * 4;

class LiveExpertsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    checkpoint_ = new std::string(WriteCheckpoint(SmallConfig(kHidden, kInter, kExperts, 2, kLayers), DType::kF32, 21));
    token_file_ = new std::string(MakeTempDir("live") + "/admin_token");
    std::ofstream(*token_file_) << kToken << "\n";
  }
  static void TearDownTestSuite() {
    delete checkpoint_;
    delete token_file_;
  }

  server::ChildProcess Start(std::vector<std::string> flags) {
    std::vector<std::string> argv = {BinDir() + "/moe-expert", "--checkpoint=" + *checkpoint_, "--listen=127.0.0.1:0",
                                     "--metrics_port=-1", "--threads=1"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    absl::StatusOr<server::ChildProcess> w = server::SpawnServer(argv, absl::Seconds(120));
    EXPECT_OK(w.status());
    return w.ok() ? *w : server::ChildProcess{};
  }
  static std::unique_ptr<moe::v1::ExpertService::Stub> Stub(const server::ChildProcess& w) {
    return moe::v1::ExpertService::NewStub(proto::MakeChannel(absl::StrCat("127.0.0.1:", w.port), 64 << 20));
  }
  static void Authorize(grpc::ClientContext& context, const std::string& token = kToken) {
    context.AddMetadata("authorization", "Bearer " + token);
  }
  static void Keys(std::initializer_list<experts::ExpertKey> keys, google::protobuf::RepeatedPtrField<moe::v1::HostedExpert>* out) {
    for (const experts::ExpertKey& k : keys) {
      moe::v1::HostedExpert* e = out->Add();
      e->set_layer(k.layer);
      e->set_expert(k.expert);
    }
  }
  static absl::Status Load(moe::v1::ExpertService::Stub& stub, std::initializer_list<experts::ExpertKey> keys,
                           moe::v1::PlacementChangeResponse* response = nullptr, const std::string& token = kToken) {
    grpc::ClientContext context;
    if (!token.empty()) Authorize(context, token);
    moe::v1::LoadExpertsRequest request;
    Keys(keys, request.mutable_experts());
    moe::v1::PlacementChangeResponse ignored;
    return proto::FromGrpcStatus(stub.LoadExperts(&context, request, response != nullptr ? response : &ignored));
  }
  static absl::Status Unload(moe::v1::ExpertService::Stub& stub, std::initializer_list<experts::ExpertKey> keys,
                             moe::v1::PlacementChangeResponse* response = nullptr) {
    grpc::ClientContext context;
    Authorize(context);
    moe::v1::UnloadExpertsRequest request;
    Keys(keys, request.mutable_experts());
    moe::v1::PlacementChangeResponse ignored;
    return proto::FromGrpcStatus(stub.UnloadExperts(&context, request, response != nullptr ? response : &ignored));
  }
  static moe::v1::GetWorkerInfoResponse Info(moe::v1::ExpertService::Stub& stub) {
    grpc::ClientContext context;
    moe::v1::GetWorkerInfoResponse info;
    EXPECT_TRUE(stub.GetWorkerInfo(&context, {}, &info).ok());
    return info;
  }
  static std::vector<experts::ExpertKey> Hosted(const moe::v1::GetWorkerInfoResponse& info) {
    std::vector<experts::ExpertKey> keys;
    for (const moe::v1::HostedExpert& e : info.experts()) keys.push_back({e.layer(), e.expert()});
    return keys;
  }
  // kRows rows through `key` on the worker: its f32 output, or the call's status.
  static absl::StatusOr<std::vector<float>> Forward(moe::v1::ExpertService::Stub& stub, experts::ExpertKey key,
                                                    uint64_t seed) {
    moe::v1::ExpertRequest request;
    request.set_layer(key.layer);
    moe::v1::ExpertGroup* g = request.add_groups();
    g->set_expert(key.expert);
    g->set_num_rows(kRows);
    proto::EncodeTensor(Tensor::FromF32(RandomVector(kRows * kHidden, seed), {kRows, kHidden}), request.mutable_tokens());
    grpc::ClientContext context;
    moe::v1::ExpertResponse response;
    RETURN_IF_ERROR(proto::FromGrpcStatus(stub.Forward(&context, request, &response)));
    ASSIGN_OR_RETURN(const Tensor out, proto::ViewTensor(response.outputs(), "outputs"));
    return std::vector<float>(out.f32().begin(), out.f32().end());
  }
  // The same rows through an in-process CPU backend of the checkpoint (one thread, as the worker).
  static std::vector<float> Expected(experts::ExpertKey key, uint64_t seed) {
    auto checkpoint = model::Checkpoint::Open(*checkpoint_);
    EXPECT_OK(checkpoint.status());
    const experts::ExpertKey keys[] = {key};
    auto backend = experts::CreateBackend(**checkpoint, keys, {.threads = 1});
    EXPECT_OK(backend.status());
    const std::vector<float> in = RandomVector(kRows * kHidden, seed);
    std::vector<float> out(in.size());
    const experts::ExpertGroup group{key, 0, kRows};
    EXPECT_OK((*backend)->Run({&group, 1}, in, absl::MakeSpan(out)));
    return out;
  }

  static std::string* checkpoint_;
  static std::string* token_file_;
};
std::string* LiveExpertsTest::checkpoint_ = nullptr;
std::string* LiveExpertsTest::token_file_ = nullptr;

TEST_F(LiveExpertsTest, EmptyWorkerLoadsComputesAndUnloads) {
  server::ChildProcess worker =
      Start({"--experts=none", "--admin_token_file=" + *token_file_,
             absl::StrCat("--memory_budget=", 5 * kExpertBytes + kExpertBytes / 2)});
  ASSERT_GT(worker.pid, 0);
  auto stub = Stub(worker);
  moe::v1::GetWorkerInfoResponse info = Info(*stub);
  EXPECT_EQ(info.experts_size(), 0);
  EXPECT_EQ(info.placement_generation(), 0);
  EXPECT_EQ(info.memory_budget_bytes(), 5 * kExpertBytes + kExpertBytes / 2);
  EXPECT_THAT(Forward(*stub, {0, 1}, 1).status(), StatusIs(StatusCode::kNotFound, "hosts no experts"));

  // The credential: missing, wrong.
  EXPECT_THAT(Load(*stub, {{0, 1}}, nullptr, ""), StatusIs(StatusCode::kUnauthenticated, "missing credentials"));
  EXPECT_THAT(Load(*stub, {{0, 1}}, nullptr, "not-the-token"), StatusIs(StatusCode::kUnauthenticated, "not accepted"));
  // Bad keys: none, twice, outside the model.
  EXPECT_THAT(Load(*stub, {}), StatusIs(StatusCode::kInvalidArgument, "no experts given"));
  EXPECT_THAT(Load(*stub, {{0, 1}, {0, 1}}), StatusIs(StatusCode::kInvalidArgument, "given twice"));
  EXPECT_THAT(Load(*stub, {{0, kExperts + 3}}), StatusIs(StatusCode::kNotFound, ""));
  EXPECT_THAT(Load(*stub, {{kLayers, 0}}), StatusIs(StatusCode::kNotFound, ""));
  EXPECT_EQ(Info(*stub).experts_size(), 0);

  moe::v1::PlacementChangeResponse loaded;
  ASSERT_OK(Load(*stub, {{0, 1}, {1, 1}, {0, 2}}, &loaded));
  EXPECT_EQ(Hosted(loaded.info()), (std::vector<experts::ExpertKey>{{0, 1}, {0, 2}, {1, 1}}));
  EXPECT_EQ(loaded.info().placement_generation(), 1);
  EXPECT_EQ(loaded.bytes(), 3 * kExpertBytes);
  EXPECT_EQ(loaded.info().resident_bytes(), 3 * kExpertBytes);
  EXPECT_EQ(loaded.info().resident_dtype(), "f32");
  EXPECT_EQ(Hosted(Info(*stub)), Hosted(loaded.info()));
  for (experts::ExpertKey key : {experts::ExpertKey{0, 1}, experts::ExpertKey{0, 2}, experts::ExpertKey{1, 1}}) {
    ASSERT_OK_AND_ASSIGN(const std::vector<float> got, Forward(*stub, key, 7));
    EXPECT_EQ(got, Expected(key, 7)) << "layer " << key.layer << " expert " << key.expert;
  }
  EXPECT_THAT(Forward(*stub, {0, 3}, 1).status(), StatusIs(StatusCode::kNotFound, "not hosted"));

  // Already hosted; past the budget (3 hosted + 3 more > 5.5): refused, nothing changed.
  EXPECT_THAT(Load(*stub, {{0, 1}}), StatusIs(StatusCode::kAlreadyExists, "already hosted"));
  EXPECT_THAT(Load(*stub, {{0, 3}, {0, 4}, {0, 5}}), StatusIs(StatusCode::kResourceExhausted, "memory budget"));
  EXPECT_EQ(Info(*stub).placement_generation(), 1);
  EXPECT_EQ(Info(*stub).experts_size(), 3);
  ASSERT_OK(Load(*stub, {{0, 3}, {0, 4}}));  // 5 fit

  moe::v1::PlacementChangeResponse unloaded;
  EXPECT_THAT(Unload(*stub, {{0, 6}}), StatusIs(StatusCode::kNotFound, "not hosted"));
  ASSERT_OK(Unload(*stub, {{0, 1}, {0, 3}}, &unloaded));
  EXPECT_EQ(unloaded.bytes(), 2 * kExpertBytes);
  EXPECT_EQ(unloaded.info().placement_generation(), 3);
  EXPECT_EQ(Hosted(unloaded.info()), (std::vector<experts::ExpertKey>{{0, 2}, {0, 4}, {1, 1}}));
  EXPECT_THAT(Forward(*stub, {0, 1}, 1).status(), StatusIs(StatusCode::kNotFound, "not hosted"));
  ASSERT_OK_AND_ASSIGN(const std::vector<float> kept, Forward(*stub, {1, 1}, 8));
  EXPECT_EQ(kept, Expected({1, 1}, 8));
  // Everything given back: a worker hosting nothing again, still serving.
  ASSERT_OK(Unload(*stub, {{0, 2}, {0, 4}, {1, 1}}, &unloaded));
  EXPECT_EQ(unloaded.info().experts_size(), 0);
  EXPECT_EQ(unloaded.info().resident_bytes(), 0);
  EXPECT_THAT(Forward(*stub, {1, 1}, 1).status(), StatusIs(StatusCode::kNotFound, "hosts no experts"));
  ASSERT_OK(Load(*stub, {{1, 7}}));
  ASSERT_OK_AND_ASSIGN(const std::vector<float> again, Forward(*stub, {1, 7}, 9));
  EXPECT_EQ(again, Expected({1, 7}, 9));
  EXPECT_EQ(server::StopChild(worker, SIGTERM), 0);
}

TEST_F(LiveExpertsTest, RefusedWithoutAnAdminToken) {
  server::ChildProcess worker = Start({"--experts=0-1"});
  ASSERT_GT(worker.pid, 0);
  auto stub = Stub(worker);
  EXPECT_THAT(Load(*stub, {{0, 3}}), StatusIs(StatusCode::kFailedPrecondition, "--admin_token_file"));
  EXPECT_THAT(Unload(*stub, {{0, 1}}), StatusIs(StatusCode::kFailedPrecondition, "--admin_token_file"));
  EXPECT_EQ(Info(*stub).experts_size(), 2 * kLayers);
  EXPECT_EQ(server::StopChild(worker, SIGTERM), 0);
}

TEST_F(LiveExpertsTest, ServesWithoutAFailureWhileOthersComeAndGo) {
  server::ChildProcess worker = Start({"--experts=1", "--admin_token_file=" + *token_file_});
  ASSERT_GT(worker.pid, 0);
  auto stub = Stub(worker);
  const std::vector<float> expected = Expected({0, 1}, 5);
  std::atomic<bool> stop{false};
  std::atomic<int> calls{0}, failures{0}, wrong{0};
  std::thread traffic([&] {
    auto own = Stub(worker);
    while (!stop.load()) {
      absl::StatusOr<std::vector<float>> got = Forward(*own, {0, 1}, 5);
      if (!got.ok()) {
        ++failures;
        ADD_FAILURE() << got.status();
      } else if (*got != expected) {
        ++wrong;
      }
      ++calls;
    }
  });
  for (int round = 0; round < 6; ++round) {
    ASSERT_OK(Load(*stub, {{0, 2}, {1, 2}, {0, 0}}));
    ASSERT_OK_AND_ASSIGN(const std::vector<float> added, Forward(*stub, {0, 2}, round));
    EXPECT_EQ(added, Expected({0, 2}, round));
    ASSERT_OK(Unload(*stub, {{0, 2}, {1, 2}, {0, 0}}));
  }
  // Traffic ran across the changes (not only before or after them).
  const int before_stop = calls.load();
  while (calls.load() < before_stop + 3) {
  }
  stop = true;
  traffic.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(Info(*stub).placement_generation(), 12);
  EXPECT_EQ(server::StopChild(worker, SIGTERM), 0);
}

}  // namespace
}  // namespace moe::testing
