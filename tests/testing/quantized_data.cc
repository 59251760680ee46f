// tests/testing/quantized_data.cc
#include "tests/testing/quantized_data.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>

#include "gtest/gtest.h"
#include "model/dtype.h"
#include "model/formats/k_quants.h"
#include "model/fp8.h"
#include "tests/testing/random_data.h"

namespace moe::testing {

std::vector<std::string> TestedWeightFormats() {
  return {"q8_0", "q4_0", "q4_k", "q5_k", "q6_k", "iq4_xs", "mxfp4", "mxfp4_gguf", "int4", "fp8_e4m3", "int8"};
}

namespace {

// Random bytes for the formats only GGUF files bring (no quantizer here), their scales made
// finite and of a size that keeps values O(1) (q5_k's also centred): f16 fields at `f16_offsets`, an e8m0 byte at
// `e8m0_offset` (or −1).
struct RandomLayout {
  const char* format;
  std::vector<int> f16_offsets;
  int e8m0_offset;
};

std::vector<uint8_t> RandomBlocks(const model::WeightFormat& f, int64_t n, int64_t k, uint64_t seed) {
  static const RandomLayout kLayouts[] = {{"q5_k", {0, 2}, -1}, {"iq4_xs", {0}, -1}, {"mxfp4_gguf", {}, 0}};
  const RandomLayout* layout = nullptr;
  for (const RandomLayout& l : kLayouts) {
    if (f.name == std::string(l.format)) layout = &l;
  }
  const int64_t blocks = n * (k / f.block);
  std::vector<uint8_t> bytes = RandomBytes(static_cast<size_t>(blocks * f.block_bytes), seed);
  if (layout == nullptr) return {};
  const std::vector<float> scales = RandomVector(static_cast<size_t>(blocks), seed + 1, 1.0f);
  for (int64_t b = 0; b < blocks; ++b) {
    uint8_t* block = bytes.data() + b * f.block_bytes;
    for (const int off : layout->f16_offsets) {
      const uint16_t bits = model::F32ToF16((1.0f + std::fabs(scales[b])) / (64.0f * std::sqrt(float(k))));
      std::memcpy(block + off, &bits, 2);
    }
    if (layout->e8m0_offset >= 0) block[layout->e8m0_offset] = static_cast<uint8_t>(118 + block[layout->e8m0_offset] % 6);
    if (f.name == std::string("q5_k")) {
      // Centred as a fitted Q5_K is: each sub-block's min equal to its scale under dmin = 16·d, so
      // x = d·scale·(q − 16) (random mins would give every weight a large common offset).
      uint16_t d_bits;
      std::memcpy(&d_bits, block, 2);
      const uint16_t m_bits = model::F32ToF16(16.0f * model::F16ToF32(d_bits));
      std::memcpy(block + 2, &m_bits, 2);
      uint8_t packed[12] = {};
      for (int j = 0; j < 8; ++j) {
        int sc, m;
        model::kquants::UnpackScaleMin(j, block + 4, &sc, &m);
        model::kquants::PackScaleMin(j, sc, sc, packed);
      }
      std::memcpy(block + 4, packed, 12);
    }
  }
  return bytes;
}

}  // namespace

model::QuantizedMatrix RandomQuantizedMatrix(const std::string& format, int64_t n, int64_t k, uint64_t seed) {
  const std::vector<float> w = RandomVector(static_cast<size_t>(n * k), seed, 1.0f / std::sqrt(float(k)));
  absl::StatusOr<model::QuantizedMatrix> m = absl::InvalidArgumentError("unknown format " + format);
  if (format == "fp8_e4m3") {
    std::vector<uint8_t> codes;
    const model::Tensor scales = model::QuantizeFp8Blocks(w.data(), n, k, 128, 128, &codes);
    model::ScaleGrid grid{.scales = std::vector<float>(scales.f32().begin(), scales.f32().end()), .rows = 128, .cols = 128};
    m = model::QuantizedMatrix::FromBytes(model::kFp8E4m3, n, k, codes.data(), 0, std::move(grid));
  } else if (format == "int8") {
    // compressed-tensors' int-quantized: symmetric, one scale per output channel (a grid of one row
    // by the whole width).
    std::vector<uint8_t> codes(static_cast<size_t>(n * k));
    model::ScaleGrid grid{.scales = std::vector<float>(static_cast<size_t>(n)), .rows = 1, .cols = k};
    for (int64_t r = 0; r < n; ++r) {
      float amax = 0.0f;
      for (int64_t c = 0; c < k; ++c) amax = std::max(amax, std::fabs(w[r * k + c]));
      const float s = amax > 0.0f ? amax / 127.0f : 1.0f;
      grid.scales[r] = s;
      for (int64_t c = 0; c < k; ++c) {
        codes[r * k + c] = static_cast<uint8_t>(static_cast<int8_t>(std::lrint(w[r * k + c] / s)));
      }
    }
    m = model::QuantizedMatrix::FromBytes(model::kInt8, n, k, codes.data(), 0, std::move(grid));
  } else if (format == "mxfp4") {
    std::vector<uint8_t> blocks, scales;
    model::QuantizeMxfp4Expert(w.data(), n, k, &blocks, &scales);
    std::vector<uint8_t> rows;  // 17-byte blocks: the scale, then its 16 code bytes
    for (size_t b = 0; b < scales.size(); ++b) {
      rows.push_back(scales[b]);
      rows.insert(rows.end(), blocks.begin() + 16 * b, blocks.begin() + 16 * (b + 1));
    }
    m = model::QuantizedMatrix::FromBytes(model::kMxfp4, n, k, rows.data());
  } else if (const model::WeightFormat* f = model::FindWeightFormat(format); f != nullptr && f->quantize != nullptr) {
    m = model::QuantizedMatrix::Quantize(*f, w.data(), n, k);
  } else if (f != nullptr) {
    const std::vector<uint8_t> bytes = RandomBlocks(*f, n, k, seed);
    if (!bytes.empty()) m = model::QuantizedMatrix::FromBytes(*f, n, k, bytes.data());
  }
  EXPECT_TRUE(m.ok()) << m.status();
  return m.ok() ? *std::move(m) : model::QuantizedMatrix::Quantize(model::kQ8_0, w.data(), 1, 32).value();
}

experts::ExpertWeights RandomQuantizedExpert(const std::string& format, experts::ExpertKey key, int hidden,
                                             int inter, uint64_t seed) {
  experts::ExpertWeights w;
  w.key = key;
  w.q1 = std::make_shared<const model::QuantizedMatrix>(RandomQuantizedMatrix(format, inter, hidden, seed));
  w.q3 = std::make_shared<const model::QuantizedMatrix>(RandomQuantizedMatrix(format, inter, hidden, seed + 1));
  w.q2 = std::make_shared<const model::QuantizedMatrix>(RandomQuantizedMatrix(format, hidden, inter, seed + 2));
  return w;
}

std::vector<float> DequantizedValues(const model::QuantizedMatrix& w) {
  std::vector<float> out(static_cast<size_t>(w.n() * w.k()));
  for (int64_t r = 0; r < w.n(); ++r) w.DequantizeRow(r, out.data() + r * w.k());
  return out;
}

experts::ExpertWeights Dequantized(const experts::ExpertWeights& w) {
  experts::ExpertWeights d = w;
  const auto f32 = [](const model::QuantizedMatrix& q) {
    return model::Tensor::FromF32(DequantizedValues(q), {q.n(), q.k()});
  };
  d.w1 = f32(*w.q1);
  d.w3 = f32(*w.q3);
  d.w2 = f32(*w.q2);
  d.q1 = d.q3 = d.q2 = nullptr;
  return d;
}

}  // namespace moe::testing
