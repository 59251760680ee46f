// tests/testing/held_expert_service.h
// A test worker: serves ExpertService with a real CPU backend, but holds every Forward until the
// test releases it, and lets the test wait until a Forward has arrived. This makes "a request is
// in flight" an observable fact, without sleeps. Thread-safe.
#pragma once

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "experts/expert_backend.h"
#include "model/model_config.h"
#include "moe/v1/moe.grpc.pb.h"

namespace moe::testing {

class HeldExpertService final : public moe::v1::ExpertService::CallbackService {
 public:
  HeldExpertService(std::shared_ptr<experts::ExpertBackend> backend, const model::ModelConfig& config);
  ~HeldExpertService() override;

  // Blocks until at least `count` Forward calls have arrived in total.
  void WaitForArrivals(int count);
  // Answers every held call (and every later one at once).
  void ReleaseAll();
  // While loading, GetWorkerInfo answers UNAVAILABLE "still loading its experts", as a real worker
  // does before its backend is ready; WaitForInfoCalls blocks until `count` have been asked (false
  // if `timeout` passes first: a guard against a hung test, not a synchronisation).
  void SetLoading(bool loading);
  bool WaitForInfoCalls(int count, absl::Duration timeout);

  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const moe::v1::ExpertRequest* request,
                                    moe::v1::ExpertResponse* response) override;
  grpc::ServerUnaryReactor* GetWorkerInfo(grpc::CallbackServerContext* context,
                                          const moe::v1::GetWorkerInfoRequest* request,
                                          moe::v1::GetWorkerInfoResponse* response) override;

 private:
  struct Held {
    grpc::ServerUnaryReactor* reactor;
    const moe::v1::ExpertRequest* request;
    moe::v1::ExpertResponse* response;
  };
  void Answer(const Held& held);

  std::shared_ptr<experts::ExpertBackend> backend_;
  model::ModelConfig config_;
  absl::Mutex mu_;
  int arrivals_ ABSL_GUARDED_BY(mu_) = 0;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool loading_ ABSL_GUARDED_BY(mu_) = false;
  int info_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Held> held_ ABSL_GUARDED_BY(mu_);
};

}  // namespace moe::testing
