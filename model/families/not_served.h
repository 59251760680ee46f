// model/families/not_served.h
// The model_types moe-serve knows and does not serve, each with the reason a user reads in the
// refusal: families of current transformers whose routing or expert math is not built yet (what
// each needs; docs/ROUTING.md and ../shared/design/families-2026.md have the math), multimodal
// wrappers not mapped yet, and those refused by design (their MoE is not a per-token function of
// the token's hidden state, which is what a router serves). Read by FindFamily (model_config.cc)
// for an unknown model_type; constant data, safe to share across threads.
#pragma once

#include "absl/strings/string_view.h"

namespace moe::model {

struct NotServed {
  const char* model_type;
  bool by_design;  // false: not yet (the reason says what it needs)
  const char* reason;
};

// The entry for `model_type`, or nullptr when moe-serve has none (an unknown type).
const NotServed* FindNotServed(absl::string_view model_type);

}  // namespace moe::model
