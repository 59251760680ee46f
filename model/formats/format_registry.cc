// model/formats/format_registry.cc — the list of weight formats.
#include "absl/strings/str_join.h"
#include "model/formats/weight_format.h"

namespace moe::model {
namespace {

const WeightFormat* const kFormats[] = {&kQ8_0, &kQ4_0, &kQ4_K, &kQ5_K, &kQ6_K, &kIq4Xs,
                                        &kMxfp4, &kMxfp4Gguf, &kInt4, &kFp8E4m3, &kInt8};

}  // namespace

const WeightFormat* FindWeightFormat(absl::string_view name) {
  for (const WeightFormat* f : kFormats) {
    if (name == f->name) return f;
  }
  return nullptr;
}

std::vector<std::string> WeightFormatNames() {
  std::vector<std::string> names;
  for (const WeightFormat* f : kFormats) names.emplace_back(f->name);
  return names;
}

std::vector<std::string> QuantizableFormatNames() {
  std::vector<std::string> names;
  for (const WeightFormat* f : kFormats) {
    if (f->quantize != nullptr) names.emplace_back(f->name);
  }
  return names;
}

}  // namespace moe::model
