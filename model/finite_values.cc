// model/finite_values.cc
#include "model/finite_values.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace moe::model {

absl::Status CheckFiniteRows(absl::Span<const float> values, int64_t width, absl::string_view what,
                             absl::string_view row, absl::StatusCode code, absl::string_view hint) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::Status(code, absl::StrCat(what, " holds ", values[i], " at ", row, " ", i / width, ", column ",
                                             i % width, "; ", hint));
    }
  }
  return absl::OkStatus();
}

}  // namespace moe::model
