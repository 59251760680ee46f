// server/expert_service.cc
#include "server/expert_service.h"

#include <chrono>

#include "proto/status_convert.h"
#include "server/expert_compute.h"

namespace moe::server {

void ExpertServiceImpl::SetBackend(std::shared_ptr<experts::ExpertBackend> backend,
                                   moe::v1::GetWorkerInfoResponse info) {
  info.clear_experts();
  for (const experts::ExpertKey& key : backend->hosted()) {
    moe::v1::HostedExpert* e = info.add_experts();
    e->set_layer(key.layer);
    e->set_expert(key.expert);
  }
  info.set_backend(backend->name());
  info.set_device(backend->device());
  info.set_hidden_size(backend->hidden_size());
  info.set_intermediate_size(backend->intermediate_size());
  info.set_max_tokens(max_rows_);
  absl::MutexLock lock(&mu_);
  backend_ = std::move(backend);
  info_ = std::move(info);
}

grpc::ServerUnaryReactor* ExpertServiceImpl::Forward(grpc::CallbackServerContext* context,
                                                     const moe::v1::ExpertRequest* request,
                                                     moe::v1::ExpertResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::shared_ptr<experts::ExpertBackend> backend;
  {
    absl::MutexLock lock(&mu_);
    backend = backend_;
  }
  if (backend == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
    return reactor;
  }
  absl::Status queued = queue_->Submit([this, context, request, response, reactor, backend] {
    if (context->IsCancelled()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled before compute"));
      return;
    }
    if (context->deadline() < std::chrono::system_clock::now()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed in the worker's queue"));
      return;
    }
    reactor->Finish(proto::ToGrpcStatus(RunExpertRequest(*backend, max_rows_, *request, response)));
  });
  if (!queued.ok()) reactor->Finish(proto::ToGrpcStatus(queued));
  return reactor;
}

grpc::ServerUnaryReactor* ExpertServiceImpl::GetWorkerInfo(
    grpc::CallbackServerContext* context, const moe::v1::GetWorkerInfoRequest* request,
    moe::v1::GetWorkerInfoResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::MutexLock lock(&mu_);
  if (backend_ == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
  } else {
    *response = info_;
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

}  // namespace moe::server
