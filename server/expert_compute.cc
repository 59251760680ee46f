// server/expert_compute.cc
#include "server/expert_compute.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "experts/status_macros.h"
#include "proto/tensor_codec.h"

namespace moe::server {

absl::Status RunExpertRequest(experts::ExpertBackend& backend, int64_t max_rows,
                              const moe::v1::ExpertRequest& request,
                              moe::v1::ExpertResponse* response) {
  ASSIGN_OR_RETURN(experts::Tensor tokens, proto::ViewTensor(request.tokens(), "tokens"));
  const int64_t hidden = backend.hidden_size();
  if (tokens.rank() != 2 || tokens.dim(1) != hidden) {
    return absl::InvalidArgumentError(absl::StrCat("tokens.shape is ", experts::ShapeString(tokens.shape()),
                                                   "; expected [rows, ", hidden, "]"));
  }
  const int64_t rows = tokens.dim(0);
  if (rows > max_rows) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tokens has ", rows, " rows; this worker accepts at most ", max_rows));
  }
  std::vector<experts::ExpertGroup> groups;
  groups.reserve(request.groups_size());
  int64_t next_row = 0;
  for (const moe::v1::ExpertGroup& g : request.groups()) {
    if (g.num_rows() < 0 || g.num_rows() > rows - next_row) {
      return absl::InvalidArgumentError(absl::StrCat("groups: expert ", g.expert(), " asks for ",
                                                     g.num_rows(), " rows but only ", rows - next_row,
                                                     " remain of the ", rows, " sent"));
    }
    groups.push_back({{request.layer(), g.expert()}, next_row, g.num_rows()});
    next_row += g.num_rows();
  }
  if (next_row != rows) {
    return absl::InvalidArgumentError(absl::StrCat("groups cover ", next_row, " rows; expected all ",
                                                   rows, " rows of tokens"));
  }
  std::vector<float> in(static_cast<size_t>(rows * hidden));
  experts::ConvertToF32(tokens.dtype(), tokens.raw_data(), in.data(), in.size());
  std::vector<float> out(in.size());
  RETURN_IF_ERROR(backend.Run(groups, in, absl::MakeSpan(out)));
  proto::EncodeF32(out, {rows, hidden}, tokens.dtype(), response->mutable_outputs());
  return absl::OkStatus();
}

}  // namespace moe::server
