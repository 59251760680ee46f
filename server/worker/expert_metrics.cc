// server/worker/expert_metrics.cc
#include "server/worker/expert_metrics.h"

#include "absl/strings/str_cat.h"
#include "server/common/build_info.h"
#include "server/common/latency_buckets.h"

namespace moe::server {

ExpertMetrics::ExpertMetrics(prometheus::Registry& registry, const std::vector<experts::ExpertKey>& hosted,
                             int always_on_id)
    : always_on_id_(always_on_id) {
  auto& requests = prometheus::BuildCounter()
                       .Name("moe_worker_requests_total")
                       .Help("ExpertService.Forward calls answered by this worker, by gRPC status code.")
                       .Register(registry);
  for (const char* code : {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                           "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                           "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                           "UNAUTHENTICATED"}) {
    requests_.push_back(&requests.Add({{"code", code}}));
  }
  tokens_family_ = &prometheus::BuildCounter()
                        .Name("moe_worker_tokens_processed_total")
                        .Help("Token rows computed by this worker, per hosted expert (shared = always-on MLPs).")
                        .Register(registry);
  hosted_ = &prometheus::BuildGauge()
                 .Name("moe_worker_hosted_experts")
                 .Help("(layer, expert) pairs this worker hosts now (always-on MLPs included).")
                 .Register(registry)
                 .Add({});
  resident_ = &prometheus::BuildGauge()
                   .Name("moe_worker_resident_bytes")
                   .Help("Bytes the hosted experts' weights take as the backend holds them.")
                   .Register(registry)
                   .Add({});
  SetHosted(hosted, 0);
  compute_ = &prometheus::BuildHistogram()
                  .Name("moe_worker_compute_duration_seconds")
                  .Help("Time to compute one step: the expert groups of every request batched into it.")
                  .Register(registry)
                  .Add({}, LatencyBuckets());
  batch_ = &prometheus::BuildHistogram()
                .Name("moe_worker_batch_requests")
                .Help("ExpertService.Forward requests merged into one compute step (dynamic batching).")
                .Register(registry)
                .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128});
  queue_depth_ = &prometheus::BuildGauge()
                      .Name("moe_worker_queue_depth")
                      .Help("Requests waiting for this worker's compute queue.")
                      .Register(registry)
                      .Add({});
  RegisterBuildInfo(registry);
}

void ExpertMetrics::RecordRequest(grpc::StatusCode code) {
  const int c = static_cast<int>(code);
  if (c >= 0 && c < static_cast<int>(requests_.size())) requests_[c]->Increment();
}

void ExpertMetrics::SetHosted(const std::vector<experts::ExpertKey>& hosted, int64_t resident_bytes) {
  absl::MutexLock lock(&mu_);
  for (const experts::ExpertKey& key : hosted) {  // a series, once created, stays (counters never vanish)
    if (tokens_.contains(key.expert)) continue;
    const std::string label = key.expert == always_on_id_ ? "shared" : absl::StrCat(key.expert);
    tokens_[key.expert] = &tokens_family_->Add({{"expert", label}});
  }
  hosted_->Set(static_cast<double>(hosted.size()));
  resident_->Set(static_cast<double>(resident_bytes));
}

void ExpertMetrics::RecordRows(int expert, int64_t rows) {
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(expert);
  if (it != tokens_.end()) it->second->Increment(double(rows));
}

void ExpertMetrics::RecordStep(absl::Duration duration, size_t requests) {
  compute_->Observe(absl::ToDoubleSeconds(duration));
  batch_->Observe(double(requests));
}

void ExpertMetrics::SetQueueDepth(size_t depth) { queue_depth_->Set(double(depth)); }

}  // namespace moe::server
