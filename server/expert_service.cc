// server/expert_service.cc
#include "server/expert_service.h"

#include <chrono>

#include "absl/time/clock.h"

#include "proto/status_convert.h"
#include "server/expert_compute.h"

namespace moe::server {

void ExpertServiceImpl::SetBackend(std::shared_ptr<experts::ExpertBackend> backend,
                                   moe::v1::GetWorkerInfoResponse info, ExpertMetrics* metrics) {
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
  metrics_ = metrics;
}

grpc::ServerUnaryReactor* ExpertServiceImpl::Forward(grpc::CallbackServerContext* context,
                                                     const moe::v1::ExpertRequest* request,
                                                     moe::v1::ExpertResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  std::shared_ptr<experts::ExpertBackend> backend;
  ExpertMetrics* metrics = nullptr;
  {
    absl::MutexLock lock(&mu_);
    backend = backend_;
    metrics = metrics_;
  }
  auto finish = [reactor, metrics](const grpc::Status& status) {
    if (metrics != nullptr) metrics->RecordRequest(status.error_code());
    reactor->Finish(status);
  };
  if (backend == nullptr) {
    finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
    return reactor;
  }
  absl::Status queued = queue_->Submit([this, context, request, response, finish, backend, metrics] {
    if (metrics != nullptr) metrics->SetQueueDepth(queue_->depth());
    if (context->IsCancelled()) {
      finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled before compute"));
      return;
    }
    if (context->deadline() < std::chrono::system_clock::now()) {
      finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed in the worker's queue"));
      return;
    }
    if (fatal_.load()) {
      finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is shutting down after a device failure"));
      return;
    }
    const absl::Time start = absl::Now();
    absl::Status status = RunExpertRequest(*backend, max_rows_, *request, response);
    if (status.code() == absl::StatusCode::kInternal) {
      if (absl::Status health = backend->Health(); !health.ok() && !fatal_.exchange(true)) {
        response->Clear();  // never send what a poisoned device produced
        status = health;
        if (on_fatal_) on_fatal_(health);
      }
    }
    if (metrics != nullptr && status.ok()) {
      metrics->RecordCompute(absl::Now() - start);
      for (const moe::v1::ExpertGroup& g : request->groups()) metrics->RecordRows(g.expert(), g.num_rows());
    }
    finish(proto::ToGrpcStatus(status));
  });
  if (metrics != nullptr) metrics->SetQueueDepth(queue_->depth());
  if (!queued.ok()) finish(proto::ToGrpcStatus(queued));
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
