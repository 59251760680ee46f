// server/cluster/local_cluster.h
// Starts a router and W expert workers as child processes on loopback (ephemeral ports), waits
// until each reports SERVING through a ready pipe, and stops them with SIGTERM. Used by
// moe-cluster, scripts/demo.sh and the integration tests. Not thread-safe: one owner.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace moe::server {

// One child process that reported the port it serves on.
struct ChildProcess {
  pid_t pid = -1;
  int port = 0;
  int metrics_port = -1;  // -1: metrics off
  std::string name;
};

// Starts `argv` (argv[0] is the binary path) with an extra --ready_fd flag and waits up to
// `timeout` for it to write its port. UNAVAILABLE (with the exit status) if it exits first,
// DEADLINE_EXCEEDED if it does not report in time (it is killed then).
absl::StatusOr<ChildProcess> SpawnServer(std::vector<std::string> argv, absl::Duration timeout);
// Sends `signal` to the child and reaps it; returns its exit code (128 + signal if killed).
int StopChild(ChildProcess& child, int signal);

struct ClusterOptions {
  std::string checkpoint;
  int workers = 2;      // expert ranges, split evenly; 0 = no workers, a --local router
  int replicas = 1;     // processes per range
  std::string bin_dir;  // holds moe-expert and moe-router; default: this executable's folder
  std::string host = "127.0.0.1";
  bool shared_on_workers = false;  // the first expert range also hosts the always-on MLPs
  std::vector<std::string> worker_flags;
  std::vector<std::string> router_flags;
  absl::Duration start_timeout = absl::Seconds(300);
  bool metrics = true;  // serve /metrics on an ephemeral port of `host` in every process
};

class LocalCluster {
 public:
  // INVALID_ARGUMENT for impossible sizes; errors of SpawnServer. On error nothing is left running.
  static absl::StatusOr<std::unique_ptr<LocalCluster>> Start(const ClusterOptions& options);
  ~LocalCluster();

  std::string router_address() const;
  std::vector<std::string> worker_addresses() const;
  // host:port of the router's and each worker's /metrics (empty if off).
  std::string router_metrics_address() const;
  std::vector<std::string> worker_metrics_addresses() const;
  // Expert ids hosted by worker i.
  const std::vector<int>& experts_of(int worker) const { return experts_[worker]; }
  int num_workers() const { return static_cast<int>(workers_.size()); }
  ChildProcess& router() { return router_; }
  ChildProcess& worker(int i) { return workers_[i]; }

  // SIGKILLs worker i (a crash, not a drain) and reaps it.
  void KillWorker(int i);
  // SIGTERMs the router, then the workers; INTERNAL naming any that exited non-zero.
  absl::Status Stop();

 private:
  LocalCluster() = default;
  std::string host_;
  ChildProcess router_;
  std::vector<ChildProcess> workers_;
  std::vector<std::vector<int>> experts_;
};

// The folder of the running executable (for finding sibling binaries).
std::string ExecutableDir();

}  // namespace moe::server
