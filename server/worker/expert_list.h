// server/worker/expert_list.h
// Parses moe-expert's --experts flag: "all", "3", "0-3", or a comma list of those ("0-1,6"),
// optionally with "shared" (the always-on MLPs: shared experts and dense layers). Pure; thread-safe.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::server {

struct ExpertSelection {
  std::vector<int> routed;  // sorted, distinct
  bool always_on = false;
};

// INVALID_ARGUMENT naming the bad item when an item is not a number, range or "shared", is
// reversed, or falls outside [0, num_experts), or when nothing is selected.
absl::StatusOr<ExpertSelection> ParseExpertList(absl::string_view text, int num_experts);

}  // namespace moe::server
