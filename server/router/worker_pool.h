// server/router/worker_pool.h
// The router's view of its expert workers: one long-lived channel each, what each hosts (asked
// once with GetWorkerInfo at start), the placement of every (layer, expert) on its replicas, the
// choice of a replica per call (live first, then fewest calls in flight, then the lowest index),
// and — once StartHealthChecks runs — a grpc.health.v1 Check of every worker each interval: a
// worker that does not answer in time is marked down (new dispatches avoid it) and its calls in
// flight are cancelled, so DispatchCall fails them over to replicas instead of waiting out the
// deadline; one that answers NOT_SERVING (draining) is avoided but its calls are left to finish.
// Workers may join while serving (AddWorker: worker discovery) and leave (SetLeaving, then Remove
// once nothing is placed on them: the index stays, as a tombstone, and a worker that comes back
// at the same address takes it again); indices are stable, and size() only grows. The placement
// may change while serving (the placement controller's AddReplicas/RemoveReplicas after a
// worker's LoadExperts/UnloadExperts). Everything after Connect is thread-safe.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "grpcpp/security/credentials.h"
#include "model/model_config.h"
#include "moe/v1/moe.grpc.pb.h"

namespace moe::server {

// One call in flight to a worker, as the health checker sees it (DispatchCall owns one per call).
struct TrackedCall {
  std::unique_ptr<grpc::ClientContext> context;
  // Set by the health checker just before it cancels the call: the worker stopped answering.
  std::atomic<bool> worker_lost{false};
};

struct HealthCheckOptions {
  absl::Duration interval = absl::Milliseconds(250);  // from the start of one round to the next
  absl::Duration timeout = absl::Milliseconds(500);   // a Check not answered by then has failed
  // Failed Checks in a row that mark a worker down (one late answer on a busy host is not an
  // outage); an answer of NOT_SERVING counts at once.
  int failures = 2;
};

class WorkerPool {
 public:
  struct Worker {
    std::string address;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<moe::v1::ExpertService::Stub> stub;
    absl::Mutex info_mu;
    moe::v1::GetWorkerInfoResponse info ABSL_GUARDED_BY(info_mu);  // as it last said (WorkerPool::Info)
    std::atomic<int> inflight{0};
    std::atomic<bool> up{true};       // the last call reached it (it answered GetWorkerInfo at start)
    std::atomic<bool> healthy{true};  // health checks answer SERVING in time
    std::atomic<int> missed{0};       // health checks in a row not answered in time
    std::atomic<bool> leaving{false};  // gone from discovery: its experts are being moved away
    std::atomic<bool> removed{false};  // out of the pool (nothing placed on it, not checked)
    absl::Mutex calls_mu;
    absl::flat_hash_map<TrackedCall*, std::shared_ptr<TrackedCall>> calls ABSL_GUARDED_BY(calls_mu);
  };
  // Called (from the health-check thread) when a worker's health changes: the worker's index and
  // whether it is healthy now.
  using HealthChanged = std::function<void(int worker, bool healthy)>;

  static constexpr int kMaxWorkers = 1024;

  WorkerPool();
  ~WorkerPool();  // stops the health checks
  // Asks every worker for its GetWorkerInfo, waiting up to `timeout` for each to come up; the
  // channels use `credentials` (null: plaintext; proto::ChannelTls for mTLS).
  // UNAVAILABLE naming the worker if one does not answer in time; FAILED_PRECONDITION if a
  // worker's hidden size, model type or expert count disagree with `config`.
  static absl::StatusOr<std::unique_ptr<WorkerPool>> Connect(const std::vector<std::string>& addresses,
                                                             const model::ModelConfig& config,
                                                             absl::Duration timeout,
                                                             int64_t max_message_bytes,
                                                             std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

  // FAILED_PRECONDITION listing every key of `needed` that no worker hosts.
  absl::Status CheckCoverage(absl::Span<const experts::ExpertKey> needed) const;

  // Workers ever added (removed ones included): indices are [0, size()).
  int size() const { return count_.load(std::memory_order_acquire); }
  // Connects to one more worker (asking its GetWorkerInfo, checked as Connect does, up to
  // `timeout`) and places what it hosts; a removed worker at the same address is taken back.
  // Returns its index. ALREADY_EXISTS if it is in the pool; RESOURCE_EXHAUSTED past kMaxWorkers;
  // errors as Connect.
  absl::StatusOr<int> AddWorker(const std::string& address, absl::Duration timeout);
  // Worker i is going away (discovery lost it): the placement controller moves its experts off
  // and then calls Remove. Remove takes it out of the placement and of the health checks.
  void SetLeaving(int i, bool leaving = true);
  bool IsLeaving(int i) const { return workers_[i]->leaving.load(); }
  void Remove(int i);
  bool IsRemoved(int i) const { return workers_[i]->removed.load(std::memory_order_acquire); }
  // (layer, expert) pairs placed on worker i.
  int PlacedOn(int i) const;
  // The addresses of the workers not removed.
  std::vector<std::string> ActiveAddresses() const;
  Worker& worker(int i) { return *workers_[i]; }
  const Worker& worker(int i) const { return *workers_[i]; }
  // Workers hosting `key` (empty if none), ascending.
  std::vector<int> ReplicasOf(const experts::ExpertKey& key) const;
  // The whole placement: (layer, expert) → workers hosting it, ascending.
  using Placement = absl::flat_hash_map<experts::ExpertKey, std::vector<int>>;
  Placement placement() const;
  // Live placement: worker i hosts `keys` too from now on (after its LoadExperts answered) / no
  // longer gets them (before its UnloadExperts). Each change increments generation().
  void AddReplicas(int i, absl::Span<const experts::ExpertKey> keys);
  void RemoveReplicas(int i, absl::Span<const experts::ExpertKey> keys);
  int64_t generation() const;
  // What worker i last said of itself (GetWorkerInfo at start, then each placement change).
  moe::v1::GetWorkerInfoResponse Info(int i) const;
  void SetInfo(int i, moe::v1::GetWorkerInfoResponse info);
  // Whether worker i's channel is not in TRANSIENT_FAILURE (asks it to connect if idle).
  bool IsConnectable(int i) const;
  // The replica of `key` to call now: a live one (healthy, channel not failing) with the fewest
  // calls in flight, ties to the lowest index; else any replica; -1 if no worker hosts `key`.
  int Pick(const experts::ExpertKey& key) const;
  // Like Pick among the replicas of `key` other than `exclude`, healthy ones only; -1 if none.
  int PickFailover(const experts::ExpertKey& key, int exclude) const;
  // Records whether a call to worker i reached it (UNAVAILABLE means not); logs one line when
  // its state changes. Returns true if it changed.
  bool ReportOutcome(int i, const grpc::Status& status);
  // Per routed expert of `layer` (num_experts of them): true when no replica is up.
  std::vector<uint8_t> UnavailableExperts(int layer, int num_experts) const;
  // Per routed expert of `config`: the workers up and healthy hosting it, the fewest over MoE layers.
  std::vector<int> AvailableReplicas(const model::ModelConfig& config) const;
  // Up: in the pool, its last call reached it, its last health check passed, its channel is not
  // failing.
  bool IsUp(int i) const { return !IsRemoved(i) && workers_[i]->up.load() && IsHealthy(i) && IsConnectable(i); }
  // Whether worker i answered its last health check (true until checks start).
  bool IsHealthy(int i) const { return workers_[i]->healthy.load(std::memory_order_acquire); }

  // Registers a call about to be issued to worker i / forgets it once its reply came.
  void Track(int i, std::shared_ptr<TrackedCall> call);
  void Untrack(int i, TrackedCall* call);

  // Starts the health-check thread (at most once). `changed` may be empty.
  void StartHealthChecks(HealthCheckOptions options, HealthChanged changed);
  // Stops them and waits for the thread (before what `changed` uses goes away). Idempotent.
  void StopHealthChecks();
  // Records a health-check outcome for worker i (what the thread does each round; tests call it).
  // `answered`: the worker replied in time; `serving`: it replied SERVING. Down after
  // HealthCheckOptions::failures unanswered checks in a row, or one NOT_SERVING answer.
  void SetHealth(int i, bool answered, bool serving, absl::string_view reason);

 private:
  int Best(absl::Span<const int> candidates, int exclude, bool healthy_only) const;
  static moe::v1::GetWorkerInfoResponse InfoOf(Worker& w);
  void CheckLoop();

  model::ModelConfig config_;
  int64_t max_message_bytes_ = 0;
  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  absl::Mutex add_mu_;  // one AddWorker at a time
  // kMaxWorkers slots allocated at construction, so that adding never moves what readers index;
  // count_ publishes each new one.
  std::unique_ptr<std::unique_ptr<Worker>[]> workers_;
  std::atomic<int> count_{0};
  HealthCheckOptions health_options_;
  HealthChanged health_changed_;
  absl::Mutex health_mu_;
  bool stopping_ ABSL_GUARDED_BY(health_mu_) = false;
  std::thread health_thread_;
  mutable absl::Mutex placement_mu_;
  Placement placement_ ABSL_GUARDED_BY(placement_mu_);
  int64_t generation_ ABSL_GUARDED_BY(placement_mu_) = 0;
};

}  // namespace moe::server
