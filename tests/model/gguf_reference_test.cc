// tests/model/gguf_reference_test.cc
// Our GGUF block formats against the `gguf` package (llama.cpp's gguf-py from PyPI): every value of
// random blocks of q8_0, q4_0, q4_k, q5_k, q6_k, iq4_xs and mxfp4_gguf dequantizes bit for bit as
// gguf.quants.dequantize does, through the scalar decoding and every CPU kernel level (one-hot
// products), and q8_0 / q4_0 quantize to the very bytes gguf.quants.quantize writes. The data
// comes from tests/model/gguf_reference.py, which ctest runs first (MOE_GGUF_REFERENCE_DIR); run
// alone without it, the test skips and says so.
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "experts/cpu/cpu_quantized_product.h"
#include "gtest/gtest.h"
#include "model/quantized_matrix.h"
#include "tests/testing/status_matchers.h"

namespace moe::model {
namespace {

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot read " << path;
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<float> ReadF32(const std::string& path) {
  const std::vector<uint8_t> bytes = ReadFile(path);
  std::vector<float> out(bytes.size() / 4);
  std::memcpy(out.data(), bytes.data(), out.size() * 4);
  return out;
}

std::string Dir() {
  const char* dir = std::getenv("MOE_GGUF_REFERENCE_DIR");
  return dir == nullptr ? "" : dir;
}

uint32_t Bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

class GgufReferenceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (Dir().empty())
      GTEST_SKIP()
          << "MOE_GGUF_REFERENCE_DIR is not set: ctest runs tests/model/gguf_reference.py first";
  }
};

TEST_P(GgufReferenceTest, DequantizesAsTheGgufPackage) {
  const WeightFormat* f = FindWeightFormat(GetParam());
  ASSERT_NE(f, nullptr);
  const std::vector<uint8_t> blocks = ReadFile(Dir() + "/" + GetParam() + ".blocks");
  const std::vector<float> want = ReadF32(Dir() + "/" + GetParam() + ".f32");
  ASSERT_EQ(blocks.size() % f->block_bytes, 0u);
  const int64_t count = static_cast<int64_t>(blocks.size() / f->block_bytes);
  ASSERT_EQ(want.size(), static_cast<size_t>(count * f->block));
  // Rows of 4 blocks: the scalar decoding of every value, then every kernel level on a few rows.
  const int64_t k = 4 * f->block, n = count / 4;
  ASSERT_OK_AND_ASSIGN(const QuantizedMatrix m,
                       QuantizedMatrix::FromBytes(*f, n, k, blocks.data()));
  std::vector<float> row(static_cast<size_t>(k));
  int64_t mismatches = 0;
  for (int64_t r = 0; r < n; ++r) {
    m.DequantizeRow(r, row.data());
    for (int64_t c = 0; c < k; ++c) {
      if (Bits(row[c]) != Bits(want[r * k + c]) && mismatches++ < 5) {
        ADD_FAILURE() << GetParam() << " row " << r << " value " << c << ": " << row[c]
                      << ", gguf says " << want[r * k + c];
      }
    }
  }
  EXPECT_EQ(mismatches, 0);
  const int64_t rows = 4;  // the output features of one product
  const base::CpuIsa best = base::BestIsa(base::DetectCpuFeatures());
  for (int level = 0; level <= static_cast<int>(best); ++level) {
    const auto isa = static_cast<base::CpuIsa>(level);
    ASSERT_OK_AND_ASSIGN(const QuantizedMatrix few,
                         QuantizedMatrix::FromBytes(*f, rows, k, blocks.data()));
    for (int64_t c = 0; c < k; ++c) {  // a one-hot activation row picks column c of every row
      std::vector<float> x(static_cast<size_t>(k), 0.0f), y(static_cast<size_t>(rows));
      x[c] = 1.0f;
      experts::QuantizedProduct(isa, few, x.data(), k, 1, y.data(), rows, 1);
      for (int64_t j = 0; j < rows; ++j) {
        // (== rather than bits: a one-hot sum turns a weight of −0 into +0.)
        ASSERT_EQ(y[j], want[j * k + c])
            << GetParam() << " at " << base::CpuIsaName(isa) << ": row " << j << " value " << c
            << " is " << y[j] << ", gguf says " << want[j * k + c];
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GgufReferenceTest,
                         ::testing::Values("q8_0", "q4_0", "q4_k", "q5_k", "q6_k", "iq4_xs",
                                           "mxfp4_gguf"),
                         [](const auto& info) { return info.param; });

class GgufQuantizerTest : public GgufReferenceTest {};

TEST_P(GgufQuantizerTest, QuantizesToTheGgufPackagesBytes) {
  const WeightFormat* f = FindWeightFormat(GetParam());
  const std::vector<float> input = ReadF32(Dir() + "/" + GetParam() + ".input.f32");
  const std::vector<uint8_t> want = ReadFile(Dir() + "/" + GetParam() + ".quantized");
  const int64_t k = 256, n = static_cast<int64_t>(input.size()) / k;
  ASSERT_OK_AND_ASSIGN(const QuantizedMatrix m, QuantizedMatrix::Quantize(*f, input.data(), n, k));
  ASSERT_EQ(want.size(), static_cast<size_t>(n * m.row_bytes()));
  for (int64_t r = 0; r < n; ++r) {
    for (int64_t b = 0; b < m.row_bytes(); ++b) {
      ASSERT_EQ(m.row(r)[b], want[r * m.row_bytes() + b])
          << GetParam() << " row " << r << " byte " << b;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Types, GgufQuantizerTest, ::testing::Values("q8_0", "q4_0"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace moe::model
