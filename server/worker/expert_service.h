// server/worker/expert_service.h
// ExpertService (moe.v1) served by every moe-expert: Forward decodes a router's token groups on
// the gRPC thread and queues them; one compute thread runs every request waiting as one backend
// step (dynamic batching, BatchQueue), so a worker under load reads each expert's weights once
// for many requests. GetWorkerInfo describes what is hosted. Requests before the backend is set
// (while loading) get UNAVAILABLE. With live placement enabled, LoadExperts/UnloadExperts change
// what is hosted while serving (admin calls, bearer token): each change publishes a new backend
// snapshot; calls already decoded finish on the snapshot they started with, whose weights live
// until its last call is answered, and UnloadExperts answers once they have. Thread-safe.
#pragma once

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "experts/expert_backend.h"
#include "moe/v1/moe.grpc.pb.h"
#include "server/common/token_auth.h"
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

// What LoadExperts/UnloadExperts need from the process (moe-expert's main fills it from the
// checkpoint and the backend flags: experts::ChangeExperts).
struct LivePlacement {
  // `current` (null: hosting nothing) changed to host hosted() − remove + add; null when nothing
  // is left. `budget` (−1: none) bounds the added experts' resident bytes, whose estimate goes to
  // *added_bytes. `current` must stay unchanged.
  std::function<absl::StatusOr<std::shared_ptr<experts::ExpertBackend>>(
      const experts::ExpertBackend* current, absl::Span<const experts::ExpertKey> add,
      absl::Span<const experts::ExpertKey> remove, int64_t budget, int64_t* added_bytes)>
      change;
  TokenAuth* admin = nullptr;  // the admin credential; required (without it both calls are refused)
  int64_t memory_budget = 0;   // bytes the hosted experts may take resident; 0 = no limit
  int always_on_id = 0;        // the expert id of the always-on MLPs (num_experts)
};

// Forward is a raw method (it parses the request bytes itself), so that bytes that are not an
// ExpertRequest get INVALID_ARGUMENT saying so, as the router's Forward does, not gRPC's
// UNIMPLEMENTED; GetWorkerInfo is typed.
class ExpertServiceImpl final
    : public moe::v1::ExpertService::WithRawCallbackMethod_Forward<moe::v1::ExpertService::WithCallbackMethod_GetWorkerInfo<
          moe::v1::ExpertService::WithCallbackMethod_LoadExperts<
              moe::v1::ExpertService::WithCallbackMethod_UnloadExperts<moe::v1::ExpertService::Service>>>> {
 public:
  explicit ExpertServiceImpl(ExpertServiceOptions options);
  ~ExpertServiceImpl() override;  // JoinAdminCalls()

  // Waits for LoadExperts/UnloadExperts in progress to finish their calls. Call after the server
  // has drained and before it is destroyed (their reactors belong to it).
  void JoinAdminCalls();

  // Turns on LoadExperts/UnloadExperts (refused with FAILED_PRECONDITION until then). Call
  // before serving.
  void EnableLivePlacement(LivePlacement live) { live_ = std::move(live); }

  // Makes the worker serve `backend`, described by `info` (hosted experts are filled in here);
  // records into `metrics` when not null. A null backend: loaded, hosting nothing (a worker
  // waiting for LoadExperts); its Forwards get NOT_FOUND.
  void SetBackend(std::shared_ptr<experts::ExpertBackend> backend, moe::v1::GetWorkerInfoResponse info,
                  ExpertMetrics* metrics = nullptr);

  // Requests waiting for the compute thread (tests, metrics).
  size_t queue_depth() const { return queue_.depth(); }

  // Called once if the backend becomes unhealthy (a sticky device error): the worker must stop
  // serving rather than answer garbage. Set before serving.
  void SetFatalHandler(std::function<void(const absl::Status&)> handler) { on_fatal_ = std::move(handler); }

  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GetWorkerInfo(grpc::CallbackServerContext* context,
                                          const moe::v1::GetWorkerInfoRequest* request,
                                          moe::v1::GetWorkerInfoResponse* response) override;
  grpc::ServerUnaryReactor* LoadExperts(grpc::CallbackServerContext* context,
                                        const moe::v1::LoadExpertsRequest* request,
                                        moe::v1::PlacementChangeResponse* response) override;
  grpc::ServerUnaryReactor* UnloadExperts(grpc::CallbackServerContext* context,
                                          const moe::v1::UnloadExpertsRequest* request,
                                          moe::v1::PlacementChangeResponse* response) override;

 private:
  // A published backend (null: none) and the calls answered from it not yet finished.
  struct Hosting {
    std::shared_ptr<experts::ExpertBackend> backend;
    int64_t calls = 0;  // guarded by mu_
  };
  // A decoded Forward waiting for a step.
  struct Pending {
    grpc::CallbackServerContext* context;
    moe::v1::ExpertResponse response;  // serialized into the call's bytes by `finish`
    std::function<void(const grpc::Status&)> finish;
    std::shared_ptr<experts::ExpertBackend> backend;
    std::shared_ptr<Hosting> hosting;  // counted in hosting->calls until `finish`
    DecodedExpertRequest decoded;
  };
  // `info_` and the published hosting for `backend`.
  void PublishLocked(std::shared_ptr<experts::ExpertBackend> backend) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks the admin credential and queues `change` for the admin thread, which runs it and
  // finishes the call.
  grpc::ServerUnaryReactor* Admin(grpc::CallbackServerContext* context,
                                  std::function<grpc::Status()> change);
  grpc::Status Load(const moe::v1::LoadExpertsRequest& request, moe::v1::PlacementChangeResponse* response);
  grpc::Status Unload(const moe::v1::UnloadExpertsRequest& request, absl::Time deadline,
                      moe::v1::PlacementChangeResponse* response);
  // One compute step over `batch` (on the queue's thread): drops the cancelled and expired,
  // runs the rest together, answers each.
  void Step(std::vector<std::unique_ptr<Pending>>& batch);
  // Runs `live` (all decoded against `backend`) as one step and answers each.
  void StepOn(experts::ExpertBackend& backend, const std::vector<Pending*>& live, ExpertMetrics* metrics);

  const ExpertServiceOptions options_;
  std::function<void(const absl::Status&)> on_fatal_;
  std::atomic<bool> fatal_{false};
  absl::Mutex mu_;
  bool ready_ ABSL_GUARDED_BY(mu_) = false;  // SetBackend was called
  std::shared_ptr<Hosting> hosting_ ABSL_GUARDED_BY(mu_);
  ExpertMetrics* metrics_ ABSL_GUARDED_BY(mu_) = nullptr;
  moe::v1::GetWorkerInfoResponse info_ ABSL_GUARDED_BY(mu_);
  LivePlacement live_;
  // LoadExperts/UnloadExperts run one after another on one thread, started at the first.
  void AdminLoop();
  absl::Mutex admin_mu_;
  bool admin_stopping_ ABSL_GUARDED_BY(admin_mu_) = false;
  std::deque<std::function<void()>> admin_jobs_ ABSL_GUARDED_BY(admin_mu_);
  std::thread admin_thread_;
  BatchQueue<std::unique_ptr<Pending>> queue_;  // last: its thread calls Step
};

}  // namespace moe::server
