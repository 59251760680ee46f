// proto/status_convert.h
// The one conversion between absl::Status (used by every module) and grpc::Status (the wire).
// Canonical codes map one to one. Used by the services (server/) and the client library.
// Pure functions; thread-safe.
#pragma once

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace moe::proto {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace moe::proto
