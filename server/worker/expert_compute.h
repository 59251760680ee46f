// server/worker/expert_compute.h
// The work of ExpertService.Forward, apart from gRPC: decode and validate a request against what
// the backend hosts, run one or several decoded requests as one backend step, encode the outputs
// in each request's dtype. Called by the worker service on its batch thread (and by test fakes
// of a worker). Thread-safe if the backend is.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "experts/expert_backend.h"
#include "model/dtype.h"
#include "moe/v1/moe.pb.h"

namespace moe::server {

// One ExpertRequest, decoded: its groups (rows numbered within `in`), its rows in f32, and room
// for the outputs. A request in the each-token-once form is expanded: `in` holds one row per
// (token, expert) pair, grouped by expert, and row r's output is added with pair_weight[r] into
// token pair_token[r]'s sum when encoding.
struct DecodedExpertRequest {
  std::vector<experts::ExpertGroup> groups;
  int64_t rows = 0;                             // of `in` (expanded rows in the each-token-once form)
  model::DType dtype = model::DType::kF32;  // of the tokens; the outputs go back in it
  std::vector<float> in, out;                   // [rows, hidden]
  int64_t tokens = 0;                           // each-token-once form: tokens sent; else 0
  std::vector<int32_t> pair_token;              // [rows] in that form
  std::vector<float> pair_weight;               // [rows] in that form
};

// INVALID_ARGUMENT for malformed tokens or groups (naming the field), NOT_FOUND for an expert
// or layer the backend does not host, RESOURCE_EXHAUSTED beyond `max_rows` rows.
absl::StatusOr<DecodedExpertRequest> DecodeExpertRequest(const experts::ExpertBackend& backend, int64_t max_rows,
                                                         const moe::v1::ExpertRequest& request);

// Computes every request's `out` in one backend Run: the rows each expert gets from all the
// requests are gathered into one group, so its weights are read once for all of them, and the
// results scattered back. A single request runs in place (no copies). The outputs equal running
// each request alone up to f32 rounding (BLAS may sum a 40-row group differently from a 5-row one).
absl::Status RunExpertBatch(experts::ExpertBackend& backend, absl::Span<DecodedExpertRequest* const> batch);

// RunExpertBatch, and if the merged step fails while the backend stays healthy, each request
// again alone — a merged step can fail where its parts would not (say, out of device memory), and
// no request should fail for what it was batched with. One status per request.
std::vector<absl::Status> RunExpertBatchOrEach(experts::ExpertBackend& backend,
                                               absl::Span<DecodedExpertRequest* const> batch);

// Writes `decoded.out` into `response` in the request's dtype (in the each-token-once form, the
// weighted sum per token).
void EncodeExpertResponse(const DecodedExpertRequest& decoded, int64_t hidden, moe::v1::ExpertResponse* response);

// Decode, run alone, encode: one request start to finish.
absl::Status RunExpertRequest(experts::ExpertBackend& backend, int64_t max_rows,
                              const moe::v1::ExpertRequest& request, moe::v1::ExpertResponse* response);

}  // namespace moe::server
