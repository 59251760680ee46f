// tests/testing/error_measures.h
// How far a computed vector is from its reference, for tests that compare against one. Every
// measure fails loudly rather than quietly: a NaN or ±Inf where the reference is finite, or sizes
// that differ, score +Inf (std::max(num, NaN) would keep num and let an all-NaN output pass).
// Test-only; pure functions.
#pragma once

#include <vector>

#include "absl/types/span.h"

namespace moe::testing {

// max |got − ref| ÷ max |ref| (÷ 1 when ref is all zeros); +Inf as above.
double MaxRelError(absl::Span<const float> got, absl::Span<const float> ref);
double MaxRelError(absl::Span<const float> got, absl::Span<const double> ref);
inline double MaxRelError(const std::vector<float>& got, const std::vector<float>& ref) {
  return MaxRelError(absl::MakeConstSpan(got), absl::MakeConstSpan(ref));
}
inline double MaxRelError(const std::vector<float>& got, const std::vector<double>& ref) {
  return MaxRelError(absl::MakeConstSpan(got), absl::MakeConstSpan(ref));
}

}  // namespace moe::testing
