// model/finite_values.h
// The check every entry point makes on the values it is given or is about to send: NaN and ±Inf
// are refused naming where they are. Used by the router (hidden states, layer outputs) and the
// worker (tokens, expert outputs). Pure functions; thread-safe.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace moe::model {

// OK if every value is finite; else `code` (INVALID_ARGUMENT for inputs, OUT_OF_RANGE for
// outputs that overflowed) with "<what> holds <value> at <row> r, column c" and `hint`.
absl::Status CheckFiniteRows(absl::Span<const float> values, int64_t width, absl::string_view what,
                             absl::string_view row, absl::StatusCode code, absl::string_view hint);

}  // namespace moe::model
