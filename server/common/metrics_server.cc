// server/common/metrics_server.cc
#include "server/common/metrics_server.h"

#include <exception>

#include "absl/strings/str_cat.h"

namespace moe::server {

absl::StatusOr<MetricsServer> StartMetricsServer(const std::string& host, int port,
                                                 std::shared_ptr<prometheus::Registry> registry) {
  MetricsServer server;
  const std::string address = absl::StrCat(host, ":", port);
  try {
    server.exposer = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  server.exposer->RegisterCollectable(registry);
  server.registry = registry;
  const std::vector<int> ports = server.exposer->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address));
  server.port = ports.front();
  return server;
}

void StopMetricsServer(MetricsServer& server) {
  if (server.exposer == nullptr) return;
  server.exposer->RemoveCollectable(server.registry);  // under the lock a scrape holds while collecting
  (void)server.exposer.release();
}

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  std::string host = colon == std::string::npos ? address : address.substr(0, colon);
  return host.empty() ? "0.0.0.0" : host;
}

}  // namespace moe::server
