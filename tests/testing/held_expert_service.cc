// tests/testing/held_expert_service.cc
#include "tests/testing/held_expert_service.h"

#include "proto/status_convert.h"
#include "server/worker/expert_compute.h"

namespace moe::testing {

HeldExpertService::HeldExpertService(std::shared_ptr<experts::ExpertBackend> backend,
                                     const model::ModelConfig& config)
    : backend_(std::move(backend)), config_(config) {}

HeldExpertService::~HeldExpertService() { ReleaseAll(); }

void HeldExpertService::SetLoading(bool loading) {
  absl::MutexLock lock(&mu_);
  loading_ = loading;
}

bool HeldExpertService::WaitForInfoCalls(int count, absl::Duration timeout) {
  struct Target {
    const int* calls;
    int count;
  } target{&info_calls_, count};
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(+[](Target* t) { return *t->calls >= t->count; }, &target), timeout);
}

void HeldExpertService::WaitForArrivals(int count) {
  struct Target {
    const int* arrivals;
    int count;
  } target{&arrivals_, count};
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(+[](Target* t) { return *t->arrivals >= t->count; }, &target));
}

void HeldExpertService::ReleaseAll() {
  std::vector<Held> held;
  {
    absl::MutexLock lock(&mu_);
    released_ = true;
    held.swap(held_);
  }
  for (const Held& h : held) Answer(h);
}

void HeldExpertService::Answer(const Held& held) {
  held.reactor->Finish(proto::ToGrpcStatus(server::RunExpertRequest(*backend_, 1 << 20, *held.request, held.response)));
}

grpc::ServerUnaryReactor* HeldExpertService::Forward(grpc::CallbackServerContext* context,
                                                     const moe::v1::ExpertRequest* request,
                                                     moe::v1::ExpertResponse* response) {
  Held held{context->DefaultReactor(), request, response};
  bool answer_now = false;
  {
    absl::MutexLock lock(&mu_);
    ++arrivals_;
    if (released_) {
      answer_now = true;
    } else {
      held_.push_back(held);
    }
  }
  if (answer_now) Answer(held);
  return held.reactor;
}

grpc::ServerUnaryReactor* HeldExpertService::GetWorkerInfo(grpc::CallbackServerContext* context,
                                                           const moe::v1::GetWorkerInfoRequest*,
                                                           moe::v1::GetWorkerInfoResponse* response) {
  grpc::ServerUnaryReactor* loading_reactor = nullptr;
  {
    absl::MutexLock lock(&mu_);
    ++info_calls_;
    if (loading_) loading_reactor = context->DefaultReactor();
  }
  if (loading_reactor != nullptr) {
    loading_reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
    return loading_reactor;
  }
  for (const experts::ExpertKey& key : backend_->hosted()) {
    moe::v1::HostedExpert* e = response->add_experts();
    e->set_layer(key.layer);
    e->set_expert(key.expert);
  }
  response->set_hidden_size(backend_->hidden_size());
  response->set_intermediate_size(backend_->intermediate_size());
  response->set_backend("cpu (held for tests)");
  response->set_model_type(config_.model_type);
  response->set_num_experts(config_.num_experts);
  response->set_num_layers(config_.num_layers);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace moe::testing
