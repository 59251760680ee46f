// server/worker/expert_service.h
// ExpertService (moe.v1) served by every moe-expert: Forward decodes a router's token groups on
// the gRPC thread and queues them; one compute thread runs every request waiting as one backend
// step (dynamic batching, BatchQueue), so a worker under load reads each expert's weights once
// for many requests. GetWorkerInfo describes what is hosted. Requests before the backend is set
// (while loading) get UNAVAILABLE. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "experts/expert_backend.h"
#include "moe/v1/moe.grpc.pb.h"
#include "server/worker/batch_queue.h"
#include "server/worker/expert_compute.h"
#include "server/worker/expert_metrics.h"

namespace moe::server {

struct ExpertServiceOptions {
  int64_t max_rows = 65536;        // most rows one request may carry
  size_t queue_capacity = 256;     // requests that may wait; more is RESOURCE_EXHAUSTED
  int64_t max_batch_rows = 65536;  // most rows merged into one step; 0 = no batching (one request per step)
  // A request that finds the worker idle (nothing computing, nothing queued) is computed on the
  // gRPC thread that decoded it instead of being handed to the compute thread.
  bool inline_when_idle = true;
};

// Forward is a raw method (it parses the request bytes itself), so that bytes that are not an
// ExpertRequest get INVALID_ARGUMENT saying so, as the router's Forward does, not gRPC's
// UNIMPLEMENTED; GetWorkerInfo is typed.
class ExpertServiceImpl final
    : public moe::v1::ExpertService::WithRawCallbackMethod_Forward<
          moe::v1::ExpertService::WithCallbackMethod_GetWorkerInfo<moe::v1::ExpertService::Service>> {
 public:
  explicit ExpertServiceImpl(ExpertServiceOptions options);

  // Makes the worker serve `backend`, described by `info` (hosted experts are filled in here);
  // records into `metrics` when not null.
  void SetBackend(std::shared_ptr<experts::ExpertBackend> backend, moe::v1::GetWorkerInfoResponse info,
                  ExpertMetrics* metrics = nullptr);

  // Called once if the backend becomes unhealthy (a sticky device error): the worker must stop
  // serving rather than answer garbage. Set before serving.
  void SetFatalHandler(std::function<void(const absl::Status&)> handler) { on_fatal_ = std::move(handler); }

  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetWorkerInfo(grpc::CallbackServerContext* context,
                                          const moe::v1::GetWorkerInfoRequest* request,
                                          moe::v1::GetWorkerInfoResponse* response) override;

 private:
  // A decoded Forward waiting for a step.
  struct Pending {
    grpc::CallbackServerContext* context;
    moe::v1::ExpertResponse response;  // serialized into the call's bytes by `finish`
    std::function<void(const grpc::Status&)> finish;
    std::shared_ptr<experts::ExpertBackend> backend;
    DecodedExpertRequest decoded;
  };
  // One compute step over `batch` (on the queue's thread): drops the cancelled and expired,
  // runs the rest together, answers each.
  void Step(std::vector<std::unique_ptr<Pending>>& batch);

  const ExpertServiceOptions options_;
  std::function<void(const absl::Status&)> on_fatal_;
  std::atomic<bool> fatal_{false};
  absl::Mutex mu_;
  std::shared_ptr<experts::ExpertBackend> backend_ ABSL_GUARDED_BY(mu_);
  ExpertMetrics* metrics_ ABSL_GUARDED_BY(mu_) = nullptr;
  moe::v1::GetWorkerInfoResponse info_ ABSL_GUARDED_BY(mu_);
  BatchQueue<std::unique_ptr<Pending>> queue_;  // last: its thread calls Step
};

}  // namespace moe::server
