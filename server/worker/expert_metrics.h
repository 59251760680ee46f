// server/worker/expert_metrics.h
// A worker's Prometheus metrics: requests by code, token rows processed per hosted expert
// (expert="shared" for the always-on MLPs), compute duration and requests per compute step,
// compute queue depth, build info.
// Series for every hosted expert exist at 0 from start-up (and from LoadExperts on for experts
// loaded live); handles resolved once; the hosted experts and their resident bytes as gauges. Owned by
// moe-expert's main; used by ExpertServiceImpl. Thread-safe.
#pragma once

#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "experts/expert_backend.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace moe::server {

class ExpertMetrics {
 public:
  // `always_on_id` is the expert id of the always-on MLPs (num_experts of the model).
  ExpertMetrics(prometheus::Registry& registry, const std::vector<experts::ExpertKey>& hosted, int always_on_id);

  void RecordRequest(grpc::StatusCode code);
  void RecordRows(int expert, int64_t rows);
  // What is hosted now (after LoadExperts/UnloadExperts): series for new experts, the gauges.
  void SetHosted(const std::vector<experts::ExpertKey>& hosted, int64_t resident_bytes);
  // One compute step of `requests` batched requests that took `duration`.
  void RecordStep(absl::Duration duration, size_t requests);
  void SetQueueDepth(size_t depth);

 private:
  std::vector<prometheus::Counter*> requests_;  // [code]
  const int always_on_id_;
  prometheus::Family<prometheus::Counter>* tokens_family_;
  prometheus::Gauge* hosted_;
  prometheus::Gauge* resident_;
  absl::Mutex mu_;
  absl::flat_hash_map<int, prometheus::Counter*> tokens_ ABSL_GUARDED_BY(mu_);  // expert id → counter
  prometheus::Histogram* compute_;
  prometheus::Histogram* batch_;
  prometheus::Gauge* queue_depth_;
};

}  // namespace moe::server
