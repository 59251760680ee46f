// tests/testing/error_measures.cc
#include "tests/testing/error_measures.h"

#include <cmath>
#include <limits>

namespace moe::testing {
namespace {

template <typename Ref>
double MaxRel(absl::Span<const float> got, absl::Span<const Ref> ref) {
  constexpr double kFail = std::numeric_limits<double>::infinity();
  if (got.size() != ref.size()) return kFail;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double r = ref[i], g = got[i];
    if (std::isfinite(r) && !std::isfinite(g)) return kFail;
    const double diff = std::abs(g - r);
    if (std::isnan(diff)) return kFail;  // e.g. both Inf of opposite sign, or NaN in ref
    num = std::max(num, diff);
    den = std::max(den, std::abs(r));
  }
  return den > 0 ? num / den : num;
}

}  // namespace

double MaxRelError(absl::Span<const float> got, absl::Span<const float> ref) { return MaxRel(got, ref); }
double MaxRelError(absl::Span<const float> got, absl::Span<const double> ref) { return MaxRel(got, ref); }

}  // namespace moe::testing
