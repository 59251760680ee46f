// server/worker/expert_service.cc
#include "server/worker/expert_service.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "model/finite_values.h"
#include "proto/status_convert.h"
#include "server/common/server_runtime.h"

namespace moe::server {

ExpertServiceImpl::ExpertServiceImpl(ExpertServiceOptions options)
    : options_(options),
      queue_(
          options.queue_capacity, std::max<int64_t>(options.max_batch_rows, 1),
          // With batching off every request is a step of its own: each counts as the whole budget.
          [batching = options.max_batch_rows > 0, max = std::max<int64_t>(options.max_batch_rows, 1)](
              const std::unique_ptr<Pending>& p) { return batching ? p->decoded.rows : max; },
          [this](std::vector<std::unique_ptr<Pending>>& batch) { Step(batch); }) {}

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
  info.set_resident_dtype(backend->resident().dtype);
  info.set_resident_bytes(backend->resident().bytes);
  info.set_hidden_size(backend->hidden_size());
  info.set_intermediate_size(backend->intermediate_size());
  info.set_max_tokens(options_.max_rows);
  absl::MutexLock lock(&mu_);
  backend_ = std::move(backend);
  info_ = std::move(info);
  metrics_ = metrics;
}

grpc::ServerUnaryReactor* ExpertServiceImpl::Forward(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request_bytes,
                                                     grpc::ByteBuffer* response_bytes) {
  NoteCallArrived();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto pending = std::make_unique<Pending>();
  ExpertMetrics* metrics = nullptr;
  {
    absl::MutexLock lock(&mu_);
    pending->backend = backend_;
    metrics = metrics_;
  }
  pending->context = context;
  // `pending` outlives every call of its own `finish`.
  pending->finish = [reactor, metrics, response_bytes, p = pending.get()](const grpc::Status& status) {
    grpc::Status sent = status;
    if (sent.ok()) {
      bool own_buffer = false;
      sent = grpc::GenericSerialize<grpc::ProtoBufferWriter, moe::v1::ExpertResponse>(p->response, response_bytes,
                                                                                       &own_buffer);
    }
    if (metrics != nullptr) metrics->RecordRequest(sent.error_code());
    reactor->Finish(sent);
  };
  // What the generated handler would do (the same parser), but a parse failure is the caller's
  // INVALID_ARGUMENT.
  moe::v1::ExpertRequest request;
  grpc::ByteBuffer bytes(*request_bytes);  // shares the slices; parsing consumes the copy
  if (!grpc::GenericDeserialize<grpc::ProtoBufferReader, moe::v1::ExpertRequest>(&bytes, &request).ok()) {
    pending->finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("the request (", request_bytes->Length(),
                                              " bytes) does not parse as moe.v1.ExpertRequest")));
    return reactor;
  }
  if (pending->backend == nullptr) {
    pending->finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
    return reactor;
  }
  // Decoding here, on the gRPC thread, keeps it off the compute thread and lets a malformed
  // request fail alone instead of failing the step it would have joined.
  absl::StatusOr<DecodedExpertRequest> decoded = DecodeExpertRequest(*pending->backend, options_.max_rows, request);
  if (!decoded.ok()) {
    pending->finish(proto::ToGrpcStatus(decoded.status()));
    return reactor;
  }
  pending->decoded = *std::move(decoded);
  // An idle worker computes right here, on the thread that decoded: no hand-off, no wake-up.
  if (options_.inline_when_idle && queue_.RunIfIdle(pending)) return reactor;
  if (absl::Status queued = queue_.Submit(pending); !queued.ok()) {
    pending->finish(proto::ToGrpcStatus(queued));  // Submit left `pending` with us
    return reactor;
  }
  if (metrics != nullptr) metrics->SetQueueDepth(queue_.depth());
  return reactor;
}

void ExpertServiceImpl::Step(std::vector<std::unique_ptr<Pending>>& batch) {
  ExpertMetrics* metrics = nullptr;
  {
    absl::MutexLock lock(&mu_);
    metrics = metrics_;
  }
  if (metrics != nullptr) metrics->SetQueueDepth(queue_.depth());
  std::vector<Pending*> live;
  const auto now = std::chrono::system_clock::now();
  for (std::unique_ptr<Pending>& p : batch) {
    if (p->context->IsCancelled()) {
      p->finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled before compute"));
    } else if (p->context->deadline() < now) {
      p->finish(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline passed in the worker's queue"));
    } else if (fatal_.load()) {
      p->finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is shutting down after a device failure"));
    } else {
      live.push_back(p.get());
    }
  }
  if (live.empty()) return;
  // Every request of a step uses the backend that was current when the first one arrived.
  experts::ExpertBackend& backend = *live.front()->backend;
  std::vector<DecodedExpertRequest*> decoded;
  for (Pending* p : live) decoded.push_back(&p->decoded);
  const absl::Time start = absl::Now();
  std::vector<absl::Status> statuses = RunExpertBatchOrEach(backend, decoded);
  if (absl::Status health = backend.Health(); !health.ok()) {
    for (absl::Status& s : statuses) s = health;  // never send what a poisoned device produced
    if (!fatal_.exchange(true) && on_fatal_) on_fatal_(health);
  }
  if (metrics != nullptr) metrics->RecordStep(absl::Now() - start, live.size());
  for (size_t i = 0; i < live.size(); ++i) {
    Pending* p = live[i];
    if (statuses[i].ok()) {  // finite tokens can still overflow the experts' arithmetic
      statuses[i] = model::CheckFiniteRows(p->decoded.out, backend.hidden_size(), "expert outputs", "row",
                                             absl::StatusCode::kOutOfRange,
                                             "the tokens overflow f32 arithmetic in the experts");
    }
    if (statuses[i].ok()) {
      EncodeExpertResponse(p->decoded, backend.hidden_size(), &p->response);
      if (metrics != nullptr) {
        for (const experts::ExpertGroup& g : p->decoded.groups) metrics->RecordRows(g.key.expert, g.num_rows);
      }
    }
    p->finish(proto::ToGrpcStatus(statuses[i]));
  }
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
