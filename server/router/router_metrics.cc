// server/router/router_metrics.cc
#include "server/router/router_metrics.h"

#include "absl/strings/str_cat.h"
#include "server/common/build_info.h"
#include "server/common/latency_buckets.h"

namespace moe::server {
namespace {

constexpr const char* kCodes[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                  "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL",
                                  "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
constexpr const char* kMethods[] = {"Forward", "GetModelInfo", "ModelInfer", "ForwardStream"};

}  // namespace

RouterMetrics::RouterMetrics(prometheus::Registry& registry, const model::ModelConfig& config,
                             const std::vector<std::string>& workers, absl::Duration window)
    : num_experts_(config.num_experts), window_(config.num_experts, window) {
  auto& requests = prometheus::BuildCounter()
                       .Name("moe_router_requests_total")
                       .Help("Requests answered by the router, by RPC method and gRPC status code.")
                       .Register(registry);
  auto& durations = prometheus::BuildHistogram()
                        .Name("moe_router_request_duration_seconds")
                        .Help("Time from receiving a request to answering it, by method.")
                        .Register(registry);
  for (const char* method : kMethods) {
    std::vector<prometheus::Counter*> by_code;
    for (const char* code : kCodes) by_code.push_back(&requests.Add({{"method", method}, {"code", code}}));
    requests_.push_back(by_code);
    request_duration_.push_back(&durations.Add({{"method", method}}, LatencyBuckets()));
  }
  gating_duration_ = &prometheus::BuildHistogram()
                          .Name("moe_router_gating_duration_seconds")
                          .Help("Time to compute the gate (logits, scores, selection) of one Forward.")
                          .Register(registry)
                          .Add({}, LatencyBuckets());
  batch_ = &prometheus::BuildHistogram()
                .Name("moe_router_batch_requests")
                .Help("Forward requests sent to the workers as one dispatch (dynamic batching; 1 when idle).")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128});
  auto& routed = prometheus::BuildCounter()
                     .Name("moe_expert_tokens_routed_total")
                     .Help("(token, expert) pairs sent to each routed expert, over all MoE layers.")
                     .Register(registry);
  auto& layer_routed = prometheus::BuildCounter()
                           .Name("moe_layer_expert_tokens_routed_total")
                           .Help("(token, expert) pairs sent to each routed expert of each MoE layer.")
                           .Register(registry);
  auto& dropped = prometheus::BuildCounter()
                      .Name("moe_expert_tokens_dropped_total")
                      .Help("Pairs refused by an expert, by reason (capacity: past the capacity factor).")
                      .Register(registry);
  auto& rerouted = prometheus::BuildCounter()
                       .Name("moe_expert_tokens_rerouted_total")
                       .Help("Pairs moved from this expert to another for lack of capacity.")
                       .Register(registry);
  for (int e = 0; e < num_experts_; ++e) {
    const std::string id = absl::StrCat(e);
    routed_.push_back(&routed.Add({{"expert", id}}));
    dropped_.push_back(&dropped.Add({{"expert", id}, {"reason", "capacity"}}));
    rerouted_.push_back(&rerouted.Add({{"expert", id}}));
  }
  layer_routed_.resize(config.num_layers);
  for (int l = 0; l < config.num_layers; ++l) {
    if (!config.IsMoeLayer(l)) continue;
    for (int e = 0; e < num_experts_; ++e) {
      layer_routed_[l].push_back(&layer_routed.Add({{"layer", absl::StrCat(l)}, {"expert", absl::StrCat(e)}}));
    }
  }
  dispatch_family_ = &prometheus::BuildHistogram()
                       .Name("moe_worker_dispatch_duration_seconds")
                       .Help("Round trip of one ExpertService.Forward from the router, by worker.")
                       .Register(registry);
  inflight_family_ = &prometheus::BuildGauge()
                       .Name("moe_worker_inflight_requests")
                       .Help("ExpertService calls in flight from the router, by worker.")
                       .Register(registry);
  up_family_ = &prometheus::BuildGauge()
                 .Name("moe_worker_up")
                 .Help("1 if the worker is up (its last call reached it and it answers health checks), else 0.")
                 .Register(registry);
  failovers_family_ = &prometheus::BuildCounter()
                        .Name("moe_worker_failovers_total")
                        .Help("Token groups of a failed call to the worker re-sent to replicas of their experts.")
                        .Register(registry);
  bytes_family_ = &prometheus::BuildCounter()
                    .Name("moe_worker_dispatch_bytes_total")
                    .Help("Tensor bytes of ExpertService calls, by worker and direction (sent: token rows to the "
                          "worker; received: outputs back).")
                    .Register(registry);
  worker_series_ = std::make_unique<std::atomic<const WorkerSeries*>[]>(kMaxWorkers);
  for (int i = 0; i < kMaxWorkers; ++i) worker_series_[i].store(nullptr, std::memory_order_relaxed);
  // Every worker answered GetWorkerInfo before the router started.
  for (size_t i = 0; i < workers.size(); ++i) AddWorker(static_cast<int>(i), workers[i]);
  auto& degraded = prometheus::BuildCounter()
                       .Name("moe_router_degraded_tokens_total")
                       .Help("Tokens whose routed expert had no live worker (--on_expert_unavailable), by expert and "
                             "what happened: rerouted to the next-best live expert, or dropped.")
                       .Register(registry);
  for (int e = 0; e < num_experts_; ++e) {
    degraded_rerouted_.push_back(&degraded.Add({{"expert", absl::StrCat(e)}, {"reason", "rerouted"}}));
    degraded_dropped_.push_back(&degraded.Add({{"expert", absl::StrCat(e)}, {"reason", "dropped"}}));
  }
  if (!workers.empty()) {
    auto& replicas = prometheus::BuildGauge()
                         .Name("moe_expert_available_replicas")
                         .Help("Workers up that host the expert (the fewest over MoE layers); 0 = the expert is missing.")
                         .Register(registry);
    for (int e = 0; e < num_experts_; ++e) replicas_.push_back(&replicas.Add({{"expert", absl::StrCat(e)}}));
    auto& placed = prometheus::BuildGauge()
                       .Name("moe_expert_replicas")
                       .Help("Workers hosting the expert, the mean over MoE layers (live placement adds replicas of hot "
                             "experts: --rebalance).")
                       .Register(registry);
    for (int e = 0; e < num_experts_; ++e) placed_replicas_.push_back(&placed.Add({{"expert", absl::StrCat(e)}}));
    placement_generation_ = &prometheus::BuildGauge()
                                 .Name("moe_placement_generation")
                                 .Help("Placement changes applied since start (--rebalance=auto).")
                                 .Register(registry)
                                 .Add({});
    auto& imbalance = prometheus::BuildGauge()
                          .Name("moe_placement_imbalance_ratio")
                          .Help("Worker load imbalance the placement controller predicts from the last window (max over "
                                "mean worker load, layers weighted by load; 1 = even), for the current placement and "
                                "for the one it plans.")
                          .Register(registry);
    imbalance_current_ = &imbalance.Add({{"placement", "current"}});
    imbalance_planned_ = &imbalance.Add({{"placement", "planned"}});
    auto& moves = prometheus::BuildCounter()
                      .Name("moe_placement_moves_total")
                      .Help("Replicas the placement controller added or removed, by result.")
                      .Register(registry);
    moves_ok_ = &moves.Add({{"result", "ok"}});
    moves_failed_ = &moves.Add({{"result", "failed"}});
    placement_duration_ = &prometheus::BuildHistogram()
                               .Name("moe_placement_apply_duration_seconds")
                               .Help("Time to apply one placement change: load the new replicas, shift traffic, "
                                     "unload what is no longer placed.")
                               .Register(registry)
                               .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120});
  }
  balancedness_ = &prometheus::BuildGauge()
                       .Name("moe_router_load_balancedness_ratio")
                       .Help("Mean over max of pairs per routed expert over the last minute (1 = perfect).")
                       .Register(registry)
                       .Add({});
  aux_loss_ = &prometheus::BuildGauge()
                   .Name("moe_router_aux_loss")
                   .Help("Switch auxiliary load-balance loss E·Σ f_i·P_i over the last minute (1 = balanced).")
                   .Register(registry)
                   .Add({});
  RegisterBuildInfo(registry);
}

void RouterMetrics::RecordRequest(RpcMethod method, grpc::StatusCode code, absl::Duration duration) {
  const int m = static_cast<int>(method);
  const int c = static_cast<int>(code);
  if (c >= 0 && c < static_cast<int>(std::size(kCodes))) requests_[m][c]->Increment();
  request_duration_[m]->Observe(absl::ToDoubleSeconds(duration));
}

void RouterMetrics::RecordBatch(size_t requests) { batch_->Observe(double(requests)); }

void RouterMetrics::RecordGating(absl::Duration duration) {
  gating_duration_->Observe(absl::ToDoubleSeconds(duration));
}

void RouterMetrics::RecordRouting(int layer, const router::Routing& routing) {
  std::vector<int64_t> pairs(num_experts_, 0);
  for (int32_t e : routing.experts) {
    if (e >= 0 && e < num_experts_) ++pairs[e];
  }
  for (int e = 0; e < num_experts_; ++e) {
    if (pairs[e] > 0) {
      routed_[e]->Increment(double(pairs[e]));
      if (layer >= 0 && layer < static_cast<int>(layer_routed_.size()) && !layer_routed_[layer].empty()) {
        layer_routed_[layer][e]->Increment(double(pairs[e]));
      }
    }
    if (e < static_cast<int>(routing.dropped.size()) && routing.dropped[e] > 0) dropped_[e]->Increment(double(routing.dropped[e]));
    if (e < static_cast<int>(routing.rerouted.size()) && routing.rerouted[e] > 0) rerouted_[e]->Increment(double(routing.rerouted[e]));
  }
  if (routing.score_sums.empty()) return;  // a dense layer: no routed load
  const absl::Time now = absl::Now();
  window_.Add(now, pairs, routing.score_sums, routing.num_tokens);
  const LoadWindow::Stats s = window_.Compute(now);
  balancedness_->Set(s.balancedness);
  aux_loss_->Set(s.aux_loss);
}

void RouterMetrics::AddWorker(int index, const std::string& address) {
  if (index < 0 || index >= kMaxWorkers || worker_series_[index].load(std::memory_order_acquire) != nullptr) return;
  auto series = std::make_unique<WorkerSeries>();
  series->sent = &bytes_family_->Add({{"worker", address}, {"direction", "sent"}});
  series->received = &bytes_family_->Add({{"worker", address}, {"direction", "received"}});
  series->failovers = &failovers_family_->Add({{"worker", address}});
  series->dispatch = &dispatch_family_->Add({{"worker", address}}, LatencyBuckets());
  series->inflight = &inflight_family_->Add({{"worker", address}});
  series->up = &up_family_->Add({{"worker", address}});
  series->up->Set(1);  // it answered GetWorkerInfo
  absl::MutexLock lock(&series_mu_);
  worker_series_[index].store(series.get(), std::memory_order_release);
  owned_series_.push_back(std::move(series));
}

const RouterMetrics::WorkerSeries* RouterMetrics::Worker(int worker) const {
  if (worker < 0 || worker >= kMaxWorkers) return nullptr;
  return worker_series_[worker].load(std::memory_order_acquire);
}

void RouterMetrics::RecordDispatch(int worker, absl::Duration duration) {
  if (const WorkerSeries* w = Worker(worker)) w->dispatch->Observe(absl::ToDoubleSeconds(duration));
}

void RouterMetrics::SetInflight(int worker, int inflight) {
  if (const WorkerSeries* w = Worker(worker)) w->inflight->Set(inflight);
}

void RouterMetrics::SetUp(int worker, bool up) {
  if (const WorkerSeries* w = Worker(worker)) w->up->Set(up ? 1 : 0);
}

void RouterMetrics::RecordFailover(int worker, int groups) {
  if (const WorkerSeries* w = Worker(worker)) w->failovers->Increment(groups);
}

void RouterMetrics::RecordBytes(int worker, size_t sent, size_t received) {
  if (const WorkerSeries* w = Worker(worker)) {
    w->sent->Increment(static_cast<double>(sent));
    w->received->Increment(static_cast<double>(received));
  }
}

void RouterMetrics::RecordDegraded(int expert, bool rerouted, int64_t tokens) {
  (rerouted ? degraded_rerouted_ : degraded_dropped_)[expert]->Increment(static_cast<double>(tokens));
}

void RouterMetrics::RecordPlacementPlan(double current, double planned) {
  if (imbalance_current_ == nullptr) return;
  imbalance_current_->Set(current);
  imbalance_planned_->Set(planned);
}

void RouterMetrics::RecordPlacementApplied(int64_t generation, int64_t moves_ok, int64_t moves_failed,
                                           absl::Duration took) {
  if (placement_generation_ == nullptr) return;
  placement_generation_->Set(static_cast<double>(generation));
  moves_ok_->Increment(static_cast<double>(moves_ok));
  moves_failed_->Increment(static_cast<double>(moves_failed));
  placement_duration_->Observe(absl::ToDoubleSeconds(took));
}

void RouterMetrics::SetReplicas(int expert, double mean_replicas) {
  if (expert >= 0 && expert < static_cast<int>(placed_replicas_.size())) placed_replicas_[expert]->Set(mean_replicas);
}

void RouterMetrics::SetAvailableReplicas(int expert, int replicas) {
  if (expert >= 0 && expert < static_cast<int>(replicas_.size())) replicas_[expert]->Set(replicas);
}

}  // namespace moe::server
