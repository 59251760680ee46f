// server/expert_compute.h
// The work of one ExpertService.Forward, apart from gRPC: validate the request against what the
// backend hosts, decode the tokens, run the expert groups, encode the outputs in the tokens'
// dtype. Called by the worker service on its compute queue (and by test fakes of a worker).
// Thread-safe if the backend is.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "experts/expert_backend.h"
#include "moe/v1/moe.pb.h"

namespace moe::server {

// INVALID_ARGUMENT for malformed tokens or groups (naming the field), NOT_FOUND for an expert
// or layer the backend does not host, RESOURCE_EXHAUSTED beyond `max_rows` rows.
absl::Status RunExpertRequest(experts::ExpertBackend& backend, int64_t max_rows,
                              const moe::v1::ExpertRequest& request,
                              moe::v1::ExpertResponse* response);

}  // namespace moe::server
