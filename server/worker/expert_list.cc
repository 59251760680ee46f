// server/worker/expert_list.cc
#include "server/worker/expert_list.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace moe::server {

absl::StatusOr<ExpertSelection> ParseExpertList(absl::string_view text, int num_experts) {
  ExpertSelection selection;
  std::vector<int>& ids = selection.routed;
  for (absl::string_view item : absl::StrSplit(text, ',')) {
    item = absl::StripAsciiWhitespace(item);
    if (item == "shared") {
      selection.always_on = true;
      continue;
    }
    if (item == "all") {
      for (int e = 0; e < num_experts; ++e) ids.push_back(e);
      continue;
    }
    std::vector<absl::string_view> ends = absl::StrSplit(item, absl::MaxSplits('-', 1));
    int first = 0, last = 0;
    if (!absl::SimpleAtoi(ends[0], &first) || (ends.size() == 2 && !absl::SimpleAtoi(ends[1], &last))) {
      return absl::InvalidArgumentError(absl::StrCat("--experts: '", item, "' is not a number or range like 0-3"));
    }
    if (ends.size() == 1) last = first;
    if (first > last || first < 0 || last >= num_experts) {
      return absl::InvalidArgumentError(absl::StrCat("--experts: '", item, "' is outside [0, ", num_experts - 1, "]"));
    }
    for (int e = first; e <= last; ++e) ids.push_back(e);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  if (ids.empty() && !selection.always_on) return absl::InvalidArgumentError("--experts names no expert");
  return selection;
}

}  // namespace moe::server
