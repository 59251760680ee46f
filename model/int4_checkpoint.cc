// model/int4_checkpoint.cc
#include "model/int4_checkpoint.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "model/formats/weight_format.h"
#include "model/tensor.h"

namespace moe::model {
namespace {

constexpr int64_t kGroup = 128;
// AWQ's field order: field f of a word holds output column kAwqColumn[f] of its eight.
constexpr int kAwqField[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // the field holding column c

uint32_t Word(const PackedTensor& t, int64_t index) {
  uint32_t w;
  std::memcpy(&w, t.bytes + index * 4, 4);
  return w;
}

absl::Status Expect(const std::string& name, const char* what, const PackedTensor& t,
                    const char* dtype, std::vector<int64_t> shape) {
  if (t.dtype != dtype || t.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat("tensor '", name, ".", what, "' is ", t.dtype,
                                                   ShapeString(t.shape), ", expected ", dtype,
                                                   ShapeString(shape)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<QuantizedMatrix> UnpackInt4Linear(const std::string& method, const std::string& name,
                                                 int64_t out, int64_t in,
                                                 const PackedTensor& qweight,
                                                 const PackedTensor& qzeros,
                                                 const PackedTensor& scales,
                                                 const PackedTensor& g_idx) {
  if (in % kGroup != 0 || out % 8 != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": 4-bit weights of ", out, " × ", in,
                     " (served: inputs a multiple of 128, outputs of 8)"));
  }
  const bool awq = method == "awq";
  const int64_t groups = in / kGroup;
  absl::Status s =
      Expect(name, "qweight", qweight, "I32",
             awq ? std::vector<int64_t>{in, out / 8} : std::vector<int64_t>{in / 8, out});
  if (s.ok()) s = Expect(name, "qzeros", qzeros, "I32", {groups, out / 8});
  if (s.ok()) s = Expect(name, "scales", scales, "F16", {groups, out});
  if (!s.ok()) return s;
  if (g_idx.bytes != nullptr) {
    if (g_idx.dtype != "I32" || g_idx.shape != std::vector<int64_t>{in}) {
      return absl::InvalidArgumentError(absl::StrCat("tensor '", name, ".g_idx' is ", g_idx.dtype,
                                                     ShapeString(g_idx.shape), ", expected I32[",
                                                     in, "]"));
    }
    for (int64_t i = 0; i < in; ++i) {
      if (static_cast<int64_t>(Word(g_idx, i)) != i / kGroup) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor '", name, ".g_idx' permutes the inputs (act-order, at input ", i,
                         "): not served"));
      }
    }
  }
  const int zero_offset = method == "gptq" ? 1 : 0;
  const auto code = [&](int64_t i, int64_t j) -> int {
    return awq ? (Word(qweight, i * (out / 8) + j / 8) >> (4 * kAwqField[j % 8])) & 15
               : (Word(qweight, (i / 8) * out + j) >> (4 * (i % 8))) & 15;
  };
  const auto zero = [&](int64_t g, int64_t j) -> int {
    const uint32_t w = Word(qzeros, g * (out / 8) + j / 8);
    return static_cast<int>((w >> (4 * (awq ? kAwqField[j % 8] : j % 8))) & 15) + zero_offset;
  };
  std::vector<uint8_t> rows(static_cast<size_t>(out * groups * kInt4.block_bytes));
  for (int64_t j = 0; j < out; ++j) {
    for (int64_t g = 0; g < groups; ++g) {
      uint8_t* block = rows.data() + (j * groups + g) * kInt4.block_bytes;
      std::memcpy(block, scales.bytes + (g * out + j) * 2, 2);
      block[2] = static_cast<uint8_t>(zero(g, j));
      for (int64_t t = 0; t < 64; ++t) {
        block[3 + t] =
            static_cast<uint8_t>(code(g * kGroup + t, j) | (code(g * kGroup + 64 + t, j) << 4));
      }
    }
  }
  return QuantizedMatrix::FromBytes(kInt4, out, in, rows.data());
}

}  // namespace moe::model
