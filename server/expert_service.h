// server/expert_service.h
// ExpertService (moe.v1) served by every moe-expert: Forward runs the token groups of one router
// step on the local backend, through the compute queue; GetWorkerInfo describes what is hosted.
// Requests before the backend is set (while loading) get UNAVAILABLE. Thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "experts/expert_backend.h"
#include "moe/v1/moe.grpc.pb.h"
#include "server/compute_queue.h"
#include "server/expert_metrics.h"

namespace moe::server {

class ExpertServiceImpl final : public moe::v1::ExpertService::CallbackService {
 public:
  // `queue` must outlive the service.
  ExpertServiceImpl(ComputeQueue* queue, int64_t max_rows) : queue_(queue), max_rows_(max_rows) {}

  // Makes the worker serve `backend`, described by `info` (hosted experts are filled in here);
  // records into `metrics` when not null.
  void SetBackend(std::shared_ptr<experts::ExpertBackend> backend, moe::v1::GetWorkerInfoResponse info,
                  ExpertMetrics* metrics = nullptr);

  // Called once if the backend becomes unhealthy (a sticky device error): the worker must stop
  // serving rather than answer garbage. Set before serving.
  void SetFatalHandler(std::function<void(const absl::Status&)> handler) { on_fatal_ = std::move(handler); }

  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const moe::v1::ExpertRequest* request,
                                    moe::v1::ExpertResponse* response) override;
  grpc::ServerUnaryReactor* GetWorkerInfo(grpc::CallbackServerContext* context,
                                          const moe::v1::GetWorkerInfoRequest* request,
                                          moe::v1::GetWorkerInfoResponse* response) override;

 private:
  ComputeQueue* const queue_;
  const int64_t max_rows_;
  std::function<void(const absl::Status&)> on_fatal_;
  std::atomic<bool> fatal_{false};
  absl::Mutex mu_;
  std::shared_ptr<experts::ExpertBackend> backend_ ABSL_GUARDED_BY(mu_);
  ExpertMetrics* metrics_ ABSL_GUARDED_BY(mu_) = nullptr;
  moe::v1::GetWorkerInfoResponse info_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe::server
