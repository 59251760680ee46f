// server/router/placement_controller.h
// The router's live placement (--rebalance): every interval it takes the pairs routed per
// (layer, expert) since the last round (ExpertLoad), plans a placement with redundant replicas
// of the hottest experts packed by load and by each worker's memory budget
// (router/expert_placement.h), and — in auto mode, when the plan lowers the predicted worker
// imbalance enough — applies it without failing a request: LoadExperts on the workers that gain
// replicas, then those replicas join the WorkerPool's placement (traffic shifts: the router picks
// the replica with the fewest calls in flight), then the replicas no longer placed leave the
// placement and are unloaded (the worker answers once calls in flight on them finished; a call
// that still reaches it gets NOT_FOUND and fails over). An expert's last live replica is never
// removed. A worker that fails a change keeps what it had; the next round plans from what is.
// plan mode only logs and exports the proposal. One thread; RunOnce is also called by tests.
// Owned by the router's main; uses the pool, the load and the metrics (may be null), which
// must outlive it. Thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "model/model_config.h"
#include "router/expert_placement.h"
#include "server/common/periodic_loop.h"
#include "server/router/expert_load.h"
#include "server/router/router_metrics.h"
#include "server/router/worker_pool.h"

namespace moe::server {

struct PlacementControllerOptions {
  bool apply = false;                          // auto (true) or plan (false)
  absl::Duration interval = absl::Seconds(30);  // between rounds; the load window is one interval
  int redundant = 0;                           // extra replicas per MoE layer
  // Apply only when the planned imbalance is below the current one by at least this fraction.
  double min_gain = 0.1;
  // Pairs routed since the last round below which a round plans nothing (too little to judge).
  int64_t min_pairs = 1000;
  std::string admin_token_file;  // the workers' admin token (re-read each round)
  absl::Duration call_timeout = absl::Seconds(300);  // one LoadExperts/UnloadExperts
};

class PlacementController {
 public:
  PlacementController(WorkerPool* pool, const model::ModelConfig& config, ExpertLoad* load, RouterMetrics* metrics,
                      PlacementControllerOptions options);
  ~PlacementController();  // Stop()

  // Before Start (the metrics exist once the server is set up).
  void SetMetrics(RouterMetrics* metrics) { metrics_ = metrics; }
  // Before serving: every routed expert that no worker hosts gets a replica (the plan for even
  // load from the current placement, applied). FAILED_PRECONDITION naming what stays uncovered.
  absl::Status PlaceUncovered();

  void Start();
  void Stop();  // idempotent; waits for a round in progress
  // Runs the next round now instead of at the interval (a worker went down: its experts without
  // another replica are placed again without waiting). Cheap; any thread.
  void Wake();

  struct Round {
    bool planned = false;  // enough load to plan
    bool applied = false;
    router::PlacementResult plan;
    int64_t moves_ok = 0, moves_failed = 0;
    std::string summary;  // the line it logged
  };
  // One round now: take the load, plan, and (auto, enough gain) apply.
  Round RunOnce();

 private:
  // Moves the placement to `plan` (per MoE layer index, per expert: workers).
  void Apply(const std::vector<std::vector<std::vector<int>>>& plan, const std::string& token, Round& round);

  WorkerPool* pool_;
  const model::ModelConfig config_;
  ExpertLoad* load_;
  RouterMetrics* metrics_;
  const PlacementControllerOptions options_;
  absl::Mutex round_mu_;  // one round at a time
  std::vector<bool> refused_ ABSL_GUARDED_BY(round_mu_);  // workers without live placement
  int64_t generation_ ABSL_GUARDED_BY(round_mu_) = 0;
  PeriodicLoop loop_;  // last: its thread uses everything above
};

}  // namespace moe::server
