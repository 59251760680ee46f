// server/common/metrics_server.h
// Serves a registry at http://<address>/metrics (prometheus-cpp's civetweb exposer) for
// Prometheus to scrape. Owned by a binary's main for its whole life. Thread-safe.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace moe::server {

struct MetricsServer {
  std::unique_ptr<prometheus::Exposer> exposer;
  int port = 0;
};

// Listens on `host:port` (port 0 picks a free one). UNAVAILABLE if it cannot bind.
absl::StatusOr<MetricsServer> StartMetricsServer(const std::string& host, int port,
                                                 std::shared_ptr<prometheus::Registry> registry);

// The host part of "host:port" (for binding metrics beside the gRPC address).
std::string HostOf(const std::string& address);

}  // namespace moe::server
