// proto/channel.h
// Channels for moe-serve's own clients (router → worker, client → router), with message limits
// and keepalive that match the servers' (server/common/server_runtime.h). Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "grpcpp/channel.h"

namespace moe::proto {

// Keepalive pings every 30 s (the servers permit one per 10 s), also without calls in flight.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& address, int64_t max_message_bytes);

}  // namespace moe::proto
