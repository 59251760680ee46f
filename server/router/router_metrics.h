// server/router/router_metrics.h
// The router's Prometheus metrics (conventions.md names): requests by method and code, request
// and gating durations, Forwards per dispatch, tokens routed / dropped / rerouted per expert (and per layer × expert),
// dispatch duration, in-flight calls and up state per worker, live placement (generation,
// predicted imbalance, moves, replicas per expert), balancedness and aux loss over a
// sliding window, build info. Every series that can exist is created at 0 at construction and
// its handle kept, so recording never looks a metric up by name. Owned by the router's main;
// handed to the service and the worker pool. Thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "model/model_config.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "router/routing.h"
#include "server/router/load_window.h"

namespace moe::server {

// MoeService methods (a ForwardStream counts each step), and the Open Inference Protocol's
// ModelInfer (OipService).
enum class RpcMethod { kForward = 0, kGetModelInfo = 1, kModelInfer = 2, kForwardStream = 3 };

class RouterMetrics {
 public:
  RouterMetrics(prometheus::Registry& registry, const model::ModelConfig& config,
                const std::vector<std::string>& workers, absl::Duration window = absl::Seconds(60));

  void RecordRequest(RpcMethod method, grpc::StatusCode code, absl::Duration duration);
  void RecordGating(absl::Duration duration);
  // One networked dispatch carrying `requests` Forwards (ForwardBatcher).
  void RecordBatch(size_t requests);
  // Tokens routed/dropped/rerouted per expert of `layer`, and the load window.
  void RecordRouting(int layer, const router::Routing& routing);

  // Series for a worker that joined while serving (worker discovery), at its WorkerPool index.
  // Calls for an index without series record nothing.
  void AddWorker(int index, const std::string& address);

  void RecordDispatch(int worker, absl::Duration duration);
  void SetInflight(int worker, int inflight);
  void SetUp(int worker, bool up);
  // Degraded mode: `tokens` tokens lost `expert` (no live worker), rerouted or dropped.
  void RecordDegraded(int expert, bool rerouted, int64_t tokens);
  // `groups` expert groups of a failed call to `worker` were re-sent to other replicas.
  void RecordFailover(int worker, int groups);
  // Tensor bytes of one ExpertService call: token rows sent, outputs received (0 if it failed).
  void RecordBytes(int worker, size_t sent, size_t received);
  // Workers up that host `expert` in every MoE layer (the fewest over layers).
  void SetAvailableReplicas(int expert, int replicas);
  // The placement controller (networked mode only; no-ops otherwise): the imbalance it predicts
  // for the current and the planned placement; a change applied (its generation, replicas added
  // or removed and those that failed, how long it took); workers hosting `expert`, the mean over
  // MoE layers.
  void RecordPlacementPlan(double current, double planned);
  void RecordPlacementApplied(int64_t generation, int64_t moves_ok, int64_t moves_failed, absl::Duration took);
  void SetReplicas(int expert, double mean_replicas);

 private:
  int num_experts_;
  std::vector<std::vector<prometheus::Counter*>> requests_;  // [method][code]
  std::vector<prometheus::Histogram*> request_duration_;     // [method]
  prometheus::Histogram* gating_duration_;
  prometheus::Histogram* batch_;
  std::vector<prometheus::Counter*> routed_;                 // [expert]
  std::vector<std::vector<prometheus::Counter*>> layer_routed_;  // [layer][expert], MoE layers only
  std::vector<prometheus::Counter*> dropped_;                // [expert], reason="capacity"
  std::vector<prometheus::Counter*> rerouted_;               // [expert]
  // Per worker (WorkerPool index), set once by AddWorker; readers load the pointer.
  static constexpr int kMaxWorkers = 1024;  // WorkerPool::kMaxWorkers
  struct WorkerSeries {
    prometheus::Histogram* dispatch;
    prometheus::Gauge* inflight;
    prometheus::Gauge* up;
    prometheus::Counter* failovers;
    prometheus::Counter* sent;
    prometheus::Counter* received;
  };
  const WorkerSeries* Worker(int worker) const;
  prometheus::Family<prometheus::Histogram>* dispatch_family_;
  prometheus::Family<prometheus::Gauge>* inflight_family_;
  prometheus::Family<prometheus::Gauge>* up_family_;
  prometheus::Family<prometheus::Counter>* failovers_family_;
  prometheus::Family<prometheus::Counter>* bytes_family_;
  std::unique_ptr<std::atomic<const WorkerSeries*>[]> worker_series_;  // [kMaxWorkers]
  absl::Mutex series_mu_;
  std::vector<std::unique_ptr<WorkerSeries>> owned_series_ ABSL_GUARDED_BY(series_mu_);
  std::vector<prometheus::Counter*> degraded_rerouted_;      // [expert]
  std::vector<prometheus::Counter*> degraded_dropped_;       // [expert]
  std::vector<prometheus::Gauge*> replicas_;                 // [expert], networked mode only
  std::vector<prometheus::Gauge*> placed_replicas_;        // [expert], networked mode only
  prometheus::Gauge* placement_generation_ = nullptr;        // networked mode only, as the rest of placement
  prometheus::Gauge* imbalance_current_ = nullptr;
  prometheus::Gauge* imbalance_planned_ = nullptr;
  prometheus::Counter* moves_ok_ = nullptr;
  prometheus::Counter* moves_failed_ = nullptr;
  prometheus::Histogram* placement_duration_ = nullptr;
  prometheus::Gauge* balancedness_;
  prometheus::Gauge* aux_loss_;
  LoadWindow window_;
};

}  // namespace moe::server
