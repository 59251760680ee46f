// server/common/server_runtime.h
// What every moe-serve server process does around its services: start a gRPC server with the
// health service, raised message limits and keepalive; report readiness (health + an optional
// ready file descriptor for launchers); on SIGTERM/SIGINT turn NOT_SERVING, stop accepting and
// drain in-flight calls. Used by the binaries' mains and by tests. Functions are thread-safe.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"

namespace moe::server {

// Health service name that reports liveness (SERVING from start until drain); readiness is the
// empty name and each service's full name.
inline constexpr char kLivenessService[] = "liveness";

struct ServerOptions {
  std::string listen = "0.0.0.0:0";
  int64_t max_message_bytes = 64 << 20;
  std::shared_ptr<grpc::ServerCredentials> credentials;  // null: plaintext (proto::ServerTls for TLS)
};

// Starts a server with `services` on `options.listen`; readiness NOT_SERVING, liveness SERVING.
// Returns the server; `*port` gets the bound port. UNAVAILABLE if the address cannot be bound.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(const std::vector<grpc::Service*>& services,
                                                          const ServerOptions& options, int* port);

// A second, plaintext server on `listen` with only grpc.health.v1, mirroring the main server's
// health: what SetReady and the drain set on the main server is set here too. For probes that
// cannot speak TLS (Kubernetes' gRPC probes) when the main port is TLS. One per process;
// `*port` gets the bound port. UNAVAILABLE if the address cannot be bound.
absl::Status StartHealthMirror(const std::string& listen, int* port);

// Sets readiness of the empty service name and of `service_names` (and on the health mirror).
void SetReady(grpc::Server& server, const std::vector<std::string>& service_names, bool ready);

// Writes "<port> <metrics_port>\n" to `fd` and closes it (no-op for fd < 0): tells a launcher
// we are ready. metrics_port is -1 when metrics are off.
void NotifyReadyFd(int fd, int port, int metrics_port);

// Blocks SIGTERM and SIGINT in the calling thread and every thread it starts later. Call first
// in main, before gRPC starts threads.
void BlockTerminationSignals();
// Records that a call reached a handler (the services' first line): the drain below waits for
// the calls to stop arriving. Thread-safe, lock-free.
void NoteCallArrived();

// Waits for SIGTERM/SIGINT, then: health NOT_SERVING; keeps serving until no call has reached a
// handler for `quiet` (gRPC cancels a call whose request is still arriving when the server shuts
// down: a client that sent a large tensor just before the signal would get CANCELLED); then stops
// accepting, waits for in-flight calls until `drain` after the signal, cancels the rest. Returns
// the signal number.
int WaitForTerminationAndDrain(grpc::Server& server, absl::Duration drain,
                               absl::Duration quiet = absl::Milliseconds(300));

}  // namespace moe::server
