// server/common/metrics_server.h
// Serves a registry at http://<address>/metrics (prometheus-cpp's civetweb exposer) for
// Prometheus to scrape. Owned by a binary's main, which calls StopMetricsServer before its
// registry and metrics are destroyed. Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace moe::server {

struct MetricsServer {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::weak_ptr<prometheus::Registry> registry;
  int port = 0;
};

// Listens on `host:port` (port 0 picks a free one). UNAVAILABLE if it cannot bind.
absl::StatusOr<MetricsServer> StartMetricsServer(const std::string& host, int port,
                                                 std::shared_ptr<prometheus::Registry> registry);

// Stops serving the registry — waits for a scrape in progress, after which no scrape reads it —
// and leaves the exposer's threads to process exit (civetweb's teardown waits out its poll loop,
// about 2 s, for nothing left to serve). A no-op on a server that was never started.
void StopMetricsServer(MetricsServer& server);

// The host part of "host:port" (for binding metrics beside the gRPC address).
std::string HostOf(const std::string& address);

}  // namespace moe::server
