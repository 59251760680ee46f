// server/worker/expert_compute.cc
#include "server/worker/expert_compute.h"

#include "experts/finite_values.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "experts/status_macros.h"
#include "proto/tensor_codec.h"

namespace moe::server {

absl::StatusOr<DecodedExpertRequest> DecodeExpertRequest(const experts::ExpertBackend& backend, int64_t max_rows,
                                                         const moe::v1::ExpertRequest& request) {
  ASSIGN_OR_RETURN(experts::Tensor tokens, proto::ViewTensor(request.tokens(), "tokens"));
  const int64_t hidden = backend.hidden_size();
  if (tokens.rank() != 2 || tokens.dim(1) != hidden) {
    return absl::InvalidArgumentError(absl::StrCat("tokens.shape is ", experts::ShapeString(tokens.shape()),
                                                   "; expected [rows, ", hidden, "]"));
  }
  DecodedExpertRequest d;
  d.rows = tokens.dim(0);
  d.dtype = tokens.dtype();
  if (d.rows > max_rows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tokens has ", d.rows, " rows; this worker accepts at most ", max_rows));
  }
  d.groups.reserve(request.groups_size());
  int64_t next_row = 0;
  for (const moe::v1::ExpertGroup& g : request.groups()) {
    if (g.num_rows() < 0 || g.num_rows() > d.rows - next_row) {
      return absl::InvalidArgumentError(absl::StrCat("groups: expert ", g.expert(), " asks for ", g.num_rows(),
                                                     " rows but only ", d.rows - next_row, " remain of the ", d.rows,
                                                     " sent"));
    }
    const experts::ExpertKey key{static_cast<int>(request.layer()), static_cast<int>(g.expert())};
    if (!backend.Hosts(key)) {  // checked here so that one bad request cannot fail a whole batch
      return absl::NotFoundError(absl::StrCat("expert ", key.expert, " of layer ", key.layer,
                                              " is not hosted by this ", backend.name(), " backend"));
    }
    d.groups.push_back({key, next_row, g.num_rows()});
    next_row += g.num_rows();
  }
  if (next_row != d.rows) {
    return absl::InvalidArgumentError(absl::StrCat("groups cover ", next_row, " rows; expected all ", d.rows,
                                                   " rows of tokens"));
  }
  d.in.resize(static_cast<size_t>(d.rows * hidden));
  experts::ConvertToF32(tokens.dtype(), tokens.raw_data(), d.in.data(), d.in.size());
  RETURN_IF_ERROR(experts::CheckFiniteRows(d.in, hidden, "tokens", "row", absl::StatusCode::kInvalidArgument,
                                           "expected finite values"));
  d.out.resize(d.in.size());
  return d;
}

absl::Status RunExpertBatch(experts::ExpertBackend& backend, absl::Span<DecodedExpertRequest* const> batch) {
  if (batch.size() == 1) return backend.Run(batch[0]->groups, batch[0]->in, absl::MakeSpan(batch[0]->out));
  const int64_t h = backend.hidden_size();
  // The merged step: one group per expert, in order of first appearance, holding that expert's
  // rows from every request in request order.
  absl::flat_hash_map<experts::ExpertKey, size_t> index;
  std::vector<experts::ExpertGroup> merged;
  for (const DecodedExpertRequest* d : batch) {
    for (const experts::ExpertGroup& g : d->groups) {
      auto [it, added] = index.try_emplace(g.key, merged.size());
      if (added) merged.push_back({g.key, 0, 0});
      merged[it->second].num_rows += g.num_rows;
    }
  }
  int64_t total = 0;
  for (experts::ExpertGroup& g : merged) {
    g.row_begin = total;
    total += g.num_rows;
  }
  std::vector<float> in(static_cast<size_t>(total * h)), out(in.size());
  std::vector<int64_t> cursor(merged.size());
  for (size_t i = 0; i < merged.size(); ++i) cursor[i] = merged[i].row_begin;
  struct Segment {
    DecodedExpertRequest* request;
    int64_t request_row, merged_row, rows;
  };
  std::vector<Segment> segments;
  for (DecodedExpertRequest* d : batch) {
    for (const experts::ExpertGroup& g : d->groups) {
      if (g.num_rows == 0) continue;
      int64_t& at = cursor[index.find(g.key)->second];
      std::memcpy(&in[at * h], &d->in[g.row_begin * h], g.num_rows * h * sizeof(float));
      segments.push_back({d, g.row_begin, at, g.num_rows});
      at += g.num_rows;
    }
  }
  RETURN_IF_ERROR(backend.Run(merged, in, absl::MakeSpan(out)));
  for (const Segment& s : segments) {
    std::memcpy(&s.request->out[s.request_row * h], &out[s.merged_row * h], s.rows * h * sizeof(float));
  }
  return absl::OkStatus();
}

std::vector<absl::Status> RunExpertBatchOrEach(experts::ExpertBackend& backend,
                                               absl::Span<DecodedExpertRequest* const> batch) {
  const absl::Status status = RunExpertBatch(backend, batch);
  std::vector<absl::Status> statuses(batch.size(), status);
  if (!status.ok() && batch.size() > 1 && backend.Health().ok()) {
    for (size_t i = 0; i < batch.size(); ++i) statuses[i] = RunExpertBatch(backend, batch.subspan(i, 1));
  }
  return statuses;
}

void EncodeExpertResponse(const DecodedExpertRequest& decoded, int64_t hidden, moe::v1::ExpertResponse* response) {
  proto::EncodeF32(decoded.out, {decoded.rows, hidden}, decoded.dtype, response->mutable_outputs());
}

absl::Status RunExpertRequest(experts::ExpertBackend& backend, int64_t max_rows,
                              const moe::v1::ExpertRequest& request, moe::v1::ExpertResponse* response) {
  ASSIGN_OR_RETURN(DecodedExpertRequest decoded, DecodeExpertRequest(backend, max_rows, request));
  DecodedExpertRequest* one = &decoded;
  RETURN_IF_ERROR(RunExpertBatch(backend, absl::MakeConstSpan(&one, 1)));
  EncodeExpertResponse(decoded, backend.hidden_size(), response);
  return absl::OkStatus();
}

}  // namespace moe::server
