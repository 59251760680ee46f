// server/worker/expert_compute.cc
#include "server/worker/expert_compute.h"

#include "model/finite_values.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "proto/tensor_codec.h"

namespace moe::server {

namespace {

// The each-token-once form: validated, then expanded into one row per pair, grouped by expert in
// ascending order (tokens in order within each), with the token and weight of every row.
absl::StatusOr<DecodedExpertRequest> DecodeEachTokenOnce(const experts::ExpertBackend& backend,
                                                         const moe::v1::ExpertRequest& request,
                                                         const model::Tensor& tokens, DecodedExpertRequest d) {
  const int64_t hidden = backend.hidden_size();
  d.tokens = d.rows;
  if (request.groups_size() > 0) {
    return absl::InvalidArgumentError("groups and pair_counts are two forms of a request; send one");
  }
  if (request.pair_counts_size() != d.tokens) {
    return absl::InvalidArgumentError(absl::StrCat("pair_counts has ", request.pair_counts_size(),
                                                   " entries; expected one per token (", d.tokens, ")"));
  }
  int64_t pairs = 0;
  for (int32_t c : request.pair_counts()) {
    if (c < 0) return absl::InvalidArgumentError(absl::StrCat("pair_counts has a negative entry (", c, ")"));
    pairs += c;
  }
  if (request.pair_experts_size() != pairs || request.pair_weights_size() != pairs) {
    return absl::InvalidArgumentError(absl::StrCat("pair_experts has ", request.pair_experts_size(),
                                                   " and pair_weights ", request.pair_weights_size(),
                                                   " entries; pair_counts add up to ", pairs));
  }
  // Rows by expert (ascending), tokens in order within each.
  absl::flat_hash_map<int32_t, int64_t> count_of;
  for (int64_t p = 0; p < pairs; ++p) {
    const int32_t e = request.pair_experts(static_cast<int>(p));
    if (!std::isfinite(request.pair_weights(static_cast<int>(p)))) {
      return absl::InvalidArgumentError(absl::StrCat("pair_weights[", p, "] is not finite"));
    }
    if (count_of.find(e) == count_of.end()) {
      const experts::ExpertKey key{static_cast<int>(request.layer()), e};
      if (!backend.Hosts(key)) {
        return absl::NotFoundError(absl::StrCat("expert ", key.expert, " of layer ", key.layer,
                                                " is not hosted by this ", backend.name(), " backend"));
      }
    }
    ++count_of[e];
  }
  std::vector<int32_t> experts;
  for (const auto& [e, count] : count_of) experts.push_back(e);
  std::sort(experts.begin(), experts.end());
  absl::flat_hash_map<int32_t, int64_t> next_row;
  int64_t row = 0;
  for (int32_t e : experts) {
    d.groups.push_back({{static_cast<int>(request.layer()), e}, row, count_of[e]});
    next_row[e] = row;
    row += count_of[e];
  }
  d.rows = pairs;
  std::vector<float> sent(static_cast<size_t>(d.tokens * hidden));
  model::ConvertToF32(tokens.dtype(), tokens.raw_data(), sent.data(), sent.size());
  RETURN_IF_ERROR(model::CheckFiniteRows(sent, hidden, "tokens", "row", absl::StatusCode::kInvalidArgument,
                                           "expected finite values"));
  d.in.resize(static_cast<size_t>(pairs * hidden));
  d.pair_token.resize(static_cast<size_t>(pairs));
  d.pair_weight.resize(static_cast<size_t>(pairs));
  int64_t p = 0;
  for (int64_t t = 0; t < d.tokens; ++t) {
    for (int32_t j = 0; j < request.pair_counts(static_cast<int>(t)); ++j, ++p) {
      const int64_t r = next_row[request.pair_experts(static_cast<int>(p))]++;
      std::memcpy(&d.in[r * hidden], &sent[t * hidden], static_cast<size_t>(hidden) * sizeof(float));
      d.pair_token[r] = static_cast<int32_t>(t);
      d.pair_weight[r] = request.pair_weights(static_cast<int>(p));
    }
  }
  d.out.resize(d.in.size());
  return d;
}

}  // namespace

absl::StatusOr<DecodedExpertRequest> DecodeExpertRequest(const experts::ExpertBackend& backend, int64_t max_rows,
                                                         const moe::v1::ExpertRequest& request) {
  ASSIGN_OR_RETURN(model::Tensor tokens, proto::ViewTensor(request.tokens(), "tokens"));
  const int64_t hidden = backend.hidden_size();
  if (tokens.rank() != 2 || tokens.dim(1) != hidden) {
    return absl::InvalidArgumentError(absl::StrCat("tokens.shape is ", model::ShapeString(tokens.shape()),
                                                   "; expected [rows, ", hidden, "]"));
  }
  DecodedExpertRequest d;
  d.rows = tokens.dim(0);
  d.dtype = tokens.dtype();
  if (d.rows > max_rows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tokens has ", d.rows, " rows; this worker accepts at most ", max_rows));
  }
  if (request.pair_counts_size() > 0 || request.pair_experts_size() > 0 || request.pair_weights_size() > 0) {
    return DecodeEachTokenOnce(backend, request, tokens, std::move(d));
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
  model::ConvertToF32(tokens.dtype(), tokens.raw_data(), d.in.data(), d.in.size());
  RETURN_IF_ERROR(model::CheckFiniteRows(d.in, hidden, "tokens", "row", absl::StatusCode::kInvalidArgument,
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
  if (decoded.pair_token.empty() && decoded.tokens == 0) {
    proto::EncodeF32(decoded.out, {decoded.rows, hidden}, decoded.dtype, response->mutable_outputs());
    return;
  }
  // Each token once: Σ w·E(x) per token, rows taken expert by expert (ascending), so each token's
  // sum runs over its experts in ascending order.
  std::vector<float> sums(static_cast<size_t>(decoded.tokens * hidden), 0.0f);
  for (int64_t r = 0; r < decoded.rows; ++r) {
    float* dst = &sums[static_cast<int64_t>(decoded.pair_token[r]) * hidden];
    const float* src = &decoded.out[r * hidden];
    const float w = decoded.pair_weight[r];
    for (int64_t j = 0; j < hidden; ++j) dst[j] += w * src[j];
  }
  proto::EncodeF32(sums, {decoded.tokens, hidden}, decoded.dtype, response->mutable_outputs());
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
