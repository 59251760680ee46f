// server/router/worker_discovery.h
// Where the router's workers are (--workers): a fixed list ("h1:50061,h2:50061"), a DNS name
// ("dns:///moe-expert:50061": every address it resolves to — a Kubernetes headless Service lists
// one per ready pod) or a file ("file:///etc/moe/workers": addresses one per line or comma-
// separated, # comments). For the last two, WorkerDiscovery re-reads the source every interval:
// a new address joins the pool (connected, its hosted experts placed; under --rebalance=auto the
// placement controller then gives it replicas); an address that is gone is marked leaving — the
// controller (auto) moves its experts to other workers and then removes it; without one, its
// experts that have other live replicas leave the placement at once and the worker is removed
// when nothing is left on it. A failed lookup changes nothing. Owned by the router's main; uses
// the pool, metrics (may be null) and controller (may be null), which must outlive it.
// Thread-safe; one thread.
#pragma once

#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/common/periodic_loop.h"
#include "server/router/router_metrics.h"
#include "server/router/worker_pool.h"

namespace moe::server {

struct WorkerSource {
  enum class Kind { kList, kDns, kFile };
  Kind kind = Kind::kList;
  std::vector<std::string> list;  // kList
  std::string host;               // kDns
  int port = 0;                   // kDns
  std::string path;               // kFile
  bool dynamic() const { return kind != Kind::kList; }
};

// INVALID_ARGUMENT for an empty flag, a dns:/// without host:port, file:/// without a path, or a
// dns:/// or file:/// given beside other entries.
absl::StatusOr<WorkerSource> ParseWorkerSource(const std::vector<std::string>& flag);

// The addresses the source names now, distinct: a list in its order, DNS and file sorted ("ip:port",
// "[ipv6]:port" from DNS).
// UNAVAILABLE naming the source when the name does not resolve or the file cannot be read.
absl::StatusOr<std::vector<std::string>> ResolveWorkers(const WorkerSource& source);

class PlacementController;

class WorkerDiscovery {
 public:
  WorkerDiscovery(WorkerSource source, WorkerPool* pool, RouterMetrics* metrics, bool controller_drains,
                  absl::Duration interval, absl::Duration connect_timeout);
  ~WorkerDiscovery();  // Stop()

  void Start();
  void Stop();  // idempotent; waits for a round in progress

  struct Round {
    std::vector<std::string> joined, leaving, removed, failed;
    std::string error;  // the lookup failed: nothing changed
  };
  // One round now (the thread's; tests).
  Round RunOnce();

 private:
  const WorkerSource source_;
  WorkerPool* pool_;
  RouterMetrics* metrics_;
  const bool controller_drains_;
  const absl::Duration interval_, connect_timeout_;
  absl::Mutex round_mu_;
  PeriodicLoop loop_;  // last: its thread uses everything above
};

}  // namespace moe::server
