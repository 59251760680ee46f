// experts/tensor_names.cc
#include "experts/tensor_names.h"

#include "absl/strings/str_cat.h"

namespace moe::experts {

std::string GateWeightName(int layer) {
  return absl::StrCat("model.layers.", layer, ".block_sparse_moe.gate.weight");
}

std::string ExpertWeightName(int layer, int expert, Projection projection) {
  const char* proj = projection == Projection::kW1 ? "w1" : projection == Projection::kW3 ? "w3" : "w2";
  return absl::StrCat("model.layers.", layer, ".block_sparse_moe.experts.", expert, ".", proj,
                      ".weight");
}

}  // namespace moe::experts
