// tests/model/int4_checkpoint_test.cc
// AWQ and GPTQ linear layers unpacked into int4 blocks: one hand-packed layer per layout, every
// value (q − z)·s with the layout's field order and zero convention, and the refusals (dtype,
// shape, act-order g_idx, widths that are not whole groups). (Whole checkpoints served:
// tests/golden/int4_parity_test.py.)
#include "model/int4_checkpoint.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "model/dtype.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

using ::moe::testing::StatusIs;

constexpr int64_t kOut = 16, kIn = 256, kGroups = 2;

int Code(int64_t j, int64_t i) { return static_cast<int>((j * 7 + i * 3 + i / 5) % 16); }
int Zero(int64_t g, int64_t j) { return static_cast<int>((g * 5 + j) % 16); }
float Scale(int64_t g, int64_t j) { return F16ToF32(F32ToF16(0.01f * (1 + g) + 0.001f * j)); }

struct Packed {
  std::vector<int32_t> qweight, qzeros, g_idx;
  std::vector<uint16_t> scales;
  PackedTensor Tensor(const char* dtype, std::vector<int64_t> shape, const void* data) const {
    return {dtype, std::move(shape), static_cast<const uint8_t*>(data)};
  }
};

// Packs column/row values into words, field f (bits 4f) holding element fields[f] of each eight.
int32_t Word(const int values[8], const int fields[8]) {
  uint32_t w = 0;
  for (int f = 0; f < 8; ++f) w |= static_cast<uint32_t>(values[fields[f]] & 15) << (4 * f);
  return static_cast<int32_t>(w);
}

Packed Pack(const std::string& method) {
  static const int kAwqOrder[8] = {0, 2, 4, 6,
                                   1, 3, 5, 7};  // AutoAWQ: field f holds column kAwqOrder[f]
  static const int kPlain[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  Packed p;
  const bool awq = method == "awq";
  int v[8];
  if (awq) {
    for (int64_t i = 0; i < kIn; ++i) {
      for (int64_t w = 0; w < kOut / 8; ++w) {
        for (int c = 0; c < 8; ++c) v[c] = Code(8 * w + c, i);
        p.qweight.push_back(Word(v, kAwqOrder));
      }
    }
  } else {
    for (int64_t r = 0; r < kIn / 8; ++r) {
      for (int64_t j = 0; j < kOut; ++j) {
        for (int f = 0; f < 8; ++f) v[f] = Code(j, 8 * r + f);
        p.qweight.push_back(Word(v, kPlain));
      }
    }
  }
  for (int64_t g = 0; g < kGroups; ++g) {
    for (int64_t w = 0; w < kOut / 8; ++w) {
      for (int c = 0; c < 8; ++c) v[c] = Zero(g, 8 * w + c) - (method == "gptq" ? 1 : 0);
      p.qzeros.push_back(Word(v, awq ? kAwqOrder : kPlain));
    }
    for (int64_t j = 0; j < kOut; ++j) p.scales.push_back(F32ToF16(Scale(g, j)));
  }
  for (int64_t i = 0; i < kIn; ++i) p.g_idx.push_back(static_cast<int32_t>(i / 128));
  return p;
}

absl::StatusOr<QuantizedMatrix> Unpack(const std::string& method, const Packed& p,
                                       bool with_g_idx = true) {
  const bool awq = method == "awq";
  return UnpackInt4Linear(
      method, "m", kOut, kIn,
      p.Tensor("I32",
               awq ? std::vector<int64_t>{kIn, kOut / 8} : std::vector<int64_t>{kIn / 8, kOut},
               p.qweight.data()),
      p.Tensor("I32", {kGroups, kOut / 8}, p.qzeros.data()),
      p.Tensor("F16", {kGroups, kOut}, p.scales.data()),
      with_g_idx && !awq ? p.Tensor("I32", {kIn}, p.g_idx.data()) : PackedTensor{});
}

TEST(Int4CheckpointTest, EveryLayoutGivesEveryValue) {
  for (const std::string method : {"awq", "gptq", "gptq_v2"}) {
    const Packed p = Pack(method);
    ASSERT_OK_AND_ASSIGN(const QuantizedMatrix m, Unpack(method, p));
    EXPECT_EQ(m.format().name, std::string("int4"));
    EXPECT_EQ(m.bytes(), static_cast<size_t>(kOut * kGroups * 67));
    std::vector<float> row(kIn);
    for (int64_t j = 0; j < kOut; ++j) {
      m.DequantizeRow(j, row.data());
      for (int64_t i = 0; i < kIn; ++i) {
        // (GPTQ v1: a zero of 0 is stored as 15 and computes as 16; see the next test.)
        const int zero = method == "gptq" && Zero(i / 128, j) == 0 ? 16 : Zero(i / 128, j);
        const float want = static_cast<float>(Code(j, i) - zero) * Scale(i / 128, j);
        ASSERT_EQ(row[i], want) << method << " W[" << j << ", " << i << "]";
      }
    }
  }
}

TEST(Int4CheckpointTest, GptqZeroOfZeroIsStoredAsFifteenAndReadAsSixteen) {
  // GPTQ's v1 convention: the field is zero − 1 in 4 bits, its kernels add one back, so a zero of
  // 0 wraps to 15 and computes as 16. We compute what the checkpoint's kernels compute.
  Packed p = Pack("gptq");
  p.qzeros[0] = 0x0000000f;  // column 0 of group 0: field 15; columns 1-7: field 0 (zero 1)
  ASSERT_OK_AND_ASSIGN(const QuantizedMatrix m, Unpack("gptq", p));
  std::vector<float> row(kIn);
  m.DequantizeRow(0, row.data());
  EXPECT_EQ(row[0], static_cast<float>(Code(0, 0) - 16) * Scale(0, 0));
}

TEST(Int4CheckpointTest, BadTensorsAreRefusedByName) {
  const Packed p = Pack("gptq");
  EXPECT_THAT(UnpackInt4Linear("gptq", "m", kOut, kIn,
                               p.Tensor("I32", {kIn / 8, kOut + 8}, p.qweight.data()),
                               p.Tensor("I32", {kGroups, kOut / 8}, p.qzeros.data()),
                               p.Tensor("F16", {kGroups, kOut}, p.scales.data()), {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "tensor 'm.qweight' is I32[32, 24], expected I32[32, 16]"));
  EXPECT_THAT(
      UnpackInt4Linear("gptq", "m", kOut, kIn, p.Tensor("I32", {kIn / 8, kOut}, p.qweight.data()),
                       p.Tensor("I32", {kGroups, kOut / 8}, p.qzeros.data()),
                       p.Tensor("BF16", {kGroups, kOut}, p.scales.data()), {}),
      StatusIs(absl::StatusCode::kInvalidArgument, "'m.scales' is BF16"));
  Packed permuted = p;
  std::swap(permuted.g_idx[3], permuted.g_idx[200]);
  EXPECT_THAT(Unpack("gptq", permuted), StatusIs(absl::StatusCode::kInvalidArgument, "act-order"));
  EXPECT_THAT(UnpackInt4Linear("awq", "m", kOut, 100, {}, {}, {}, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, "multiple of 128"));
}

}  // namespace
}  // namespace moe::model
