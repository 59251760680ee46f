// server/expert_list.h
// Parses moe-expert's --experts flag: "all", "3", "0-3", or a comma list of those ("0-1,6").
// Pure function; thread-safe.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace moe::server {

// Sorted, distinct expert ids. INVALID_ARGUMENT naming the bad item when an item is not a
// number or range, is reversed, or falls outside [0, num_experts).
absl::StatusOr<std::vector<int>> ParseExpertList(absl::string_view text, int num_experts);

}  // namespace moe::server
