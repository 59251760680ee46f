// server/worker/expert_metrics.h
// A worker's Prometheus metrics: requests by code, token rows processed per hosted expert
// (expert="shared" for the always-on MLPs), compute duration and requests per compute step,
// compute queue depth, build info.
// Series for every hosted expert exist at 0 from start-up; handles resolved once. Owned by
// moe-expert's main; used by ExpertServiceImpl. Thread-safe.
#pragma once

#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "experts/expert_backend.h"
#include "grpcpp/support/status.h"
#include "prometheus/counter.h"
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
  // One compute step of `requests` batched requests that took `duration`.
  void RecordStep(absl::Duration duration, size_t requests);
  void SetQueueDepth(size_t depth);

 private:
  std::vector<prometheus::Counter*> requests_;  // [code]
  absl::flat_hash_map<int, prometheus::Counter*> tokens_;  // expert id → counter
  prometheus::Histogram* compute_;
  prometheus::Histogram* batch_;
  prometheus::Gauge* queue_depth_;
};

}  // namespace moe::server
