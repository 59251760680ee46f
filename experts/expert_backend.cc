// experts/expert_backend.cc
#include "experts/expert_backend.h"

#include "absl/strings/str_cat.h"

namespace moe::experts {

absl::StatusOr<std::unique_ptr<ExpertBackend>> ExpertBackend::Rebuild(absl::Span<const ExpertWeights>,
                                                                      absl::Span<const ExpertKey>) const {
  return absl::UnimplementedError(
      absl::StrCat("the ", name(), " backend cannot change the experts it hosts while serving; restart it"));
}

absl::Status ValidateGroups(const ExpertBackend& backend, absl::Span<const ExpertGroup> groups,
                            size_t in_size, size_t out_size) {
  const size_t hidden = static_cast<size_t>(backend.hidden_size());
  if (in_size % hidden != 0 || in_size != out_size) {
    return absl::InvalidArgumentError(absl::StrCat("expert input has ", in_size,
                                                   " values and output ", out_size,
                                                   "; both must be rows × hidden size ", hidden));
  }
  const int64_t rows = static_cast<int64_t>(in_size / hidden);
  for (const ExpertGroup& g : groups) {
    if (g.row_begin < 0 || g.num_rows < 0 || g.row_begin + g.num_rows > rows) {
      return absl::InvalidArgumentError(absl::StrCat("group of expert ", g.key.expert, " (layer ",
                                                     g.key.layer, ") covers rows [", g.row_begin,
                                                     ", ", g.row_begin + g.num_rows,
                                                     ") outside the ", rows, " rows sent"));
    }
    if (!backend.Hosts(g.key)) {
      return absl::NotFoundError(absl::StrCat("expert ", g.key.expert, " of layer ", g.key.layer,
                                              " is not hosted by this ", backend.name(),
                                              " backend"));
    }
  }
  return absl::OkStatus();
}

}  // namespace moe::experts
