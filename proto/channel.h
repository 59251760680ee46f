// proto/channel.h
// Channels for moe-serve's own clients (router → worker, client → router), with message limits
// and keepalive that match the servers' (server/common/server_runtime.h). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"

namespace moe::proto {

struct Keepalive {
  int time_ms = 30000;     // a ping after this long without one, also without calls in flight
  int timeout_ms = 10000;  // no ack by then: the connection is closed and its calls fail UNAVAILABLE
};
// Router → worker: a stopped or partitioned worker's connection is dropped within ~2 s (the
// health checks of WorkerPool notice it sooner; this also frees the transport).
inline constexpr Keepalive kWorkerKeepalive{.time_ms = 1000, .timeout_ms = 1000};

// The servers permit a ping per second (server_runtime.cc), so neither setting draws a GOAWAY.
// `credentials` null: plaintext (proto::ChannelTls for TLS).
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, int64_t max_message_bytes,
                                           Keepalive keepalive = {},
                                           std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

}  // namespace moe::proto
