// server/worker/expert_service.cc
#include "server/worker/expert_service.h"

#include <algorithm>
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

ExpertServiceImpl::~ExpertServiceImpl() { JoinAdminCalls(); }

void ExpertServiceImpl::JoinAdminCalls() {
  {
    absl::MutexLock lock(&admin_mu_);
    admin_stopping_ = true;
  }
  if (admin_thread_.joinable()) admin_thread_.join();
}

void ExpertServiceImpl::AdminLoop() {
  while (true) {
    std::function<void()> job;
    {
      absl::MutexLock lock(&admin_mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(admin_mu_) { return admin_stopping_ || !admin_jobs_.empty(); };
      admin_mu_.Await(absl::Condition(&ready));
      if (admin_jobs_.empty()) return;  // stopping, and every call queued has been answered
      job = std::move(admin_jobs_.front());
      admin_jobs_.pop_front();
    }
    job();
  }
}

void ExpertServiceImpl::SetBackend(std::shared_ptr<experts::ExpertBackend> backend,
                                   moe::v1::GetWorkerInfoResponse info, ExpertMetrics* metrics) {
  info.set_max_tokens(options_.max_rows);
  info.set_memory_budget_bytes(live_.memory_budget);
  absl::MutexLock lock(&mu_);
  info_ = std::move(info);
  metrics_ = metrics;
  ready_ = true;
  PublishLocked(std::move(backend));
}

void ExpertServiceImpl::PublishLocked(std::shared_ptr<experts::ExpertBackend> backend) {
  info_.clear_experts();
  if (backend != nullptr) {
    for (const experts::ExpertKey& key : backend->hosted()) {
      moe::v1::HostedExpert* e = info_.add_experts();
      e->set_layer(key.layer);
      e->set_expert(key.expert);
    }
    info_.set_backend(backend->name());
    info_.set_device(backend->device());
    info_.set_resident_dtype(backend->resident().dtype);
    info_.set_resident_bytes(backend->resident().bytes);
    info_.set_hidden_size(backend->hidden_size());
    info_.set_intermediate_size(backend->intermediate_size());
  } else {
    info_.set_device("");
    info_.set_resident_dtype("");
    info_.set_resident_bytes(0);
  }
  if (metrics_ != nullptr) {
    metrics_->SetHosted(backend != nullptr ? backend->hosted() : std::vector<experts::ExpertKey>{},
                        info_.resident_bytes());
  }
  hosting_ = std::make_shared<Hosting>();
  hosting_->backend = std::move(backend);
}

grpc::ServerUnaryReactor* ExpertServiceImpl::Forward(grpc::CallbackServerContext* context,
                                                     const grpc::ByteBuffer* request_bytes,
                                                     grpc::ByteBuffer* response_bytes) {
  NoteCallArrived();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  auto pending = std::make_unique<Pending>();
  ExpertMetrics* metrics = nullptr;
  bool ready = false;
  {
    absl::MutexLock lock(&mu_);
    ready = ready_;
    if (hosting_ != nullptr) {
      pending->hosting = hosting_;
      pending->backend = hosting_->backend;
      ++hosting_->calls;
    }
    metrics = metrics_;
  }
  pending->context = context;
  // `pending` outlives every call of its own `finish`.
  pending->finish = [this, reactor, metrics, response_bytes, p = pending.get()](const grpc::Status& status) {
    if (p->hosting != nullptr) {
      absl::MutexLock lock(&mu_);
      --p->hosting->calls;
    }
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
  if (!ready) {
    pending->finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
    return reactor;
  }
  if (pending->backend == nullptr) {
    pending->finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                 absl::StrCat("this worker hosts no experts (layer ", request.layer(),
                                              " asked); LoadExperts gives it some")));
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
  // Each request runs on the backend it was decoded against; a step spanning a placement change
  // runs one backend after the other.
  while (!live.empty()) {
    std::vector<Pending*> same, rest;
    for (Pending* p : live) (p->backend == live.front()->backend ? same : rest).push_back(p);
    StepOn(*same.front()->backend, same, metrics);
    live.swap(rest);
  }
}

void ExpertServiceImpl::StepOn(experts::ExpertBackend& backend, const std::vector<Pending*>& live,
                               ExpertMetrics* metrics) {
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
  if (!ready_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
  } else {
    *response = info_;
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

grpc::ServerUnaryReactor* ExpertServiceImpl::Admin(grpc::CallbackServerContext* context,
                                                   std::function<grpc::Status()> change) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!live_.change || live_.admin == nullptr) {
    reactor->Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                 "live placement is off on this worker: start it with --admin_token_file"));
    return reactor;
  }
  if (absl::Status allowed = live_.admin->Check(*context); !allowed.ok()) {
    reactor->Finish(proto::ToGrpcStatus(allowed));
    return reactor;
  }
  {
    absl::MutexLock lock(&mu_);
    if (!ready_) {
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "worker is still loading its experts"));
      return reactor;
    }
  }
  // Loading reads and packs weights for seconds: off the gRPC thread, on the admin thread, one
  // change at a time.
  absl::MutexLock lock(&admin_mu_);
  if (admin_stopping_) {
    reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "the worker is shutting down"));
    return reactor;
  }
  if (!admin_thread_.joinable()) admin_thread_ = std::thread([this] { AdminLoop(); });
  admin_jobs_.push_back([reactor, change = std::move(change)] { reactor->Finish(change()); });
  return reactor;
}

namespace {

// The keys of a Load/Unload request, checked: INVALID_ARGUMENT for none, a negative id or one
// given twice.
absl::StatusOr<std::vector<experts::ExpertKey>> KeysOf(
    const google::protobuf::RepeatedPtrField<moe::v1::HostedExpert>& experts) {
  if (experts.empty()) return absl::InvalidArgumentError("no experts given");
  std::vector<experts::ExpertKey> keys;
  for (const moe::v1::HostedExpert& e : experts) {
    if (e.layer() < 0 || e.expert() < 0) {
      return absl::InvalidArgumentError(absl::StrCat("expert ", e.expert(), " of layer ", e.layer(), " is not an expert"));
    }
    keys.push_back({e.layer(), e.expert()});
  }
  std::sort(keys.begin(), keys.end());
  for (size_t i = 1; i < keys.size(); ++i) {
    if (keys[i] == keys[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat("expert ", keys[i].expert, " of layer ", keys[i].layer, " is given twice"));
    }
  }
  return keys;
}

}  // namespace

grpc::ServerUnaryReactor* ExpertServiceImpl::LoadExperts(grpc::CallbackServerContext* context,
                                                         const moe::v1::LoadExpertsRequest* request,
                                                         moe::v1::PlacementChangeResponse* response) {
  return Admin(context, [this, request, response] { return Load(*request, response); });
}

grpc::ServerUnaryReactor* ExpertServiceImpl::UnloadExperts(grpc::CallbackServerContext* context,
                                                           const moe::v1::UnloadExpertsRequest* request,
                                                           moe::v1::PlacementChangeResponse* response) {
  const absl::Time deadline = absl::FromChrono(context->deadline());
  return Admin(context, [this, request, response, deadline] { return Unload(*request, deadline, response); });
}

grpc::Status ExpertServiceImpl::Load(const moe::v1::LoadExpertsRequest& request,
                                     moe::v1::PlacementChangeResponse* response) {
  absl::StatusOr<std::vector<experts::ExpertKey>> keys = KeysOf(request.experts());
  if (!keys.ok()) return proto::ToGrpcStatus(keys.status());
  std::shared_ptr<experts::ExpertBackend> current;
  {
    absl::MutexLock lock(&mu_);
    current = hosting_->backend;
  }
  const int64_t resident = current != nullptr ? current->resident().bytes : 0;
  const int64_t budget = live_.memory_budget > 0 ? std::max<int64_t>(0, live_.memory_budget - resident) : -1;
  const absl::Time start = absl::Now();
  int64_t estimate = 0;
  absl::StatusOr<std::shared_ptr<experts::ExpertBackend>> changed =
      live_.change(current.get(), *keys, {}, budget, &estimate);
  if (!changed.ok()) return proto::ToGrpcStatus(changed.status());
  const int64_t now_resident = *changed != nullptr ? (*changed)->resident().bytes : 0;
  if (live_.memory_budget > 0 && now_resident > live_.memory_budget) {  // the estimate was short
    return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                        absl::StrCat("hosting them takes ", now_resident, " bytes resident, past the memory budget of ",
                                     live_.memory_budget, " bytes; nothing was loaded"));
  }
  absl::MutexLock lock(&mu_);
  PublishLocked(*std::move(changed));
  info_.set_placement_generation(info_.placement_generation() + 1);
  *response->mutable_info() = info_;
  response->set_seconds(absl::ToDoubleSeconds(absl::Now() - start));
  response->set_bytes(now_resident - resident);
  return grpc::Status::OK;
}

grpc::Status ExpertServiceImpl::Unload(const moe::v1::UnloadExpertsRequest& request, absl::Time deadline,
                                       moe::v1::PlacementChangeResponse* response) {
  absl::StatusOr<std::vector<experts::ExpertKey>> keys = KeysOf(request.experts());
  if (!keys.ok()) return proto::ToGrpcStatus(keys.status());
  std::shared_ptr<Hosting> old;
  {
    absl::MutexLock lock(&mu_);
    old = hosting_;
  }
  const int64_t resident = old->backend != nullptr ? old->backend->resident().bytes : 0;
  absl::StatusOr<std::shared_ptr<experts::ExpertBackend>> changed =
      live_.change(old->backend.get(), {}, *keys, -1, nullptr);
  if (!changed.ok()) return proto::ToGrpcStatus(changed.status());
  const int64_t now_resident = *changed != nullptr ? (*changed)->resident().bytes : 0;
  absl::MutexLock lock(&mu_);
  PublishLocked(*std::move(changed));
  info_.set_placement_generation(info_.placement_generation() + 1);
  *response->mutable_info() = info_;
  response->set_bytes(resident - now_resident);
  // The calls already answered from the old backend may still use the unloaded experts: wait for
  // them (new calls get the new backend).
  const absl::Time start = absl::Now();
  const bool drained = mu_.AwaitWithDeadline(
      absl::Condition(
          +[](Hosting* h) ABSL_NO_THREAD_SAFETY_ANALYSIS { return h->calls == 0; }, old.get()),
      deadline);
  response->set_seconds(absl::ToDoubleSeconds(absl::Now() - start));
  if (!drained) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        absl::StrCat("the experts are unloaded, but ", old->calls,
                                     " calls that started before are still running on them; their memory is freed "
                                     "when those finish"));
  }
  return grpc::Status::OK;
}

}  // namespace moe::server
