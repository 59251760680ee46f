// server/router/worker_pool.h
// The router's view of its expert workers: one long-lived channel each, what each hosts (asked
// once with GetWorkerInfo at start), the placement of every (layer, expert) on its replicas, and
// the choice of a replica per call (connectable first, then fewest calls in flight). Built once
// at start; Pick and the in-flight counters are thread-safe.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "experts/model_config.h"
#include "moe/v1/moe.grpc.pb.h"

namespace moe::server {

class WorkerPool {
 public:
  struct Worker {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<moe::v1::ExpertService::Stub> stub;
    moe::v1::GetWorkerInfoResponse info;
    std::atomic<int> inflight{0};
    std::atomic<bool> up{true};  // the last call reached it (it answered GetWorkerInfo at start)
  };

  // Asks every worker for its GetWorkerInfo, waiting up to `timeout` for each to come up.
  // UNAVAILABLE naming the worker if one does not answer in time; FAILED_PRECONDITION if a
  // worker's hidden size, model type or expert count disagree with `config`.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Connect(const std::vector<std::string>& addresses,
                                                             const experts::ModelConfig& config,
                                                             absl::Duration timeout,
                                                             int64_t max_message_bytes);

  // FAILED_PRECONDITION listing every key of `needed` that no worker hosts.
  absl::Status CheckCoverage(absl::Span<const experts::ExpertKey> needed) const;

  int size() const { return static_cast<int>(workers_.size()); }
  Worker& worker(int i) { return *workers_[i]; }
  const Worker& worker(int i) const { return *workers_[i]; }
  // Workers hosting `key` (empty if none).
  absl::Span<const int> ReplicasOf(const experts::ExpertKey& key) const;
  // Whether worker i's channel is not in TRANSIENT_FAILURE (asks it to connect if idle).
  bool IsConnectable(int i) const;
  // The replica of `key` to call now: a connectable one with the fewest calls in flight, else
  // any replica; -1 if no worker hosts `key`.
  int Pick(const experts::ExpertKey& key) const;
  // A worker other than `exclude` hosting every key in `keys`, chosen as Pick does; -1 if none.
  int PickAlternative(absl::Span<const experts::ExpertKey> keys, int exclude) const;
  // Records whether a call to worker i reached it (UNAVAILABLE means not); logs one line when
  // its state changes. Returns true if it changed.
  bool ReportOutcome(int i, const grpc::Status& status);
  // Per routed expert of `config`: the workers up hosting it, the fewest over MoE layers.
  std::vector<int> AvailableReplicas(const experts::ModelConfig& config) const;
  // Up: its last call reached it and its channel is not failing.
  bool IsUp(int i) const { return workers_[i]->up.load() && IsConnectable(i); }

 private:
  int Best(absl::Span<const int> candidates, int exclude) const;

  std::vector<std::unique_ptr<Worker>> workers_;
  absl::flat_hash_map<experts::ExpertKey, std::vector<int>> placement_;
};

}  // namespace moe::server
